"""Typed settings: the only module that reads ``os.environ``.

Values come from the process environment, or from ``local.settings.json``'s ``Values``
block when that file exists (as Core Tools does). The environment wins.

Storage follows the Functions conventions for connections. A setting's plain value is a
connection string (Azurite's ``UseDevelopmentStorage=true``, or a user who chooses keys);
without one, ``<NAME>__accountName`` (or ``<NAME>__blobServiceUri`` and its siblings)
names the account, and the app signs in as an identity: ``<NAME>__credential`` set to
``managedidentity`` with ``<NAME>__clientId`` for a user-assigned managed identity, or
any identity ``DefaultAzureCredential`` finds (``az login`` on a workstation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from shared.errors import ConfigError
from shared.uris import account_of

# Azurite's published well-known development account and key: not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={AZURITE_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

Credential = Literal["key", "managedidentity", "default"]
_SERVICES = ("blob", "dfs", "queue", "table")


@dataclass(frozen=True, slots=True)
class StorageAccount:
    """One storage account as the app reaches it: endpoints, and how it signs in.

    ``credential`` is ``key`` only for a connection string that carries an account key
    (Azurite, or a user's choice); in Azure it is ``managedidentity``.
    """

    name: str
    blob_uri: str
    dfs_uri: str
    queue_uri: str
    table_uri: str
    credential: Credential
    key: str | None = None
    client_id: str | None = None
    setting: str = ""
    """The setting it was read from, for error messages."""

    @property
    def emulator(self) -> bool:
        """Azurite: path-style URLs on loopback, Blob/Queue/Table only (no DFS endpoint)."""
        return "127.0.0.1" in self.blob_uri or "localhost" in self.blob_uri

    @property
    def connection_string(self) -> str:
        """A key-based connection string (``credential == "key"`` only)."""
        if self.key is None:
            raise ConfigError(f"{self.setting} signs in with an identity; it has no connection string")
        return (
            f"DefaultEndpointsProtocol={self.blob_uri.split(':', 1)[0]};AccountName={self.name};"
            f"AccountKey={self.key};BlobEndpoint={self.blob_uri};QueueEndpoint={self.queue_uri};"
            f"TableEndpoint={self.table_uri};"
        )

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"StorageAccount({self.name!r}, {self.blob_uri!r}, credential={self.credential!r})"

    @classmethod
    def from_values(cls, values: Mapping[str, str], setting: str) -> StorageAccount | None:
        """The account ``setting`` names, by connection string or by identity; None if unset.

        Raises:
            ConfigError: the connection string is malformed or names no account.
        """
        raw = values.get(setting, "").strip()
        if raw:
            if raw.rstrip(";") == "UseDevelopmentStorage=true":
                raw = AZURITE_CONNECTION
            return cls._from_connection_string(raw, setting)
        prefix = f"{setting}__"
        if not any(k.startswith(prefix) and v for k, v in values.items()):
            return None
        name = values.get(prefix + "accountName", "")
        uris = {s: values.get(f"{prefix}{s}ServiceUri", "").rstrip("/") for s in _SERVICES}
        given = uris["blob"] or uris["table"] or uris["queue"]
        if not name:
            if not given:
                raise ConfigError(f"{prefix}accountName (or {prefix}blobServiceUri) is not set")
            # Virtual-host style names the account first in the host; path-style (an
            # emulator) in the path.
            name = account_of(given) or ""
        for service in _SERVICES:
            path_style = given and urlparse(given).port is not None
            fallback = given if path_style else f"https://{name}.{service}.core.windows.net"
            uris[service] = uris[service] or fallback
        credential = values.get(prefix + "credential", "").lower()
        if credential not in ("", "managedidentity"):
            raise ConfigError(f"{prefix}credential must be managedidentity (or unset), got {credential!r}")
        return cls(
            name=name,
            blob_uri=uris["blob"],
            dfs_uri=uris["dfs"],
            queue_uri=uris["queue"],
            table_uri=uris["table"],
            credential="managedidentity" if credential else "default",
            client_id=values.get(prefix + "clientId") or None,
            setting=setting,
        )

    @classmethod
    def _from_connection_string(cls, raw: str, setting: str) -> StorageAccount:
        parts = parse_connection_string(raw)
        name = parts.get("AccountName", "")
        if not name or "AccountKey" not in parts:
            raise ConfigError(
                f"{setting} is not a storage connection string with AccountName and AccountKey "
                f"(or use {setting}__accountName with a managed identity)"
            )
        scheme = parts.get("DefaultEndpointsProtocol", "https")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        uris = {
            s: parts.get(f"{s.capitalize()}Endpoint", f"{scheme}://{name}.{s}.{suffix}").rstrip("/")
            for s in _SERVICES
        }
        if "BlobEndpoint" in parts and "DfsEndpoint" not in parts:
            uris["dfs"] = uris["blob"]  # Azurite has none; a real account's is its own host
        return cls(
            name=name,
            blob_uri=uris["blob"],
            dfs_uri=uris["dfs"],
            queue_uri=uris["queue"],
            table_uri=uris["table"],
            credential="key",
            key=parts["AccountKey"],
            setting=setting,
        )


@dataclass(frozen=True, slots=True)
class Databricks:
    """The workspace large files run on. ``host`` empty means none is configured."""

    host: str
    token: str | None
    """DATABRICKS_TOKEN: a personal access token, for local runs only."""
    client_id: str | None
    """DATABRICKS_CLIENT_ID: the managed identity that signs in to the workspace in Azure."""
    job_root: str
    """DATABRICKS_JOB_ROOT: workspace folder the bundle deploys the job code to."""
    cluster_policy_id: str | None
    instance_pool_id: str | None
    serverless: bool
    spark_version: str
    node_type: str
    workers: int
    poll_seconds: int
    """DATABRICKS_POLL_SECONDS: first wait between status polls; doubles up to 10 minutes."""
    timeout_minutes: int
    """DATABRICKS_TIMEOUT_MINUTES: a run still going after this is cancelled and the batch FAILED."""
    dbu_per_hour: float
    """DATABRICKS_DBU_PER_HOUR: DBUs the job cluster burns an hour (cost per batch)."""

    @property
    def configured(self) -> bool:
        return bool(self.host)

    def __repr__(self) -> str:
        return f"Databricks({self.host!r}, token={'set' if self.token else 'unset'})"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the pipeline reads. Names match the app-setting keys."""

    host_storage: StorageAccount
    """AzureWebJobsStorage: the Functions host's account; batch state and the operations table."""
    lake_storage: StorageAccount
    """LAKE_STORAGE (default: AzureWebJobsStorage): Capture files, the Delta lake, quarantine."""
    lake_uri: str
    """LAKE_URI: root of the Delta tables, ``az://container/path`` or a local directory."""
    capture_uri: str
    """CAPTURE_URI: where Capture files land, ``az://container/prefix`` or a local directory."""
    quarantine_uri: str
    """QUARANTINE_URI: where unreadable files are moved, keeping their path."""
    state_table: str
    """BATCH_STATE_TABLE: Azure Table holding one entity per batch."""
    operations_table: str
    """OPERATIONS_TABLE: Azure Table of orchestration start claims and maintenance records."""
    large_file_bytes: int
    """LARGE_FILE_BYTES: files above this size take the Databricks route."""
    chunk_rows: int
    """CHUNK_ROWS: rows decoded and validated per chunk; bounds memory on large files."""
    delta_commit_retries: int
    """DELTA_COMMIT_RETRIES: attempts at a Delta commit that conflicts with a concurrent writer."""
    storage_retry_seconds: int
    """STORAGE_RETRY_SECONDS: how long a storage outage is ridden out before a step gives up."""
    durable_hub_name: str
    """DURABLE_HUB_NAME: the Durable task hub; host.json reads it as ``%DURABLE_HUB_NAME%``."""
    backfill_concurrency: int
    """BACKFILL_CONCURRENCY: batches a backfill registers and starts at once."""
    maintenance_schedule: str
    """MAINTENANCE_SCHEDULE: NCRONTAB of the compaction/vacuum timer (host reads ``%...%``)."""
    vacuum_retention_hours: int
    """VACUUM_RETENTION_HOURS: age of unreferenced Delta files that vacuum deletes."""
    instance_memory_mb: int
    """INSTANCE_MEMORY_MB: memory of one Function instance; GB-seconds per batch are counted with it."""
    databricks: Databricks
    eventhub_connection_string: str | None = field(default=None, repr=False)
    """EVENTHUB_CONNECTION_STRING: a connection string ``python -m shared produce`` may send
    with instead of an identity; dev tools only, never read by the app."""

    @property
    def storage_connection(self) -> str:
        """The lake account's connection string (transitional: adapters still take one)."""
        return self.lake_storage.connection_string

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
            ConfigError: a value is missing or malformed; the message names it.
        """
        values: dict[str, str] = dict(defaults or {})
        path = local_settings if local_settings is not None else Path("local.settings.json")
        if env is None and path.is_file():
            values.update(_local_settings_values(path))
        values.update(os.environ if env is None else env)
        read = _Reader(values)

        host = StorageAccount.from_values(values, "AzureWebJobsStorage")
        if host is None:
            raise ConfigError(
                "AzureWebJobsStorage is not set: a connection string (UseDevelopmentStorage=true "
                "for Azurite) or AzureWebJobsStorage__accountName with a managed identity"
            )
        return cls(
            host_storage=host,
            lake_storage=StorageAccount.from_values(values, "LAKE_STORAGE") or host,
            lake_uri=read.text("LAKE_URI", "az://lake").rstrip("/"),
            capture_uri=read.text("CAPTURE_URI", "az://capture").rstrip("/"),
            quarantine_uri=read.text("QUARANTINE_URI", "az://quarantine").rstrip("/"),
            state_table=read.name("BATCH_STATE_TABLE", "batches"),
            operations_table=read.name("OPERATIONS_TABLE", "operations"),
            large_file_bytes=read.integer("LARGE_FILE_BYTES", DEFAULT_LARGE_FILE_BYTES, least=1),
            chunk_rows=read.integer("CHUNK_ROWS", 16_384, least=1),
            delta_commit_retries=read.integer("DELTA_COMMIT_RETRIES", 8, least=1),
            storage_retry_seconds=read.integer("STORAGE_RETRY_SECONDS", 60, least=0),
            durable_hub_name=read.text("DURABLE_HUB_NAME", "tributary"),
            backfill_concurrency=read.integer("BACKFILL_CONCURRENCY", 8, least=1),
            maintenance_schedule=read.text("MAINTENANCE_SCHEDULE", "0 30 2 * * *"),
            vacuum_retention_hours=read.integer("VACUUM_RETENTION_HOURS", 168, least=0),
            instance_memory_mb=read.integer("INSTANCE_MEMORY_MB", 2048, least=512),
            databricks=Databricks(
                host=read.text("DATABRICKS_HOST", "").rstrip("/"),
                token=read.text("DATABRICKS_TOKEN", "") or None,
                client_id=read.text("DATABRICKS_CLIENT_ID", "") or None,
                job_root=read.text("DATABRICKS_JOB_ROOT", "/Workspace/Shared/tributary").rstrip("/"),
                cluster_policy_id=read.text("DATABRICKS_CLUSTER_POLICY_ID", "") or None,
                instance_pool_id=read.text("DATABRICKS_INSTANCE_POOL_ID", "") or None,
                serverless=read.flag("DATABRICKS_SERVERLESS", False),
                spark_version=read.text("DATABRICKS_SPARK_VERSION", "15.4.x-scala2.12"),
                node_type=read.text("DATABRICKS_NODE_TYPE", "Standard_DS3_v2"),
                workers=read.integer("DATABRICKS_WORKERS", 1, least=0),
                poll_seconds=read.integer("DATABRICKS_POLL_SECONDS", 30, least=1),
                timeout_minutes=read.integer("DATABRICKS_TIMEOUT_MINUTES", 120, least=1),
                dbu_per_hour=read.number("DATABRICKS_DBU_PER_HOUR", 1.5),
            ),
            eventhub_connection_string=read.text("EVENTHUB_CONNECTION_STRING", "") or None,
        )


class _Reader:
    """Typed reads of raw setting values; every error names the setting."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def text(self, key: str, default: str) -> str:
        return self.values.get(key) or default

    def name(self, key: str, default: str) -> str:
        """An Azure Table name: 3-63 letters and digits, starting with a letter."""
        value = self.text(key, default)
        if not (3 <= len(value) <= 63 and value.isascii() and value.isalnum() and value[0].isalpha()):
            raise ConfigError(f"{key} must be 3-63 letters and digits starting with a letter, got {value!r}")
        return value

    def integer(self, key: str, default: int, *, least: int) -> int:
        raw = self.values.get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
        if value < least:
            raise ConfigError(f"{key} must be at least {least}, got {value}")
        return value

    def number(self, key: str, default: float) -> float:
        raw = self.values.get(key)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None

    def flag(self, key: str, default: bool) -> bool:
        raw = (self.values.get(key) or "").strip().lower()
        if not raw:
            return default
        if raw not in ("true", "false", "1", "0"):
            raise ConfigError(f"{key} must be true or false, got {raw!r}")
        return raw in ("true", "1")


# The largest Capture file measured to fit 75% of a 2,048 MB Flex Consumption instance
# within 60 s: 464 MiB (`make bench`; the fit allows more, the default does not extrapolate).
DEFAULT_LARGE_FILE_BYTES = 464 * 1024 * 1024

# Environment the worker process needs from its start, read by libraries rather than by
# this code: polars' allocator hands freed pages back within a second, on a background
# thread (by default it holds them about ten seconds, which a step's peak pays for), and
# numba caches compiled kernels where an instance can write (/home/site/wwwroot is read
# only). Where the worker exports telemetry (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY,
# set in Azure beside the connection string), its azure-monitor-opentelemetry collects the
# pipeline's own loggers only (the root would also collect the exporter's "Transmission
# succeeded" line, one more record per export, forever), and keeps every span: the default
# rate-limited sampler keeps about 5 traces a second and drops the rest, failed calls too.
# Tests check each is set, with these values, in infra/ and local.settings.example.json;
# the benchmark gives it to every case.
PROCESS_ENVIRONMENT = {
    "_RJEM_MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
    "NUMBA_CACHE_DIR": "/tmp/tributary-numba",
    "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME": "shared",
    "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",
    "OTEL_TRACES_SAMPLER_ARG": "1.0",
}

#: Every app setting the code reads, in the form local runs use: each is listed in
#: local.settings.example.json, and each but CONNECTION_SETTINGS is set in infra/.
SETTING_NAMES = (
    "AzureWebJobsStorage",
    "LAKE_STORAGE",
    "LAKE_URI",
    "CAPTURE_URI",
    "QUARANTINE_URI",
    "BATCH_STATE_TABLE",
    "OPERATIONS_TABLE",
    "LARGE_FILE_BYTES",
    "CHUNK_ROWS",
    "DELTA_COMMIT_RETRIES",
    "STORAGE_RETRY_SECONDS",
    "DURABLE_HUB_NAME",
    "BACKFILL_CONCURRENCY",
    "MAINTENANCE_SCHEDULE",
    "VACUUM_RETENTION_HOURS",
    "INSTANCE_MEMORY_MB",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_JOB_ROOT",
    "DATABRICKS_CLUSTER_POLICY_ID",
    "DATABRICKS_INSTANCE_POOL_ID",
    "DATABRICKS_SERVERLESS",
    "DATABRICKS_SPARK_VERSION",
    "DATABRICKS_NODE_TYPE",
    "DATABRICKS_WORKERS",
    "DATABRICKS_POLL_SECONDS",
    "DATABRICKS_TIMEOUT_MINUTES",
    "DATABRICKS_DBU_PER_HOUR",
    "EVENTHUB_CONNECTION_STRING",
)
#: Settings that carry a key or token: local runs only, never in infra/ (Azure signs in
#: with the app's managed identity instead).
CONNECTION_SETTINGS = (
    "AzureWebJobsStorage",
    "LAKE_STORAGE",
    "DATABRICKS_TOKEN",
    "EVENTHUB_CONNECTION_STRING",
)
#: The identity-based forms of the storage settings, read when no connection string is
#: set: what infra/ sets in Azure. ``__blobServiceUri``-style URIs may replace ``__accountName``.
IDENTITY_SETTINGS = tuple(
    f"{account}__{part}"
    for account in ("AzureWebJobsStorage", "LAKE_STORAGE")
    for part in ("accountName", "credential", "clientId")
)


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
