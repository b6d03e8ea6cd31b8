"""The file operations the WAL and snapshots use, behind a small interface so faults can be injected.

`RealDisk` is plain os.* with real fsync/fdatasync. `FaultyDisk` is the same files, but holds every
appended byte in memory until `sync()` (so a SIGKILL of the process, or `crash()`, loses unsynced
writes the way a power cut would) and can make syncs fail (EIO) — for tests and the jepsen harness.
Neither class decides anything about records, ordering or recovery: that is the WAL's job. They
must never silently drop an error: every OSError propagates to the caller.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class RealDisk:
    """Files on the local file system, with real fsync."""

    def listdir(self, directory: Path) -> list[str]:
        return sorted(os.listdir(directory))

    def makedirs(self, directory: Path) -> None:
        os.makedirs(directory, exist_ok=True)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def size(self, path: Path) -> int:
        return os.stat(path).st_size

    def open_append(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, fd: int, data: bytes) -> None:
        _write_all(fd, data)

    def sync(self, fd: int) -> None:
        os.fdatasync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def truncate(self, path: Path, size_bytes: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_new(self, path: Path, data: bytes) -> None:
        """Create (or replace) path with data and fsync it (not its directory)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)  # not self.append: a subclass may hold appends back
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def remove(self, path: Path) -> None:
        os.remove(path)

    def sync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FaultyDisk(RealDisk):
    """RealDisk that loses unsynced appends on crash and can fail syncs.

    fail_syncs: every sync/write_new/sync_dir raises EIO while True. trigger_dir: if given, a file
    named `fail-fsync` in it has the same effect (so an outside harness can flip it).
    """

    def __init__(self, trigger_dir: Path | None = None):
        self.fail_syncs = False
        self.trigger_dir = Path(trigger_dir) if trigger_dir else None
        self._pending: dict[int, bytearray] = {}

    def _check(self, what: str) -> None:
        if self.fail_syncs or (self.trigger_dir and (self.trigger_dir / "fail-fsync").exists()):
            raise OSError(errno.EIO, f"injected fault: {what} failed")

    def open_append(self, path: Path) -> int:
        fd = super().open_append(path)
        self._pending[fd] = bytearray()
        return fd

    def append(self, fd: int, data: bytes) -> None:
        self._pending[fd] += data

    def sync(self, fd: int) -> None:
        self._check("fdatasync")
        buf = self._pending[fd]
        if buf:
            super().append(fd, bytes(buf))
            buf.clear()
        super().sync(fd)

    def close(self, fd: int) -> None:
        self._pending.pop(fd, None)  # unsynced bytes are lost, as in a crash
        super().close(fd)

    def write_new(self, path: Path, data: bytes) -> None:
        self._check("fsync")
        super().write_new(path, data)

    def sync_dir(self, directory: Path) -> None:
        self._check("fsync of a directory")
        super().sync_dir(directory)

    def crash(self, keep_unsynced_bytes: int = 0) -> None:
        """Lose what was not synced; keep_unsynced_bytes of it reach the file (a torn write)."""
        for fd, buf in list(self._pending.items()):
            if keep_unsynced_bytes and buf:
                super().append(fd, bytes(buf[:keep_unsynced_bytes]))
            buf.clear()
            super().close(fd)
        self._pending.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
