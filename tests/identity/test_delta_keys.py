"""Which storage options the pinned deltalake really honours for signing in, checked on the
wheel itself against the OAuth Azurite and the identity endpoint stand-in (what
``delta_storage_options``' docstring says, with the source it was read in).

None of these cases lets object_store fall back to IMDS (169.254.169.254): every case
that uses its managed-identity provider names the loopback endpoint.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from shared.adapters.clients import delta_storage_options
from shared.settings import Settings
from tests.identity.entra import STORAGE, IdentityEndpoint, MintedCredential

pytestmark = pytest.mark.azurite

ROWS = pa.table({"id": [1, 2]})


@pytest.fixture
def base(identity_settings: Settings) -> tuple[str, dict[str, str]]:
    """A table URI in a container of its own, and the options that name the account but sign nothing."""
    account = identity_settings.lake_storage
    from shared.adapters.blobs import Blobs

    container = f"keys{uuid.uuid4().hex[:8]}"
    Blobs(account, retry_seconds=5).ensure_container(container)
    return f"az://{container}/t", {"account_name": account.name, "azure_storage_endpoint": account.blob_uri}


def round_trip(uri: str, options: dict[str, str]) -> int:
    write_deltalake(uri, ROWS, mode="append", storage_options=options)
    return DeltaTable(uri, storage_options=options).to_pyarrow_table().num_rows


@pytest.mark.parametrize("key", ["bearer_token", "azure_storage_token", "token"])
def test_a_bearer_token_is_taken_under_each_of_its_names(base: tuple[str, dict[str, str]], key: str) -> None:
    uri, options = base
    token = MintedCredential(str(uuid.uuid4())).get_token(f"{STORAGE}/.default").token
    assert round_trip(uri, {**options, key: token}) == 2


def test_delta_storage_options_sign_delta_rs_in_with_the_identitys_token(
    identity_settings: Settings, base: tuple[str, dict[str, str]]
) -> None:
    uri, _ = base
    assert round_trip(uri, delta_storage_options(identity_settings.lake_storage)) == 2


@pytest.mark.parametrize("endpoint_key", ["azure_msi_endpoint", "azure_identity_endpoint", "msi_endpoint"])
@pytest.mark.parametrize("client_key", ["azure_client_id", "client_id", "azure_storage_client_id"])
def test_object_stores_own_msi_provider_speaks_the_app_service_endpoint_when_named(
    base: tuple[str, dict[str, str]], identity_endpoint: IdentityEndpoint, endpoint_key: str, client_key: str
) -> None:
    uri, options = base
    client_id = str(uuid.uuid4())
    assert round_trip(uri, {**options, endpoint_key: identity_endpoint.url, client_key: client_id}) == 2
    asked = [r for r in identity_endpoint.requests if r.client_id == client_id]
    assert asked, "object_store never asked the endpoint"
    first = asked[0]
    assert first.query["api-version"] == "2019-08-01" and first.query["resource"] == STORAGE
    assert first.headers["x-identity-header"] == identity_endpoint.secret  # from IDENTITY_HEADER
    assert first.headers["user-agent"] == "object_store/0.13.2"  # the version read
    # Its provider caches per store, and every open builds stores of its own: a token
    # request per open, where the SDK credential's cache serves delta_storage_options.
    assert len(asked) >= 2


def test_azure_msi_client_id_is_not_a_key_and_is_dropped_without_a_word(
    base: tuple[str, dict[str, str]], identity_endpoint: IdentityEndpoint
) -> None:
    uri, options = base
    before = len(identity_endpoint.requests)
    ignored = str(uuid.uuid4())
    options = {**options, "azure_msi_endpoint": identity_endpoint.url, "azure_msi_client_id": ignored}
    assert round_trip(uri, options) == 2
    new = identity_endpoint.requests[before:]
    assert new and all(r.client_id is None for r in new)  # it signed in as the system-assigned identity


def test_the_msi_endpoint_is_read_from_azure_msi_endpoint_in_the_environment(
    base: tuple[str, dict[str, str]], identity_endpoint: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, options = base
    client_id = str(uuid.uuid4())
    monkeypatch.setenv("AZURE_MSI_ENDPOINT", identity_endpoint.url)
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    assert round_trip(uri, options) == 2
    assert any(r.client_id == client_id for r in identity_endpoint.requests)
