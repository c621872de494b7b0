"""Signed in as a managed identity, with no key anywhere: blobs, batch state and the lake
work on bearer tokens alone, and a token the store refuses fails clearly.

The app is built exactly as in Azure (``build(settings)``: ``ManagedIdentityCredential``
with the settings' client id, asking the platform's identity endpoint); only the
endpoint and the storage account are stand-ins on loopback.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from shared.adapters.clients import delta_storage_options
from shared.adapters.lake import Lake, TableSpec
from shared.adapters.storage import Storage
from shared.app import build
from shared.batches import BatchState, State
from shared.dev.generator import generate_day
from shared.errors import StoreAccessDenied
from shared.services.runner import Runner
from shared.settings import Settings, StorageAccount
from shared.uris import join
from tests.conftest import FAST_RETRY
from tests.identity.conftest import OAuthAzurite
from tests.identity.entra import IdentityEndpoint, MintedCredential

pytestmark = pytest.mark.azurite

EVENTS = TableSpec("bronze/events", pa.schema([("id", pa.int64()), ("day", pa.string())]), ("day",))


def requests_for(endpoint: IdentityEndpoint, client_id: str) -> int:
    return sum(1 for r in endpoint.requests if r.client_id == client_id)


def test_settings_carry_no_key_and_the_lake_options_a_token(identity_settings: Settings) -> None:
    account = identity_settings.lake_storage
    assert (account.credential, account.key) == ("managedidentity", None)
    options = delta_storage_options(account)
    assert set(options) == {"account_name", "azure_storage_endpoint", "bearer_token"}
    assert options["azure_storage_endpoint"].startswith("https://127.0.0.1:")


def test_blobs_write_read_list_and_move_on_tokens(
    identity_settings: Settings, identity_endpoint: IdentityEndpoint, client_id: str
) -> None:
    storage = build(identity_settings).storage
    capture, quarantine = identity_settings.capture_uri, identity_settings.quarantine_uri
    first, second = join(capture, "ns/eh/0/a.avro"), join(capture, "ns/eh/0/b.avro")
    storage.write(first, b"one")
    assert storage.write_if_changed(second, b"two")
    assert not storage.write_if_changed(second, b"two")
    assert [o.uri for o in storage.list(capture)] == [first, second]
    assert storage.read_bytes(first) == b"one"
    assert storage.info(first).size == 3
    storage.move(first, join(quarantine, "ns/eh/0/a.avro"))
    assert not storage.exists(first)
    assert storage.read_bytes(join(quarantine, "ns/eh/0/a.avro")) == b"one"
    # Every request was signed with the identity's token, fetched once and then cached.
    assert requests_for(identity_endpoint, client_id) == 1


def test_batch_state_is_written_and_read_on_tokens(identity_settings: Settings, client_id: str) -> None:
    states = build(identity_settings).states
    batch = BatchState(batch_id="b1", dataset="user_activity", source="az://capture/x.avro", size=3, etag="e")
    stored, new = states.create(batch)
    assert new and stored.state is State.RECEIVED
    saved = states.save(stored, stored.moved(State.VALIDATED, "2026-11-21T10:00:00.000Z"))
    assert states.get("user_activity", "b1") == saved
    assert [b.batch_id for b in states.list(state=State.VALIDATED)] == ["b1"]


def test_delta_tables_are_created_appended_and_scanned_on_tokens(identity_settings: Settings) -> None:
    table = build(identity_settings).lake.table(EVENTS)
    rows = pa.table({"id": [1, 2, 3], "day": ["d1", "d1", "d2"]}, schema=EVENTS.schema)
    commit = table.append_once(rows, "batch-1", {"rows": 3})
    assert table.append_once(rows, "batch-1").version == commit.version  # once per app id
    snapshot = table.snapshot()
    assert sorted(snapshot.scan().collect().get_column("id").to_list()) == [1, 2, 3]
    assert snapshot.scan("day = 'd2'").collect().height == 1
    assert table.commit("batch-1") is not None and table.commit("batch-1").figures == {"rows": 3}  # type: ignore[union-attr]


def test_a_whole_day_is_ingested_and_a_bad_file_quarantined_on_tokens(identity_settings: Settings) -> None:
    app = build(identity_settings)
    uris = []
    for f in generate_day(files=4, events_per_file=60, defect_rate=0.1, seed=5):
        uris.append(join(identity_settings.capture_uri, f.path))
        app.storage.write(uris[-1], f.data)
    bad = join(identity_settings.capture_uri, "ns/eh/0/2026/11/21/23/59/59.avro")
    app.storage.write(bad, b"Obj\x01 not avro")
    runner = Runner(app.context, retry=FAST_RETRY)
    batches = [runner.run(app.storage.info(uri)).batch for uri in [*uris, bad]]
    assert all(b is not None and b.state.final and b.state is not State.FAILED for b in batches), batches
    assert sum(b.state is State.GOLD_DONE for b in batches if b) >= 2
    assert batches[-1] is not None and batches[-1].state is State.QUARANTINED
    assert app.storage.exists(join(identity_settings.quarantine_uri, "ns/eh/0/2026/11/21/23/59/59.avro"))


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (MintedCredential("expired", lifetime=-60), "Lifetime validation failed. The token is expired."),
        (MintedCredential("vault", resource="https://vault.azure.net"), "Invalid token audience."),
    ],
    ids=["expired", "another-audience"],
)
def test_a_token_the_store_refuses_fails_with_store_access_denied_everywhere(
    identity_settings: Settings, credential: MintedCredential, reason: str
) -> None:
    build(identity_settings).lake.table(EVENTS).snapshot()  # the lake's container and table exist
    app = build(identity_settings, identity=lambda account: credential)
    lake = Lake(  # without prepare(), which would fail first on the blob API
        identity_settings.lake_uri,
        storage_options=lambda: delta_storage_options(identity_settings.lake_storage, app.identity),
    )
    failures = {}
    for where, attempt in {
        "blob": lambda: app.storage.write(join(identity_settings.capture_uri, "x.avro"), b"x"),
        "table": lambda: app.states.get("user_activity", "b1"),
        "lake (blob API)": lambda: app.lake.table(EVENTS).snapshot(),
        "delta-rs": lambda: lake.table(EVENTS).snapshot(),
    }.items():
        with pytest.raises(StoreAccessDenied) as caught:
            attempt()
        failures[where] = str(caught.value)
    for message in failures.values():
        assert f"AuthenticationFailed: {reason}" in message, message
        assert "Storage Blob Data Contributor" in message
        assert credential.tokens and not any(token in message for token in credential.tokens)
    assert failures["delta-rs"].startswith("az://lake") and "bronze/events" in failures["delta-rs"]


def test_an_identity_that_gets_no_token_fails_with_store_access_denied(
    oauth_azurite: OAuthAzurite, identity_endpoint: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-platform-secret")
    env = oauth_azurite.identity_env("unknown-identity")
    account = StorageAccount.from_values(env, "AzureWebJobsStorage")
    assert account is not None
    with pytest.raises(StoreAccessDenied, match=r"the app's identity got no token .*X-IDENTITY-HEADER"):
        delta_storage_options(account)
    with pytest.raises(StoreAccessDenied, match="the app's identity got no token"):
        Storage(account, retry_seconds=1).exists("az://capture/x.avro")
    assert identity_endpoint.requests[-1].headers["x-identity-header"] == "not-the-platform-secret"
