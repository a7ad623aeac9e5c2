"""A size-bounded on-disk cache of recording files.

Mango's download link works once, so a file is fetched once and kept here; a player's seek then reads
the cached copy. Files are named by a hash of the recording id, written to a temporary name and renamed
into place, and guarded by a per-recording `flock` so concurrent requests (threads or worker processes)
fetch a recording only once. Beyond `max_bytes` the least recently used files are removed. The cache
holds audio only: who may hear a recording is decided per request by the caller.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

SUFFIX = ".audio"
STALE_PART_SECONDS = 3600  # a half-written file this old was left by a process that died mid-fetch


class Sink(Protocol):
    """Where a fetch writes the recording's bytes."""

    def write(self, data: bytes, /) -> int: ...


class CacheLimitExceeded(Exception):
    """A file larger than the whole cache; the message says so in plain words."""


@dataclass(frozen=True)
class CachedFile:
    """A recording on disk: where it is, how big, and a validator for `If-Range`."""

    path: Path
    size: int
    etag: str


class RecordingCache:
    """`get_or_fetch(recording_id, fetch)`: the cached file, fetching it with `fetch(out)` when absent."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("the recordings cache needs a positive size")
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"RecordingCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    def _key(self, recording_id: str) -> str:
        return hashlib.sha256(recording_id.encode("utf-8")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.directory / (key + SUFFIX)

    def get(self, recording_id: str) -> CachedFile | None:
        """The cached file, marked as just used; None when it is not cached."""
        key = self._key(recording_id)
        path = self._file(key)
        try:
            os.utime(path)  # the eviction order is last use
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return CachedFile(path, size, f'"{key[:20]}-{size}"')

    def get_or_fetch(self, recording_id: str, fetch: Callable[[Sink], None]) -> CachedFile:
        """The cached file; on a miss `fetch` writes the recording into the open file it is given."""
        found = self.get(recording_id)
        if found is not None:
            return found
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self._key(recording_id)
        with self._locked(key):
            found = self.get(recording_id)  # another thread or process may have fetched it meanwhile
            if found is not None:
                return found
            self._store(key, fetch)
        self.evict(keep=self._file(key))
        found = self.get(recording_id)
        if found is None:  # removed between the rename and now: only a cache far too small does that
            raise CacheLimitExceeded("the recordings cache is too small to keep this recording")
        return found

    def _store(self, key: str, fetch: Callable[[Sink], None]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key[:16]}-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                fetch(_Bounded(out, self.max_bytes))
            os.replace(tmp, self._file(key))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """An exclusive `flock` for one recording. The lock file is removed before it is released: a
        waiter still holding it re-checks the cache, and a newcomer finds the file already cached."""
        lock_path = self.directory / f".{key}.lock"
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                lock_path.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def evict(self, keep: Path | None = None) -> int:
        """Remove the least recently used files until the cache fits; returns how many were removed.

        Half-written files left by a process that died mid-fetch are removed too.
        """
        for part in self.directory.glob(".*.part"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - part.stat().st_mtime > STALE_PART_SECONDS:
                    part.unlink()
        entries: list[tuple[float, int, Path]] = []
        for path in self.directory.glob("*" + SUFFIX):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
            total -= size
        return removed


class _Bounded:
    """A write-only file that refuses to grow beyond the cache's size."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self._out = out
        self._limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._limit:
            raise CacheLimitExceeded(
                f"the recording is larger than the recordings cache ({self._limit // (1024 * 1024)} MB); "
                "raise recordings.cache_max_mb"
            )
        return self._out.write(data)
