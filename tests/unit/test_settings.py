"""Config in one place: every setting is typed, listed for local runs and set in infra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.settings import (
    AZURITE_CONNECTION,
    CONNECTION_SETTINGS,
    PROCESS_ENVIRONMENT,
    SETTING_NAMES,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_listed_in_local_settings_example() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())
    assert set(SETTING_NAMES) <= set(example["Values"])
    assert example["Values"]["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert example["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_every_setting_is_set_in_infra() -> None:
    bicep = "\n".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    missing = [name for name in SETTING_NAMES if name not in CONNECTION_SETTINGS and name not in bicep]
    assert not missing


def test_process_environment_is_set_everywhere_with_the_same_values() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    bicep = "\n".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    for name, value in PROCESS_ENVIRONMENT.items():
        assert example[name] == value
        assert f"{name}: '{value}'" in bicep


def test_environment_wins_over_local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps(
            {
                "Values": {
                    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                    "LAKE_URI": "az://from-file",
                    "CHUNK_ROWS": "5",
                }
            }
        )
    )
    monkeypatch.setenv("LAKE_URI", "az://from-env")
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("LAKE_STORAGE", raising=False)
    settings = Settings.from_env(local_settings=path)
    assert settings.lake_uri == "az://from-env"
    assert settings.chunk_rows == 5
    assert settings.storage_connection == AZURITE_CONNECTION


def test_bad_values_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="CHUNK_ROWS must be an integer"):
        Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "CHUNK_ROWS": "many"})


def test_the_eventhub_connection_string_is_read_but_never_shown() -> None:
    secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=hush"
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    settings = Settings.from_env({**base, "EVENTHUB_CONNECTION_STRING": secret})
    assert settings.eventhub_connection_string == secret
    assert "hush" not in repr(settings)
    assert Settings.from_env(base).eventhub_connection_string is None


def test_a_path_style_service_uri_names_its_account_in_the_path() -> None:
    from shared.settings import StorageAccount

    uri = "https://127.0.0.1:10000/devstoreaccount1"
    account = StorageAccount.from_values({"X__blobServiceUri": uri, "X__credential": "managedidentity"}, "X")
    assert account is not None
    assert (account.name, account.blob_uri, account.dfs_uri) == ("devstoreaccount1", uri, uri)
    hosted = StorageAccount.from_values({"X__blobServiceUri": "https://lake1.blob.core.windows.net"}, "X")
    assert hosted is not None
    assert (hosted.name, hosted.table_uri) == ("lake1", "https://lake1.table.core.windows.net")
