"""Landing and quarantine storage: one adapter over ADLS Gen2, Azurite blobs and local folders.

Locations are URIs:
- ``az://container/path`` on the account named by the storage connection;
- ``https://account.blob.core.windows.net/container/path`` (or ``.dfs.``), as Event Grid sends;
- ``http://127.0.0.1:10000/devstoreaccount1/container/path``, Azurite's path-style URLs;
- anything else is a local path.

Moving a file to quarantine is an atomic rename on ADLS Gen2 (hierarchical namespace);
Azurite has no DFS endpoint, so there it is a server-side copy followed by a delete.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlparse

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from shared.errors import PipelineError
from shared.settings import parse_connection_string

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A landed file: where it is, how big, and its content identity (ETag or digest)."""

    uri: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class BlobLocation:
    container: str
    path: str


def is_remote(uri: str) -> bool:
    return uri.startswith(("az://", "abfs://", "abfss://", "http://", "https://"))


def join(root: str, *parts: str) -> str:
    """Join URI or path parts with ``/`` (never ``os.sep``: blob names use ``/``)."""
    out = root.rstrip("/")
    for part in parts:
        if part:
            out = f"{out}/{part.strip('/')}"
    return out


class Storage:
    """Read, list, write and quarantine files wherever they live."""

    def __init__(self, connection: str) -> None:
        self._connection = connection
        parts = parse_connection_string(connection)
        self.account_name = parts.get("AccountName", "")
        self.account_key = parts.get("AccountKey", "")
        self.blob_endpoint = parts.get("BlobEndpoint") or (
            f"https://{self.account_name}.blob.core.windows.net"
        )
        # Azurite serves only the Blob API; a real account is assumed to have HNS enabled.
        self.is_emulator = "127.0.0.1" in self.blob_endpoint or "localhost" in self.blob_endpoint
        self._service: BlobServiceClient | None = None

    @property
    def service(self) -> BlobServiceClient:
        if self._service is None:
            self._service = BlobServiceClient.from_connection_string(self._connection)
        return self._service

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def ensure_container(self, name: str) -> None:
        try:
            _retry(lambda: self.container(name).create_container())
        except ResourceExistsError:
            pass

    # -- addressing -------------------------------------------------------------------
    def locate(self, uri: str) -> BlobLocation:
        """Split a remote URI into container and blob path.

        Raises:
            PipelineError: the URI is not a blob URI.
        """
        if uri.startswith("az://"):
            container, _, path = uri[len("az://") :].partition("/")
            return BlobLocation(container, path)
        if uri.startswith(("abfs://", "abfss://")):
            parsed = urlparse(uri)
            return BlobLocation(parsed.username or parsed.netloc.split("@")[0], parsed.path[1:])
        if uri.startswith(("http://", "https://")):
            parsed = urlparse(uri)
            segments = unquote(parsed.path).lstrip("/").split("/")
            # Path-style (Azurite): /account/container/blob; virtual-host style: /container/blob
            if segments and segments[0] == self.account_name and parsed.port is not None:
                segments = segments[1:]
            if len(segments) < 2:
                raise PipelineError(f"not a blob URL: {uri}")
            return BlobLocation(segments[0], "/".join(segments[1:]))
        raise PipelineError(f"not a blob URI: {uri}")

    def account_of(self, uri: str) -> str | None:
        """The storage account a blob URL names, or None when it names none (``az://``)."""
        if not uri.startswith(("http://", "https://")):
            return None
        parsed = urlparse(uri)
        if parsed.port is not None:  # path-style emulator URL
            return unquote(parsed.path).lstrip("/").split("/")[0]
        return (parsed.hostname or "").split(".")[0]

    def az_uri(self, location: BlobLocation) -> str:
        return f"az://{location.container}/{location.path}"

    # -- reading ----------------------------------------------------------------------
    def info(self, uri: str) -> ObjectInfo:
        """Size and content identity of one file.

        Local files are identified by a SHA-256 of their bytes, blobs by their ETag.
        """
        if not is_remote(uri):
            path = Path(uri)
            with path.open("rb") as fh:
                digest = _file_digest(fh)
            return ObjectInfo(str(path.resolve()), path.stat().st_size, digest)
        loc = self.locate(uri)
        props = _retry(lambda: self.container(loc.container).get_blob_client(loc.path).get_blob_properties())
        return ObjectInfo(self.az_uri(loc), int(props.size), str(props.etag).strip('"'))

    def list(self, uri: str, suffixes: tuple[str, ...] = ()) -> Iterator[ObjectInfo]:
        """Files under a folder or prefix (or the file itself), in name order."""
        if not is_remote(uri):
            root = Path(uri)
            paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for p in paths:
                if not suffixes or p.name.endswith(suffixes):
                    yield self.info(str(p))
            return
        loc = self.locate(uri)
        container = self.container(loc.container)
        prefix = loc.path
        for blob in container.list_blobs(name_starts_with=prefix or None):
            if prefix and not (blob.name == prefix or prefix.endswith("/") or blob.name[len(prefix)] == "/"):
                continue
            if suffixes and not blob.name.endswith(suffixes):
                continue
            yield ObjectInfo(
                self.az_uri(BlobLocation(loc.container, blob.name)),
                int(blob.size),
                str(blob.etag).strip('"'),
            )

    def open(self, uri: str) -> BinaryIO:
        """A buffered, forward-only stream over the file; blobs are downloaded in chunks."""
        if not is_remote(uri):
            return Path(uri).open("rb")
        loc = self.locate(uri)
        blob = self.container(loc.container).get_blob_client(loc.path)
        downloader = _retry(lambda: blob.download_blob(max_concurrency=1))
        return io.BufferedReader(_ChunkStream(downloader.chunks()), buffer_size=4 * 1024 * 1024)

    def read_bytes(self, uri: str) -> bytes:
        with self.open(uri) as fh:
            return fh.read()

    # -- writing ----------------------------------------------------------------------
    def write(self, uri: str, data: bytes) -> None:
        """Create or overwrite one file."""
        if not is_remote(uri):
            path = Path(uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return
        loc = self.locate(uri)
        self.ensure_container(loc.container)
        blob = self.container(loc.container).get_blob_client(loc.path)
        _retry(lambda: blob.upload_blob(data, overwrite=True))

    def write_if_changed(self, uri: str, data: bytes) -> bool:
        """Write unless the file already holds exactly ``data``; returns whether it wrote.

        Rewriting identical bytes would still change a blob's ETag, and with it the batch
        id of the file, so generators and re-runs use this to stay idempotent.
        """
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        if not is_remote(uri):
            path = Path(uri)
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                return False
            self.write(uri, data)
            return True
        loc = self.locate(uri)
        self.ensure_container(loc.container)
        blob = self.container(loc.container).get_blob_client(loc.path)
        try:
            existing = blob.get_blob_properties().content_settings.content_md5
        except ResourceNotFoundError:
            existing = None
        if existing is not None and bytes(existing) == digest:
            return False
        _retry(
            lambda: blob.upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_md5=bytearray(digest))
            )
        )
        return True

    def move(self, uri: str, destination: str) -> None:
        """Move a file, keeping nothing at the source. Idempotent: a moved file stays moved.

        Raises:
            ResourceNotFoundError: neither the source nor the destination exists.
        """
        if not is_remote(uri):
            src, dst = Path(uri), Path(destination)
            if not src.exists() and dst.exists():
                return
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
            return
        src_loc, dst_loc = self.locate(uri), self.locate(destination)
        self.ensure_container(dst_loc.container)
        if not self.is_emulator:
            self._rename_adls(src_loc, dst_loc)
            return
        src_blob = self.container(src_loc.container).get_blob_client(src_loc.path)
        dst_blob = self.container(dst_loc.container).get_blob_client(dst_loc.path)
        try:
            props = src_blob.get_blob_properties()
        except ResourceNotFoundError:
            if dst_blob.exists():
                return
            raise
        # Same-account copy completes synchronously; check before deleting the source.
        _retry(lambda: dst_blob.start_copy_from_url(src_blob.url, requires_sync=True))
        copied = dst_blob.get_blob_properties()
        if copied.size != props.size:
            raise PipelineError(f"copy of {uri} to {destination} is incomplete")
        _retry(lambda: src_blob.delete_blob())

    def _rename_adls(self, src: BlobLocation, dst: BlobLocation) -> None:
        from azure.storage.filedatalake import DataLakeServiceClient

        dfs = DataLakeServiceClient.from_connection_string(self._connection)
        file_client = dfs.get_file_system_client(src.container).get_file_client(src.path)
        try:
            _retry(lambda: file_client.rename_file(f"{dst.container}/{dst.path}"))
        except ResourceNotFoundError:
            target = dfs.get_file_system_client(dst.container).get_file_client(dst.path)
            if not target.exists():
                raise


class _ChunkStream(io.RawIOBase):
    """A raw stream over an iterator of byte chunks (a blob download)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # Readers such as fastavro record block offsets; the stream itself stays forward-only.
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._position += n
        return n


def _file_digest(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(1024 * 1024), b""):
        digest.update(block)
    return f"sha256:{digest.hexdigest()}"


_TRANSIENT = (ServiceRequestError, ServiceResponseError)


def _retry[T](call: Callable[[], T], attempts: int = 5, base_delay: float = 0.2) -> T:
    """Retry a storage call on connection-level failures, with exponential backoff.

    The SDK already retries throttling and 5xx responses; this covers a dropped
    connection (an emulator restarting, a socket reset) that surfaces as an exception.
    """
    for attempt in range(attempts):
        try:
            return call()
        except _TRANSIENT:
            if attempt == attempts - 1:
                raise
            time.sleep(base_delay * 2**attempt)
    raise AssertionError("unreachable")


__all__ = ["AzureError", "BlobLocation", "ObjectInfo", "Storage", "is_remote", "join"]
