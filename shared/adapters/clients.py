"""Azure SDK clients, each built from an account URL plus a credential.

The credential is the account key only where a connection string carried one (Azurite,
or a user's choice); in Azure it is the app's managed identity. No other module builds
a credential or a client.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from shared.settings import StorageAccount

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
    from azure.data.tables import TableClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.filedatalake import DataLakeServiceClient

#: What the storage data plane accepts tokens for.
STORAGE_SCOPE = "https://storage.azure.com/.default"


def credential(account: StorageAccount) -> AzureNamedKeyCredential | TokenCredential:
    """How the SDK signs requests to ``account``."""
    if account.credential == "key":
        from azure.core.credentials import AzureNamedKeyCredential

        assert account.key is not None
        return AzureNamedKeyCredential(account.name, account.key)
    return _identity(account.credential, account.client_id)


@cache
def _identity(kind: str, client_id: str | None) -> TokenCredential:
    """One identity credential per kind and client id: each caches its tokens."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if kind == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def blob_service(account: StorageAccount) -> BlobServiceClient:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(account.blob_uri, credential=credential(account), **_transport())


def datalake_service(account: StorageAccount) -> DataLakeServiceClient:
    from azure.storage.filedatalake import DataLakeServiceClient

    return DataLakeServiceClient(account.dfs_uri, credential=credential(account), **_transport())


def table_client(account: StorageAccount, table: str) -> TableClient:
    """A client for ``table``, which is created if it does not exist."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient

    client = TableServiceClient(account.table_uri, credential=credential(account), **_transport())
    tables = client.get_table_client(table)
    try:
        tables.create_table()
    except ResourceExistsError:
        pass
    return tables


def delta_storage_options(account: StorageAccount) -> dict[str, str]:
    """delta-rs (object_store) options for the lake account.

    A key-based account passes its key. An identity passes a bearer token from the same
    credential the SDK clients use (object_store's own managed-identity provider speaks
    only IMDS, not the App Service identity endpoint Flex Consumption gives); tokens last
    an hour or more, and every step asks for fresh options.
    """
    options = {"account_name": account.name}
    if account.credential == "key":
        assert account.key is not None
        options["account_key"] = account.key
    else:
        token = _identity(account.credential, account.client_id).get_token(STORAGE_SCOPE)
        options["bearer_token"] = token.token
    if account.emulator:
        options["azure_storage_endpoint"] = account.blob_uri
        options["allow_http"] = "true"
    return options


def _transport() -> dict[str, Any]:
    """Retry settings every client shares: the SDK's exponential retry, a few attempts."""
    return {"retry_total": 5, "retry_backoff_factor": 0.8, "retry_backoff_max": 30}
