"""Locations, SDK-free: which container and blob a URI names, and whose account it is.

- ``az://container/path`` names a blob on the lake account (LAKE_STORAGE);
- ``https://account.blob.core.windows.net/container/path`` (or ``.dfs.``), as Event Grid sends;
- ``http://127.0.0.1:10000/devstoreaccount1/container/path``, Azurite's path-style URLs;
- anything else is a local path.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from shared.errors import NotABlobUri


@dataclass(frozen=True, slots=True)
class BlobLocation:
    container: str
    path: str

    @property
    def uri(self) -> str:
        return f"az://{self.container}/{self.path}"


def is_remote(uri: str) -> bool:
    return uri.startswith(("az://", "abfs://", "abfss://", "http://", "https://"))


def join(root: str, *parts: str) -> str:
    """Join URI or path parts with ``/`` (never ``os.sep``: blob names use ``/``)."""
    out = root.rstrip("/")
    for part in parts:
        if part:
            out = f"{out}/{part.strip('/')}"
    return out


def locate(uri: str, account: str = "") -> BlobLocation:
    """Split a remote URI into container and blob path (no I/O).

    Args:
        uri: An ``az://``, ``abfs(s)://`` or blob URL.
        account: The account a path-style (emulator) URL starts with, to skip it.

    Raises:
        NotABlobUri: the URI names no container.
    """
    if uri.startswith("az://"):
        container, _, path = uri[len("az://") :].partition("/")
        if not container:
            raise NotABlobUri(f"not a blob URI: {uri}")
        return BlobLocation(container, path)
    if uri.startswith(("abfs://", "abfss://")):
        parsed = urlparse(uri)
        return BlobLocation(parsed.username or parsed.netloc.split("@")[0], parsed.path[1:])
    if uri.startswith(("http://", "https://")):
        parsed = urlparse(uri)
        segments = unquote(parsed.path).lstrip("/").split("/")
        # Path-style (Azurite): /account/container/blob; virtual-host style: /container/blob
        if segments and parsed.port is not None and segments[0] == (account or segments[0]):
            segments = segments[1:]
        if len(segments) < 2 or not segments[0] or not segments[-1]:
            raise NotABlobUri(f"not a blob URL: {uri}")
        return BlobLocation(segments[0], "/".join(segments[1:]))
    raise NotABlobUri(f"not a blob URI: {uri}")


def account_of(uri: str) -> str | None:
    """The storage account a blob URL names, or None when it names none (``az://``)."""
    if not uri.startswith(("http://", "https://")):
        return None
    parsed = urlparse(uri)
    if parsed.port is not None:  # path-style emulator URL
        return unquote(parsed.path).lstrip("/").split("/")[0]
    return (parsed.hostname or "").split(".")[0]


def abfss(uri: str, account: str) -> str:
    """``uri`` as Spark (and the ABFS driver) names it: ``abfss://container@account.dfs...``.

    ``az://container/path`` on ``account`` becomes its ``abfss://`` form; a local path, or a
    URI already in that form, is returned as it is. delta-rs and polars read both forms.
    """
    if not uri.startswith("az://"):
        return uri
    location = locate(uri, account)
    return f"abfss://{location.container}@{account}.dfs.core.windows.net/{location.path}".rstrip("/")
