"""Identity-based connection settings, read as the Functions host reads them, and signed in
with the credential they name; no key or token ever reaches a repr or an error message."""

from __future__ import annotations

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.adapters.clients import credential, managed_identity
from shared.errors import ConfigError
from shared.settings import AZURITE_CONNECTION, AZURITE_KEY, Settings, StorageAccount

CLIENT_ID = "6f1c2b3a-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
KEY = "c2VjcmV0LWtleS10aGF0LW11c3QtbmV2ZXItYmUtbG9nZ2Vk" * 2
IDENTITY = {
    "AzureWebJobsStorage__accountName": "tributaryhost",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": CLIENT_ID,
}


def host(values: dict[str, str]) -> StorageAccount:
    account = StorageAccount.from_values(values, "AzureWebJobsStorage")
    assert account is not None
    return account


def test_account_name_with_managedidentity_and_client_id_signs_in_as_that_identity() -> None:
    settings = Settings.from_env(IDENTITY)
    account = settings.host_storage
    assert (account.name, account.credential, account.client_id, account.key) == (
        "tributaryhost", "managedidentity", CLIENT_ID, None,
    )  # fmt: skip
    assert account.blob_uri == "https://tributaryhost.blob.core.windows.net"
    assert account.dfs_uri == "https://tributaryhost.dfs.core.windows.net"
    assert account.queue_uri == "https://tributaryhost.queue.core.windows.net"
    assert account.table_uri == "https://tributaryhost.table.core.windows.net"
    signed_in = credential(account)  # built, not used: nothing is contacted
    assert isinstance(signed_in, ManagedIdentityCredential)
    assert signed_in._credential is not None
    assert signed_in._credential.get_managed_identity() == {  # type: ignore[attr-defined]
        "ManagedIdentityIdType": "ClientId",
        "Id": CLIENT_ID,
    }
    assert managed_identity(account) is signed_in  # one credential, one token cache, per identity


def test_managedidentity_without_client_id_is_the_system_assigned_identity() -> None:
    account = host(
        {"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "ManagedIdentity"}
    )
    signed_in = credential(account)
    assert isinstance(signed_in, ManagedIdentityCredential) and account.client_id is None
    assert signed_in._credential.get_managed_identity()["ManagedIdentityIdType"] == "SystemAssigned"  # type: ignore[union-attr]


def test_no_credential_setting_is_whatever_default_azure_credential_finds() -> None:
    account = host({"AzureWebJobsStorage__accountName": "acct"})
    assert account.credential == "default"
    assert isinstance(credential(account), DefaultAzureCredential)


def test_service_uris_name_each_endpoint_and_the_account() -> None:
    account = host(
        {
            "AzureWebJobsStorage__blobServiceUri": "https://lakeacct.blob.core.windows.net/",
            "AzureWebJobsStorage__queueServiceUri": "https://lakeacct.queue.core.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://lakeacct.table.core.windows.net",
            "AzureWebJobsStorage__credential": "managedidentity",
        }
    )
    assert account.name == "lakeacct"
    assert account.blob_uri == "https://lakeacct.blob.core.windows.net"
    assert account.queue_uri == "https://lakeacct.queue.core.windows.net"
    assert account.table_uri == "https://lakeacct.table.core.windows.net"
    assert account.dfs_uri == "https://lakeacct.dfs.core.windows.net"


def test_a_table_service_uri_alone_names_the_account_and_the_rest_follow() -> None:
    account = host({"AzureWebJobsStorage__tableServiceUri": "https://stateacct.table.core.windows.net"})
    assert account.name == "stateacct"
    assert account.blob_uri == "https://stateacct.blob.core.windows.net"


def test_lake_storage_defaults_to_the_host_account_and_may_name_its_own() -> None:
    assert Settings.from_env(IDENTITY).lake_storage == Settings.from_env(IDENTITY).host_storage
    own = Settings.from_env(
        {**IDENTITY, "LAKE_STORAGE__accountName": "lakeacct", "LAKE_STORAGE__credential": "managedidentity"}
    )
    assert (own.lake_storage.name, own.host_storage.name) == ("lakeacct", "tributaryhost")
    assert own.lake_storage.setting == "LAKE_STORAGE"


def test_a_connection_string_is_still_accepted_and_signs_with_its_key() -> None:
    account = Settings.from_env({"AzureWebJobsStorage": AZURITE_CONNECTION}).host_storage
    assert (account.credential, account.key, account.emulator) == ("key", AZURITE_KEY, True)
    signed = credential(account)
    assert isinstance(signed, AzureNamedKeyCredential) and signed.named_key.name == "devstoreaccount1"


@pytest.mark.parametrize("value", ["workloadidentity", "key", "true"])
def test_a_bad_credential_value_is_a_config_error_naming_the_setting(value: str) -> None:
    expected = f"AzureWebJobsStorage__credential must be managedidentity.*{value}"
    with pytest.raises(ConfigError, match=expected):
        Settings.from_env({**IDENTITY, "AzureWebJobsStorage__credential": value})
    with pytest.raises(ConfigError, match="LAKE_STORAGE__credential"):
        Settings.from_env({**IDENTITY, "LAKE_STORAGE__accountName": "x", "LAKE_STORAGE__credential": value})


def test_no_key_or_token_reaches_a_repr_or_an_error_message() -> None:
    connection = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    token = "dapi-secret-token"
    env = {"AzureWebJobsStorage": connection, "LAKE_STORAGE": connection, "DATABRICKS_TOKEN": token}
    settings = Settings.from_env(env)
    assert settings.host_storage.key == KEY
    for text in (repr(settings), str(settings), repr(settings.host_storage), repr(settings.databricks)):
        assert KEY not in text and token not in text
    messages = []
    for values in (
        {"AzureWebJobsStorage": f"AccountKey={KEY}"},  # no AccountName
        {"AzureWebJobsStorage": f"AccountName=acct;AccountKey={KEY}", "CHUNK_ROWS": "many"},
    ):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(values)
        messages.append(str(caught.value))
    with pytest.raises(ConfigError) as caught:
        _ = Settings.from_env(IDENTITY).host_storage.connection_string
    messages.append(str(caught.value))
    assert messages and all(KEY not in m for m in messages), messages
