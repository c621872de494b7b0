"""Least privilege and hostile inputs: keys on every endpoint, no secret in a log line,
no raw payload logged in full, every input checked before it names a path or a query.

What only infra/ can show (the infra helper asserts it in its Bicep tests): the quarantine
container's ``publicAccess`` is ``None`` and the account has ``allowBlobPublicAccess:
false`` and ``allowSharedKeyAccess: false``; the app's identity holds Storage Blob Data
Contributor on the lake account only (no account keys in app settings), and nothing is
granted to anonymous or to the Event Grid topic beyond its delivery.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import function_app
from shared.adapters.lake import Lake, TableSpec
from shared.app import build
from shared.batches import State
from shared.errors import BadRequest, ConfigError
from shared.events import CaptureTarget, Envelope, decide
from shared.predicates import sql_in, sql_literal
from shared.services.admin import Admin, checked_id
from shared.settings import AZURITE_KEY, Settings
from tests.conftest import make_settings
from tests.reliability.audit import check, first_wins, report
from tests.reliability.conftest import settings_on
from tests.reliability.emulator import Emulator
from tests.reliability.inputs import File, mixed_file
from tests.reliability.steps import ROOT, cli, cli_env, land, run_all

TOKEN = "dapi0123456789abcdef0123456789abcdef"
SIG = "sig=Zm9vYmFyc2VjcmV0c2lnbmF0dXJlMTIzNDU2Nzg5MA%3D%3D"


# -- keys -----------------------------------------------------------------------------------
def test_every_http_endpoint_needs_a_function_key_or_stronger() -> None:
    app = importlib.reload(function_app).app
    http = {
        f.get_function_name(): str(getattr(b.get_dict_repr().get("authLevel"), "name", None)).upper()
        for f in app.get_functions()
        for b in f.get_bindings()
        if b.type == "httpTrigger"
    }
    assert set(http) == {"list_batches", "get_batch", "replay_batch", "backfill"}
    assert {name: level for name, level in http.items() if level not in ("FUNCTION", "ADMIN")} == {}


# -- logs -----------------------------------------------------------------------------------
@pytest.fixture
def every_log_line(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, the SDKs' included, at DEBUG."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def text_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def secrets_in(text: str) -> list[str]:
    leaks = [AZURITE_KEY, AZURITE_KEY[:24], TOKEN, SIG, SIG.split("=", 1)[1][:20], "AccountKey="]
    return [secret for secret in leaks if secret in text]


@pytest.mark.azurite
def test_no_secret_reaches_a_log_line_or_the_cli_through_a_full_run(
    up: Emulator, tmp_path: Path, every_log_line: pytest.LogCaptureFixture
) -> None:
    settings = settings_on(
        up.connection_string,
        tmp_path,
        DATABRICKS_TOKEN=TOKEN,
        DATABRICKS_HOST="https://adb-1.azuredatabricks.net",
    )
    app = build(settings)
    assert settings.databricks.token == TOKEN  # the secret is there to leak
    good = land(app.context, mixed_file("ns/hub/0/2026/11/21/12/00/00.ndjson", 60, seed=90))
    run_all(app.context, good.ref)
    # Events whose URL carries a SAS, one foreign (ignored and logged) and one of ours.
    blob = app.storage.blobs.service.get_blob_client(*good.source[len("az://") :].split("/", 1)).url
    for url in (blob, blob.replace(settings.capture_uri[5:], "elsewhere")):
        envelope = _event(f"{url}?sv=2024-01-01&se=2030-01-01&sp=r&{SIG}")
        asyncio.run(app.intake.event(envelope, _Refusing()))
    # A store that fails: its error (with the endpoint) is logged and printed.
    up.stop("table")
    try:
        failing = cli("ingest", good.source, env=cli_env(settings, STORAGE_RETRY_SECONDS="1"))
        out, err = failing.communicate(timeout=120)
    finally:
        up.start("table")
    listed = cli("batches", "--json", env=cli_env(settings))
    listed_out, listed_err = listed.communicate(timeout=120)
    logged = text_of(every_log_line)
    assert "is unreachable" in out + err  # the failure was reported, and the report is clean
    assert (
        secrets_in(logged) == [] and secrets_in(out + err) == [] and secrets_in(listed_out + listed_err) == []
    )
    assert repr(settings.host_storage).count(AZURITE_KEY) == 0 and TOKEN not in repr(settings.databricks)
    report("secrets in settings, logs and CLI output scanned", bad_inputs=2)


def test_a_rejected_payload_is_never_logged_in_full(
    memory_ctx: Any, every_log_line: pytest.LogCaptureFixture
) -> None:
    marker = "PAYLOAD-" + "x" * 4000
    file = File("ns/hub/0/2026/11/21/12/00/00.ndjson")
    file.reject(('{"log_id": "' + marker + '", "user_id": ').encode())  # malformed, 4 KB
    file.reject(('{"log_id": "' + marker + '"}').encode())  # valid JSON, every rule broken
    file.reject(b"\x00\xff" + marker.encode())  # not text
    done = run_all(memory_ctx, land(memory_ctx, file).ref)
    assert done.state is State.GOLD_DONE and done.counts.rows_quarantined == 3
    quarantined = memory_ctx.tables("user_activity").quarantine.snapshot().scan().collect()
    assert quarantined.filter(pl.col("raw_payload").str.contains(marker)).height == 3  # kept, whole
    assert "x" * 200 not in text_of(every_log_line)


# -- inputs before paths and queries --------------------------------------------------------
HOSTILE_IDS = ["nope", "' or 1 eq 1 or '", "A" * 32, "0" * 31 + "'", "../" + "0" * 29, "0" * 32 + "\n"]


@pytest.mark.parametrize("batch_id", HOSTILE_IDS)
def test_a_batch_id_outside_32_hex_digits_never_reaches_a_query(batch_id: str) -> None:
    with pytest.raises(BadRequest):
        checked_id(batch_id)
    admin = Admin(
        Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}), _NoQueries(), None
    )  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        asyncio.run(admin.batch(batch_id, _Refusing()))
    with pytest.raises(BadRequest):
        asyncio.run(admin.replay(batch_id, _Refusing()))


@pytest.mark.parametrize("table", ["x' or 1 eq 1", "batches;drop", "ab", "1batches", "bätches", "a" * 64])
def test_a_table_name_outside_the_safe_alphabet_is_refused_at_startup(table: str) -> None:
    for setting in ("BATCH_STATE_TABLE", "OPERATIONS_TABLE"):
        with pytest.raises(ConfigError, match=setting):
            Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", setting: table})


def test_every_table_storage_query_is_parameterised() -> None:
    """Each ``query_entities`` call passes its values as ``parameters``, never in the filter text."""
    calls = 0
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "query_entities":
                calls += 1
                keywords = {k.arg for k in node.keywords}
                assert "parameters" in keywords, f"{path}:{node.lineno} builds a query without parameters"
                text = node.args[0]
                assert not isinstance(text, ast.JoinedStr), (
                    f"{path}:{node.lineno} formats values into a filter"
                )
    assert calls >= 3


@pytest.mark.azurite
def test_a_filter_value_with_quotes_matches_only_itself_in_table_storage(
    up: Emulator, tmp_path: Path
) -> None:
    app = build(settings_on(up.connection_string, tmp_path, remote=False))
    run_all(app.context, land(app.context, mixed_file("ns/hub/0/2026/11/21/12/00/00.ndjson", 5, seed=91)).ref)
    assert len(list(app.states.list(lake=app.settings.lake_uri))) == 1
    for hostile in ("x' or PartitionKey ne '", "' or '1' eq '1", "user_activity' or '' eq '"):
        assert list(app.states.list(dataset=hostile)) == []
        assert list(app.states.list(lake=hostile)) == []
        assert app.states.find(hostile) is None


def test_a_delta_predicate_value_with_a_quote_prunes_to_itself(tmp_path: Path) -> None:
    table = Lake(str(tmp_path / "lake")).table(TableSpec("t", pa.schema([("_batch_id", pa.string())])))
    for value in ("it's", "plain", "' OR '1'='1"):
        table.snapshot().append(pa.table({"_batch_id": [value]}), f"t:{value}", {})
    assert sql_literal("it's") == "'it''s'"
    for value in ("it's", "' OR '1'='1"):
        found = table.snapshot().scan(sql_in("_batch_id", [value])).collect()
        assert found.get_column("_batch_id").to_list() == [value]
    injected = table.snapshot().scan(sql_in("_batch_id", ["nothing') OR ('1'='1"])).collect()
    assert injected.height == 0


@pytest.mark.azurite
def test_a_file_whose_name_has_quotes_lands_once_end_to_end(up: Emulator, tmp_path: Path) -> None:
    app = build(settings_on(up.connection_string, tmp_path, remote=False))
    file = mixed_file("ns/hub/0/2026/11/21/12/00/o'clock' OR '1'='1.ndjson", 80, seed=92)
    done = run_all(app.context, land(app.context, file).ref)
    assert done.state is State.GOLD_DONE and "'" in done.source
    assert check(app.context, first_wins([file.valid]), [done]).problems() == []


ACCOUNT = "devstoreaccount1"


@pytest.mark.parametrize(
    "url",
    [
        "https://other.blob.core.windows.net/capture/ns/hub/0/a.avro",
        f"https://{ACCOUNT}.blob.core.windows.net/lake/ns/hub/0/a.avro",
        f"https://{ACCOUNT}.blob.core.windows.net/capture/elsewhere/a.avro",
        f"https://{ACCOUNT}.blob.core.windows.net/capture/ns/../../lake/_delta_log/0.json",
        f"https://{ACCOUNT}.blob.core.windows.net/capture/ns/%2e%2e/lake/a.avro",
        f"https://{ACCOUNT}.blob.core.windows.net/capture/ns/./hub/a.avro",
        f"https://{ACCOUNT}.blob.core.windows.net/capture/ns//a.avro",
        "https://evil.example/capture/ns/hub/0/a.avro",
        "file:///etc/passwd",
    ],
)
def test_an_event_naming_a_blob_outside_the_capture_prefix_is_never_read(url: str) -> None:
    settings = make_settings(
        "UseDevelopmentStorage=true",
        lake_uri="az://lake",
        capture_uri="az://capture/ns",
        quarantine_uri="az://quarantine",
    )
    target = CaptureTarget.from_settings(settings)
    assert decide(_event(url), target).action == "ignore"
    from shared.services.intake import Intake

    intake = Intake(settings, _NoFiles(), _NoQueries(), None)  # type: ignore[arg-type]
    assert asyncio.run(intake.event(_event(url), _Refusing())).action == "ignored"
    report(f"event outside the capture prefix: {url[:60]}", bad_inputs=1)


# -- stand-ins that fail if reached ---------------------------------------------------------
def _event(url: str) -> Envelope:
    data = {"api": "PutBlob", "url": url, "contentLength": 100, "eTag": "0x1"}
    return Envelope("eventgrid", "e", "Microsoft.Storage.BlobCreated", "s", "t", data)


class _Refusing:
    async def start_new(self, *args: Any, **kwargs: Any) -> str:
        raise AssertionError("an orchestration was started")

    async def get_status(self, instance_id: str) -> Any:
        return None


class _Untouchable:
    """Every method fails when called: the code under test must not get that far."""

    def __getattr__(self, name: str) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{type(self).__name__}.{name} was called with {args}")

        return called


class _NoQueries(_Untouchable):
    pass


class _NoFiles(_Untouchable):
    pass
