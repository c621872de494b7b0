"""The command line, run as a user runs it: `python -m shared ...` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["generate", "ingest", "batches", "show", "demo", "events"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: python -m shared" in result.stdout


@pytest.mark.azurite
def test_generate_ingest_batches_show(local_settings: Settings, azurite_connection: str) -> None:
    env = {
        "AzureWebJobsStorage": azurite_connection,
        "LAKE_URI": local_settings.lake_uri,
        "CAPTURE_URI": local_settings.capture_uri,
        "QUARANTINE_URI": local_settings.quarantine_uri,
        "BATCH_STATE_TABLE": local_settings.state_table,
    }
    out = local_settings.capture_uri
    generated = cli(
        "generate",
        "--out",
        out,
        "--files",
        "4",
        "--events-per-file",
        "60",
        "--defect-rate",
        "0.1",
        "--seed",
        "3",
        env=env,
    )
    assert generated.returncode == 0, generated.stderr
    assert len(list(Path(out).rglob("*.avro"))) == 6  # 4 + one empty + one truncated

    ingested = cli("ingest", out, env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.count("GOLD_DONE") == 4
    assert "QUARANTINED" in ingested.stdout and "EMPTY" in ingested.stdout

    listed = cli("batches", "--json", env=env)
    batches = json.loads(listed.stdout)
    assert len(batches) == 6
    for batch in batches:
        c = batch["counts"]
        if batch["state"] == "GOLD_DONE":
            assert c["rows_in"] == c["rows_valid"] + c["rows_quarantined"]
            assert c["rows_valid"] == c["silver_inserted"] + c["duplicates_dropped"]

    shown = cli("show", "user_watch_time", "--json", "--limit", "3", env=env)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) == 3

    again = cli(
        "generate",
        "--out",
        out,
        "--files",
        "4",
        "--events-per-file",
        "60",
        "--defect-rate",
        "0.1",
        "--seed",
        "3",
        env=env,
    )
    # Identical files are not rewritten; only the truncated one, moved to quarantine, comes back.
    assert "wrote 1 files" in again.stdout
