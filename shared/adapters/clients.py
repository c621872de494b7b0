"""Azure SDK clients and delta-rs options, each built from an account URL plus a credential.

The credential is the account key only where a connection string carried one (Azurite,
or a user's choice); otherwise it is a token credential that an ``Identity`` builds for
the account: in Azure, ``managed_identity``, the app's managed identity. The adapters
take the ``Identity`` as an argument (``shared.app`` supplies it), so a test can sign in
with tokens of its own without patching anything. No other module builds a credential
or a client.

delta-rs (and polars, for scans) reach the lake through object_store, which is handed a
bearer token from the same credential (``delta_storage_options``), not object_store's own
managed-identity provider: see that function for why, and for the keys it honours.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from shared.errors import StoreAccessDenied
from shared.settings import StorageAccount

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
    from azure.data.tables import TableClient
    from azure.storage.blob import BlobServiceClient, ExponentialRetry
    from azure.storage.filedatalake import DataLakeServiceClient

#: What the storage data plane accepts tokens for (the token's audience is https://storage.azure.com).
STORAGE_SCOPE = "https://storage.azure.com/.default"

#: The token credential of an identity-based account (``credential`` is not ``key``).
Identity = Callable[[StorageAccount], "TokenCredential"]


def managed_identity(account: StorageAccount) -> TokenCredential:
    """The app's identity for ``account``: what production signs in with.

    ``__credential=managedidentity`` gives ``ManagedIdentityCredential`` (with
    ``__clientId``, that user-assigned identity). In App Service and Functions, Flex
    Consumption included, it asks the platform's identity endpoint (``IDENTITY_ENDPOINT``
    with the ``IDENTITY_HEADER`` secret); elsewhere IMDS. Without ``__credential``,
    ``DefaultAzureCredential`` (``az login`` on a workstation). One credential per kind
    and client id per process, so every client shares its token cache.
    """
    return _identity(account.credential, account.client_id)


@cache
def _identity(kind: str, client_id: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if kind == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def credential(
    account: StorageAccount, identity: Identity = managed_identity
) -> AzureNamedKeyCredential | TokenCredential:
    """How the SDK signs requests to ``account``: its key, or ``identity``'s tokens."""
    if account.credential == "key":
        from azure.core.credentials import AzureNamedKeyCredential

        assert account.key is not None
        return AzureNamedKeyCredential(account.name, account.key)
    return identity(account)


def blob_service(account: StorageAccount, identity: Identity = managed_identity) -> BlobServiceClient:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(
        account.blob_uri, credential=credential(account, identity), retry_policy=_storage_retry()
    )


def datalake_service(account: StorageAccount, identity: Identity = managed_identity) -> DataLakeServiceClient:
    from azure.storage.filedatalake import DataLakeServiceClient

    return DataLakeServiceClient(
        account.dfs_uri, credential=credential(account, identity), retry_policy=_storage_retry()
    )


