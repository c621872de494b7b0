"""Blob containers on the lake account, through azure-storage-blob (and the DFS API for renames).

Connection-level failures (a reset socket, a refused connection, an emulator
restarting) surface as exceptions the SDK's retry policy does not absorb; ``outlast``
retries them with exponential backoff for the retry budget, then raises
``StoreUnavailable`` naming the store. A store that refuses the credential (or a
credential that cannot get a token) raises ``StoreAccessDenied`` at once.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from shared.adapters.clients import Identity, access_denied, blob_service, datalake_service, managed_identity
from shared.errors import SourceGone, StoreUnavailable, TransientError
from shared.settings import StorageAccount

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

    from shared.adapters.storage import BlobLocation

T = TypeVar("T")
#: What a dropped connection or an unreachable endpoint raises through the SDK.
CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)
# What object_store's errors say when the store did not answer (delta-rs raises them as
# OSError or DeltaError, with the cause chain in the text).
_UNREACHABLE = re.compile(
    r"error sending request|connection refused|tcp connect error|connection reset|timed out"
    r"|broken pipe|dns error|error trying to connect|connection closed",
    re.IGNORECASE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def outlast[T](where: str, call: Callable[[], T], budget: float) -> T:
    """``call()``, retried on connection errors with backoff for ``budget`` seconds.

    Raises:
        StoreUnavailable: the store still failed when the budget ran out.
        StoreAccessDenied: the store refused the credential, or it could not get a token.
    """
    retrying = Retrying(
        retry=retry_if_exception_type(CONNECTION_ERRORS),
        wait=wait_exponential_jitter(initial=0.2, max=10.0),
        stop=stop_after_delay(budget),
        reraise=True,
    )
    try:
        return retrying(call)
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(where, exc) from exc
    except ClientAuthenticationError as exc:
        raise access_denied(where, exc) from exc


def unreachable(exc: BaseException) -> bool:
    """Whether a delta-rs error says the store did not answer (after object_store's retries)."""
    return bool(_UNREACHABLE.search(str(exc)))


def store_error(uri: str, exc: BaseException, doing: str) -> TransientError:
    """The error to raise for a delta-rs failure at ``uri``: ``StoreUnavailable`` when the store
    did not answer within the retry budget, a plain ``TransientError`` otherwise."""
    text = " ".join(_ANSI.sub("", str(exc)).replace("↳", " ").split())
    if unreachable(exc):
        return StoreUnavailable(uri, OSError(f"{doing}: {text}"))
    return TransientError(f"{uri}: {doing}: {text}")


class Blobs:
    """Containers and blobs of one account."""

    def __init__(
        self, account: StorageAccount, *, retry_seconds: float, identity: Identity = managed_identity
    ) -> None:
        self.account = account
        self.retry_seconds = retry_seconds
        self.identity = identity

    @cached_property
    def service(self) -> BlobServiceClient:
        return blob_service(self.account, self.identity)

    def _blob(self, container: str, path: str) -> BlobClient:
        return self.service.get_blob_client(container, path)

    def _container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def _outlast(self, container: str, path: str, call: Callable[[], T]) -> T:
        return outlast(f"{self.account.blob_uri}/{container}/{path}", call, self.retry_seconds)

    def ensure_container(self, name: str) -> None:
        try:
            self._outlast(name, "", lambda: self._container(name).create_container())
        except ResourceExistsError:
            pass

    def properties(self, container: str, path: str) -> tuple[int, str, str]:
        """(size, ETag without quotes, last modified as ISO-8601 UTC).

        Raises:
            SourceGone: no such blob.
        """
        try:
            props = self._outlast(container, path, lambda: self._blob(container, path).get_blob_properties())
        except ResourceNotFoundError:
            raise SourceGone(f"az://{container}/{path}") from None
        return int(props.size), str(props.etag).strip('"'), _iso(props.last_modified)

    def exists(self, container: str, path: str) -> bool:
        return bool(self._outlast(container, path, lambda: self._blob(container, path).exists()))

    def list(self, container: str, prefix: str) -> Iterator[tuple[str, int, str, str]]:
        """(name, size, ETag, last modified) of the blobs at ``prefix`` or under it as a folder,
        in name order."""
        blobs = self._outlast(
            container,
            prefix,
            lambda: list(self._container(container).list_blobs(name_starts_with=prefix or None)),
        )
        for blob in blobs:
            name = blob.name
            if prefix and not (name == prefix or prefix.endswith("/") or name[len(prefix)] == "/"):
                continue
            yield name, int(blob.size), str(blob.etag).strip('"'), _iso(blob.last_modified)

    def open(self, container: str, path: str) -> BinaryIO:
        """A buffered forward-only stream over the blob, downloaded in chunks."""
        blob = self._blob(container, path)
        try:
            downloader = self._outlast(container, path, lambda: blob.download_blob(max_concurrency=1))
        except ResourceNotFoundError:
            raise SourceGone(f"az://{container}/{path}") from None
        return io.BufferedReader(_ChunkStream(downloader.chunks()), buffer_size=4 * 1024 * 1024)

    def upload(self, container: str, path: str, data: bytes) -> None:
        self.ensure_container(container)
        blob = self._blob(container, path)
        self._outlast(container, path, lambda: blob.upload_blob(data, overwrite=True))

    def upload_if_changed(self, container: str, path: str, data: bytes) -> bool:
        """Upload unless the blob's stored MD5 says it already holds ``data``."""
        from azure.storage.blob import ContentSettings

        digest = hashlib.md5(data, usedforsecurity=False).digest()
        self.ensure_container(container)
        blob = self._blob(container, path)
        try:
            existing = self._outlast(
                container, path, lambda: blob.get_blob_properties().content_settings.content_md5
            )
        except ResourceNotFoundError:
            existing = None
        if existing is not None and bytes(existing) == digest:
            return False
        settings = ContentSettings(content_md5=bytearray(digest))
        self._outlast(
            container, path, lambda: blob.upload_blob(data, overwrite=True, content_settings=settings)
        )
        return True

    def delete(self, container: str, path: str) -> None:
        try:
            self._outlast(container, path, lambda: self._blob(container, path).delete_blob())
        except ResourceNotFoundError:
            pass

    @contextmanager
    def lease(self, container: str, path: str, seconds: int = 60) -> Iterator[bool]:
        """Hold a lease on a (created empty) blob while the block runs; yields False when another
        holder has it. The lease is renewed every third of ``seconds``; a holder that dies lets
        it expire."""
        blob = self._blob(container, path)
        try:
            self._outlast(container, path, lambda: blob.upload_blob(b"", overwrite=False))
        except (ResourceExistsError, HttpResponseError):
            pass  # there already (perhaps leased)
        try:
            held = self._outlast(container, path, lambda: blob.acquire_lease(lease_duration=seconds))
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                yield False
                return
            raise
        done = threading.Event()

        def renew() -> None:
            while not done.wait(seconds / 3):
                try:
                    held.renew()
                except Exception:  # it expires by itself; the holder's work is not stopped
                    return

        renewer = threading.Thread(target=renew, name=f"lease {path}", daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            done.set()
            try:
                held.release()
            except Exception:  # it expires by itself
                pass

    def move(self, src: BlobLocation, dst: BlobLocation) -> None:
        """Rename on ADLS Gen2; a checked server-side copy then a delete on Azurite."""
        self.ensure_container(dst.container)
        if not self.account.emulator:
            self._rename(src, dst)
            return
        source, target = self._blob(src.container, src.path), self._blob(dst.container, dst.path)
        try:
            size, _, _ = self.properties(src.container, src.path)
        except SourceGone:
            if self.exists(dst.container, dst.path):
                return
            raise
        # A same-account copy completes synchronously; check it before deleting the source.
        self._outlast(
            dst.container, dst.path, lambda: target.start_copy_from_url(source.url, requires_sync=True)
        )
        copied, _, _ = self.properties(dst.container, dst.path)
        if copied != size:
            raise TransientError(f"copy of {src.uri} to {dst.uri} is incomplete; not deleted")
        self.delete(src.container, src.path)

    def _rename(self, src: BlobLocation, dst: BlobLocation) -> None:
        dfs = datalake_service(self.account, self.identity)
        file_client = dfs.get_file_system_client(src.container).get_file_client(src.path)
        try:
            self._outlast(
                src.container, src.path, lambda: file_client.rename_file(f"{dst.container}/{dst.path}")
            )
        except ResourceNotFoundError:
            if not self.exists(dst.container, dst.path):
                raise SourceGone(src.uri) from None


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    def readinto(self, buffer: Any) -> int:
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
