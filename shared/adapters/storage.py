"""Landing and quarantine files: one interface over blob containers and local folders.

Locations are URIs (``shared.uris``): ``az://container/path`` on the lake account, blob
URLs as Event Grid sends them, or local paths.

Every call to the blob service rides out a connection-level outage with backoff for
STORAGE_RETRY_SECONDS and then fails with ``StoreUnavailable`` naming the store; the
SDK's own policy already retries throttling and 5xx answers.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from shared.adapters.blobs import Blobs
from shared.adapters.clients import Identity, managed_identity
from shared.errors import SourceGone, TransientError
from shared.settings import StorageAccount
from shared.uris import BlobLocation, is_remote, join, locate


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A landed file: where it is, how big, and its content identity (ETag or digest)."""

    uri: str
    size: int
    etag: str
    modified: str = ""
    """When the file last changed (ISO-8601 UTC): what ``_batch_time`` records."""


class Storage:
    """Read, list, write and move files wherever they live: blobs or local folders."""

    def __init__(
        self, account: StorageAccount, *, retry_seconds: float = 60.0, identity: Identity = managed_identity
    ) -> None:
        self.account = account
        self.blobs = Blobs(account, retry_seconds=retry_seconds, identity=identity)

    def locate(self, uri: str) -> BlobLocation:
        """Split a remote URI into container and blob path (no I/O); see ``shared.uris``."""
        return locate(uri, self.account.name)

    # -- reading ----------------------------------------------------------------------
    def info(self, uri: str) -> ObjectInfo:
        """Size and content identity of one file: a blob's ETag, a local file's SHA-256.

        Raises:
            SourceGone: the file does not exist.
        """
        if not is_remote(uri):
            path = Path(uri)
            try:
                with path.open("rb") as fh:
                    digest = _file_digest(fh)
            except FileNotFoundError:
                raise SourceGone(uri) from None
            stat = path.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="milliseconds")
            return ObjectInfo(str(path.resolve()), stat.st_size, digest, modified.replace("+00:00", "Z"))
        loc = self.locate(uri)
        size, etag, modified = self.blobs.properties(loc.container, loc.path)
        return ObjectInfo(loc.uri, size, etag, modified)

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
        for name, size, etag, modified in self.blobs.list(loc.container, loc.path):
            if not suffixes or name.endswith(suffixes):
                yield ObjectInfo(BlobLocation(loc.container, name).uri, size, etag, modified)

    def open(self, uri: str) -> BinaryIO:
        """A buffered, forward-only stream over the file; blobs are downloaded in chunks.

        Raises:
            SourceGone: the file does not exist.
        """
        if not is_remote(uri):
            try:
                return Path(uri).open("rb")
            except FileNotFoundError:
                raise SourceGone(uri) from None
        loc = self.locate(uri)
        return self.blobs.open(loc.container, loc.path)

    def read_bytes(self, uri: str) -> bytes:
        with self.open(uri) as fh:
            return fh.read()

    def exists(self, uri: str) -> bool:
        if not is_remote(uri):
            return Path(uri).is_file()
        loc = self.locate(uri)
        return self.blobs.exists(loc.container, loc.path)

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
        self.blobs.upload(loc.container, loc.path, data)

    def write_if_changed(self, uri: str, data: bytes) -> bool:
        """Write unless the file already holds exactly ``data``; returns whether it wrote.

        Rewriting identical bytes would still change a blob's ETag, and with it the batch
        id of the file, so generators and re-runs use this to stay idempotent.
        """
        if not is_remote(uri):
            path = Path(uri)
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                return False
            self.write(uri, data)
            return True
        loc = self.locate(uri)
        return self.blobs.upload_if_changed(loc.container, loc.path, data)

    def ensure_container(self, name: str) -> None:
        self.blobs.ensure_container(name)

    def delete(self, uri: str) -> None:
        if not is_remote(uri):
            Path(uri).unlink(missing_ok=True)
            return
        loc = self.locate(uri)
        self.blobs.delete(loc.container, loc.path)

    @contextmanager
    def lock(self, uri: str) -> Iterator[bool]:
        """Hold an exclusive lock named by ``uri`` while the block runs; yields False when
        another process (or thread) holds it. A blob lease, or ``flock`` on a local file."""
        if is_remote(uri):
            loc = self.locate(uri)
            with self.blobs.lease(loc.container, loc.path) as held:
                yield held
            return
        with local_lock(uri) as held:
            yield held

    def move(self, uri: str, destination: str) -> None:
        """Move a file, keeping nothing at the source. Idempotent: a moved file stays moved.

        Within one store this is a rename (local folders, ADLS Gen2) or a server-side copy
        then a delete (Azurite, which has no DFS endpoint). Across stores (a local file to
        a container, say) it is a copy, a check that the copy is whole, then the delete.

        Raises:
            SourceGone: neither the source nor the destination exists.
        """
        if is_remote(uri) != is_remote(destination):
            self._move_across(uri, destination)
        elif not is_remote(uri):
            src, dst = Path(uri), Path(destination)
            if not src.exists():
                if dst.exists():
                    return
                raise SourceGone(uri)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
        else:
            self.blobs.move(self.locate(uri), self.locate(destination))

    def _move_across(self, uri: str, destination: str) -> None:
        if not self.exists(uri):
            if self.exists(destination):
                return
            raise SourceGone(uri)
        data = self.read_bytes(uri)
        self.write(destination, data)
        if self.read_bytes(destination) != data:
            raise TransientError(f"copy of {uri} to {destination} does not match its source; not deleted")
        self.delete(uri)


@contextmanager
def local_lock(path: str) -> Iterator[bool]:
    """``flock`` on a local file (created if absent): False when another holder has it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _file_digest(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(1024 * 1024), b""):
        digest.update(block)
    return f"sha256:{digest.hexdigest()}"


__all__ = ["BlobLocation", "ObjectInfo", "Storage", "is_remote", "join", "local_lock"]