def table_client(account: StorageAccount, table: str, identity: Identity = managed_identity) -> TableClient:
    """A client for ``table``, which is created if it does not exist."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient

    # azure-core's retry, which the Tables client uses: exponential from 0.8 s, at most 30 s, 5 attempts.
    service = TableServiceClient(
        account.table_uri,
        credential=credential(account, identity),
        retry_total=5,
        retry_backoff_factor=0.8,
        retry_backoff_max=30,
    )
    tables = service.get_table_client(table)
    try:
        tables.create_table()
    except ResourceExistsError:
        pass
    return tables


def delta_storage_options(account: StorageAccount, identity: Identity = managed_identity) -> dict[str, str]:
    """delta-rs (object_store) options for the lake account; call once per table open.

    A key-based account passes its key. An identity passes a bearer token from the same
    credential the SDK clients use: the token is static for the life of the ``DeltaTable``
    it opens, so the Lake asks for options at every open, and the credential hands out
    its cached token until it nears expiry (MSAL serves a managed-identity token from its
    cache only while over 5 minutes are left, and renews one of 2 hours or more at half
    its life). object_store's own provider would instead ask the endpoint at every open.

    What deltalake 1.6 (delta-rs ``crates/azure``, object_store 0.13.2) really honours,
    read in their source and checked against the pinned wheel by tests/identity:

    - ``bearer_token`` is an alias of ``azure_storage_token`` (``AzureConfigKey::Token``,
      object_store ``src/azure/builder.rs`` ``FromStr``); a token outranks every other
      credential in ``MicrosoftAzureBuilder::build``, and delta-rs then ignores the
      credential variables of the environment (``AZURE_CLIENT_ID``...;
      ``crates/azure/src/config.rs`` ``AzureConfigHelper::build``).
    - A managed identity's client id is ``azure_client_id`` (or ``client_id``,
      ``azure_storage_client_id``). There is no ``azure_msi_client_id``: delta-rs drops
      keys object_store does not know without a word (``crates/azure/src/lib.rs``
      ``as_azure_options``), so a misspelt key signs in as some other identity.
    - object_store's own managed-identity provider (``ImdsManagedIdentityProvider``,
      ``src/azure/credential.rs``) calls ``azure_msi_endpoint`` (alias
      ``azure_identity_endpoint``), by default IMDS at 169.254.169.254. It speaks the App
      Service protocol too (api-version 2019-08-01, ``x-identity-header`` from the
      ``IDENTITY_HEADER`` variable), but only if given the endpoint: delta-rs builds with
      ``MicrosoftAzureBuilder::new()``, not ``from_env()``, and reads only ``AZURE_*``
      variables, so the platform's ``IDENTITY_ENDPOINT`` is never read. That, and one
      token cache for SDK and lake, is why this passes a token instead.
    - Workload identity: ``azure_federated_token_file`` + ``azure_client_id`` +
      ``azure_tenant_id``; the Azure CLI: ``azure_use_azure_cli`` (``use_azure_cli``).
    - A custom CA: ``certificate_path`` (delta-rs ``CertificateConfig``, from 1.5.1), whose
      environment fallback is ``SSL_CERT_FILE``; polars' own object_store (0.14) reads
      ``SSL_CERT_FILE`` too, through its native roots.

    ``azure_storage_endpoint`` is the account's blob endpoint as the SDK uses it (path
    style on Azurite); ``allow_http`` only for an ``http://`` endpoint.

    Raises:
        StoreAccessDenied: the identity could not get a token.
    """
    options = {"account_name": account.name, "azure_storage_endpoint": account.blob_uri}
    if account.credential == "key":
        assert account.key is not None
        options["account_key"] = account.key
    else:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = identity(account).get_token(STORAGE_SCOPE)
        except ClientAuthenticationError as exc:
            raise access_denied(account.blob_uri, exc) from exc
        options["bearer_token"] = token.token
    if account.blob_uri.startswith("http://"):
        options["allow_http"] = "true"
    return options


#: How object_store words a 401/403, or the status line a list request keeps instead.
_DENIED = re.compile(
    r"lacked (?:the necessary privileges|valid authentication credentials)"
    r"|\b40[13] (?:Forbidden|Unauthorized)\b"
)
#: The service's error code and, for a token it refused, why (Entra/Azurite ``AuthenticationErrorDetail``).
_CODE = re.compile(r"(?:ErrorCode:|<Code>)\s*(\w+)")
_DETAIL = re.compile(r"(?i)AuthenticationErrorDetail\s*[:>]\s*([^\n<]+)")


def denied(exc: BaseException) -> bool:
    """Whether a delta-rs or polars error is the store refusing the request's credential."""
    return bool(_DENIED.search(str(exc)))


def access_denied(where: str, exc: BaseException) -> StoreAccessDenied:
    """``StoreAccessDenied`` for ``where``, with the service's code and reason (never the token)."""
    text = str(exc)
    code, detail = _CODE.search(text), _DETAIL.search(text)
    if code is None and detail is None:  # the credential itself failed: no request was sent
        return StoreAccessDenied(where, f"{type(exc).__name__}: {text.strip()}", signed_in=False)
    return StoreAccessDenied(where, ": ".join(m.group(1).strip() for m in (code, detail) if m is not None))


def _storage_retry() -> ExponentialRetry:
    """The Blob and DFS clients' own retry (they ignore azure-core's ``retry_backoff_*``),
    4 attempts about 1, 3, 5 and 9 s apart: throttling and 5xx answers are ridden out here,
    and a longer outage is ``outlast``'s (STORAGE_RETRY_SECONDS) to ride out or report. The
    SDK's default (15 s, then 15 s + 3**n) would hold a call about three minutes before the
    budget even started. A credential that got no token is not retried: the storage policy
    retries every ``AzureError``, where azure-core's (and so the Tables client) re-raises
    ``ClientAuthenticationError`` at once, and the identity credential has already retried
    its own endpoint."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.storage.blob import ExponentialRetry

    class StorageRetry(ExponentialRetry):
        def increment(
            self, settings: dict[str, Any], request: Any, response: Any = None, error: Any = None
        ) -> bool:
            if isinstance(error, ClientAuthenticationError):
                return False
            return bool(super().increment(settings, request, response, error))

    return StorageRetry(initial_backoff=1, increment_base=2, retry_total=4)
