"""Typed settings: the only module that reads ``os.environ``.

Values come from the process environment, or from ``local.settings.json``'s
``Values`` block when that file exists (as Core Tools does). The environment wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError

# Azurite's published well-known development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={AZURITE_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the pipeline reads. Names match the app-setting keys."""

    storage_connection: str
    """STORAGE_CONNECTION (falls back to AzureWebJobsStorage): blob, table and Delta access."""
    lake_uri: str
    """LAKE_URI: root of the Delta tables, ``az://container/path`` or a local directory."""
    capture_uri: str
    """CAPTURE_URI: where Capture files land, ``az://container/prefix`` or a local directory."""
    quarantine_uri: str
    """QUARANTINE_URI: where unreadable files are moved, keeping their path."""
    state_table: str
    """BATCH_STATE_TABLE: Azure Table holding one entity per batch."""
    large_file_bytes: int
    """LARGE_FILE_BYTES: files above this size take the large-file route."""
    chunk_rows: int
    """CHUNK_ROWS: rows decoded and validated per chunk; bounds memory on large files."""
    delta_commit_retries: int
    """DELTA_COMMIT_RETRIES: attempts at a Delta commit that conflicts with a concurrent writer."""
    durable_hub_name: str = "tributary"
    """DURABLE_HUB_NAME: the Durable task hub; host.json reads it as ``%DURABLE_HUB_NAME%``."""
    operations_table: str = "operations"
    """OPERATIONS_TABLE: Azure Table of orchestration start claims and maintenance records."""
    backfill_concurrency: int = 8
    """BACKFILL_CONCURRENCY: batches a backfill registers and starts at once."""
    maintenance_schedule: str = "0 30 2 * * *"
    """MAINTENANCE_SCHEDULE: NCRONTAB of the compaction/vacuum timer (host reads ``%...%``)."""
    vacuum_retention_hours: int = 168
    """VACUUM_RETENTION_HOURS: age of unreferenced Delta files that vacuum deletes."""

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        local_settings: Path | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read settings from ``env`` (default ``os.environ``) over ``local.settings.json``.

        Args:
            env: Values to read instead of the process environment (tests).
            local_settings: Path of a Core Tools settings file (default ./local.settings.json).
            defaults: Values used only when neither source sets them (the CLI's Azurite).

        Raises:
            ConfigError: a value is missing or malformed.
        """
        values: dict[str, str] = dict(defaults or {})
        path = local_settings if local_settings is not None else Path("local.settings.json")
        if env is None and path.is_file():
            values.update(_local_settings_values(path))
        values.update(os.environ if env is None else env)

        connection = values.get("STORAGE_CONNECTION") or values.get("AzureWebJobsStorage", "")
        if not connection:
            raise ConfigError("STORAGE_CONNECTION (or AzureWebJobsStorage) is not set")
        if connection.strip().rstrip(";") == "UseDevelopmentStorage=true":
            connection = AZURITE_CONNECTION
        return cls(
            storage_connection=connection,
            lake_uri=values.get("LAKE_URI", "az://lake").rstrip("/"),
            capture_uri=values.get("CAPTURE_URI", "az://capture").rstrip("/"),
            quarantine_uri=values.get("QUARANTINE_URI", "az://quarantine").rstrip("/"),
            state_table=values.get("BATCH_STATE_TABLE", "batches"),
            large_file_bytes=_int(values, "LARGE_FILE_BYTES", DEFAULT_LARGE_FILE_BYTES),
            chunk_rows=_int(values, "CHUNK_ROWS", 16_384),
            delta_commit_retries=_int(values, "DELTA_COMMIT_RETRIES", 8),
            durable_hub_name=values.get("DURABLE_HUB_NAME") or "tributary",
            operations_table=values.get("OPERATIONS_TABLE") or "operations",
            backfill_concurrency=max(1, _int(values, "BACKFILL_CONCURRENCY", 8)),
            maintenance_schedule=values.get("MAINTENANCE_SCHEDULE") or "0 30 2 * * *",
            vacuum_retention_hours=_int(values, "VACUUM_RETENTION_HOURS", 168),
        )


# The largest Capture file measured to fit 75% of a 2,048 MB Flex Consumption instance
# within 60 s: 464 MiB (`make bench`; the fit allows more, the default does not extrapolate).
DEFAULT_LARGE_FILE_BYTES = 464 * 1024 * 1024

# Environment the worker process needs from its start, read by libraries rather than by
# this code: polars' allocator hands freed pages back within a second, on a background
# thread (by default it holds them about ten seconds, which a step's peak pays for), and
# numba caches compiled kernels where an instance can write (/home/site/wwwroot is read
# only). Tests check each is set, with these values, in infra/ and
# local.settings.example.json; the benchmark gives it to every case.
PROCESS_ENVIRONMENT = {
    "_RJEM_MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
    "NUMBA_CACHE_DIR": "/tmp/tributary-numba",
}

# Every app-setting name the code reads; tests check each is listed in
# local.settings.example.json and set in infra/.
SETTING_NAMES = (
    "AzureWebJobsStorage",
    "STORAGE_CONNECTION",
    "LAKE_URI",
    "CAPTURE_URI",
    "QUARANTINE_URI",
    "BATCH_STATE_TABLE",
    "LARGE_FILE_BYTES",
    "CHUNK_ROWS",
    "DELTA_COMMIT_RETRIES",
    "DURABLE_HUB_NAME",
    "OPERATIONS_TABLE",
    "BACKFILL_CONCURRENCY",
    "MAINTENANCE_SCHEDULE",
    "VACUUM_RETENTION_HOURS",
)


def _int(values: Mapping[str, str], key: str, default: int) -> int:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None


def _local_settings_values(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    raw = data.get("Values", {})
    return {str(k): str(v) for k, v in raw.items()}


def parse_connection_string(connection: str) -> dict[str, str]:
    """Split an Azure Storage connection string into its ``Key=Value`` parts."""
    parts: dict[str, str] = {}
    for item in connection.split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            parts[key.strip()] = value.strip()
    return parts
