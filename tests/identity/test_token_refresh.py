"""Tokens over time: the lake asks for fresh options at every open, the identity credential
answers from its cache until a token nears expiry, and a token that expires under an open
snapshot is refused (retryably) while the next open signs in afresh.

The credential is the real ``ManagedIdentityCredential`` (MSAL's cache) against the identity
endpoint stand-in; only the clock is real too, so near-expiry tokens are issued a few
seconds over MSAL's five-minute floor rather than faked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from shared.adapters.clients import delta_storage_options, managed_identity
from shared.adapters.lake import Lake, TableSpec
from shared.app import build
from shared.errors import StoreAccessDenied
from shared.settings import Settings
from tests.identity.entra import Counting, IdentityEndpoint, MintedCredential

pytestmark = pytest.mark.azurite

SPEC = TableSpec("silver/refresh", pa.schema([("id", pa.int64())]))
ROWS = pa.table({"id": [1, 2]}, schema=SPEC.schema)
#: MSAL serves a cached managed-identity token only while it has over 300 s left.
MSAL_FLOOR = 300


@pytest.fixture
def short_lived(identity_endpoint: IdentityEndpoint) -> Iterator[IdentityEndpoint]:
    """The endpoint issuing tokens that MSAL may cache for two seconds only."""
    identity_endpoint.lifetime = MSAL_FLOOR + 2
    try:
        yield identity_endpoint
    finally:
        identity_endpoint.lifetime = 3600


def asked(endpoint: IdentityEndpoint, client_id: str) -> int:
    return sum(1 for r in endpoint.requests if r.client_id == client_id)


def test_every_open_asks_the_credential_and_the_credential_serves_its_cache(
    identity_settings: Settings, identity_endpoint: IdentityEndpoint, client_id: str
) -> None:
    counting = Counting(managed_identity(identity_settings.lake_storage))
    app = build(identity_settings, identity=lambda account: counting)
    table = app.lake.table(SPEC)
    table.append_once(ROWS, "batch-1")
    before = counting.calls
    for _ in range(5):
        assert table.exists()  # one open each
    assert counting.calls == before + 5
    assert asked(identity_endpoint, client_id) == 1  # one token for blobs, state and every open


def test_a_token_near_expiry_is_refreshed_before_the_next_open(
    identity_settings: Settings, short_lived: IdentityEndpoint, client_id: str
) -> None:
    table = build(identity_settings).lake.table(SPEC)
    table.snapshot()
    first = asked(short_lived, client_id)
    assert first == 1 and table.exists()
    assert asked(short_lived, client_id) == 1  # still over the floor: from the cache
    time.sleep(2.5)  # now under 300 s left: MSAL fetches a new token
    table.append_once(ROWS, "batch-1")
    assert asked(short_lived, client_id) >= 2
    assert len(set(short_lived.issued)) == len(short_lived.issued)
    assert table.snapshot().rows() == 2


def test_a_token_expiring_under_an_open_snapshot_is_refused_and_the_next_open_signs_in_afresh(
    identity_settings: Settings,
) -> None:
    build(identity_settings).lake.table(SPEC).snapshot()  # the container and the table exist
    minted = MintedCredential("short", lifetime=2)  # a new two-second token at every ask
    lake = Lake(
        identity_settings.lake_uri,
        storage_options=lambda: delta_storage_options(identity_settings.lake_storage, lambda account: minted),
    )
    table = lake.table(SPEC)
    snapshot = table.snapshot()
    time.sleep(3)  # Azurite checks exp to the second
    with pytest.raises(StoreAccessDenied, match="The token is expired"):
        snapshot.append(ROWS, "batch-1", {})
    commit = table.append_once(ROWS, "batch-1")  # what a retried step does: open again
    assert commit.version == 1 and table.snapshot().rows() == 2
