"""The file operations the WAL and snapshots use, behind a small interface so faults can be injected.

`RealDisk` is plain os.* with real fsync/fdatasync. A WAL segment is preallocated when it is opened
(`posix_fallocate`, as etcd's WAL does): appends inside it then change no file size, so their
fdatasync writes no file size (three processes each appending 400 bytes and syncing, at once, on
this project's 2-core test machine: p50 0.31 -> 0.24 ms per fdatasync). `FaultyDisk` is the same
files, but holds every appended byte in memory until `sync()` (so a SIGKILL of the process, or
`crash()`, loses unsynced writes the way a power cut would) and can make syncs fail (EIO) — for
tests and the jepsen harness.
Neither class decides anything about records, ordering or recovery: that is the WAL's job. They
must never silently drop an error: every OSError propagates to the caller, but a preallocation the
file system refuses (no support, or no room: it costs only speed, and the appends report a full disk).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

SECTOR_BYTES = 512  # what a disk writes whole or not at all (the smallest sector in use)
# A new file (a snapshot's state: up to hundreds of MB) is written and synced this much at a
# time. Written whole and synced once, its pages wait in the page cache and then reach the disk
# in one burst, and every WAL sync on that disk (this node's, its peers') waits behind the burst:
# three WAL writers (400 bytes and an fdatasync, in a loop) beside three writers of 100 MiB files
# on this project's 2-core test machine: p99 9.7 ms, worst 101 ms per fdatasync with files
# written whole; 1.4-1.7 ms, worst 33 ms with 256 KiB chunks (a 100 MiB file alone: 0.13 s
# written whole, 0.16 s in chunks).
WRITE_SYNC_CHUNK = 256 * 1024
# A large file is removed this much at a time, this long apart (remove_large).
REMOVE_STEP = 8 * 1024 * 1024
REMOVE_PAUSE_S = 0.05


class RealDisk:
    """Files on the local file system, with real fsync."""

    def listdir(self, directory: Path) -> list[str]:
        return sorted(os.listdir(directory))

    def makedirs(self, directory: Path) -> None:
        os.makedirs(directory, exist_ok=True)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def read_head(self, path: Path, n: int) -> bytes:
        """The file's first n bytes (all of it if shorter)."""
        with open(path, "rb") as f:
            return f.read(n)

    def size(self, path: Path) -> int:
        return os.stat(path).st_size

    def open_segment(self, path: Path, offset: int, preallocate: int) -> int:
        """Open (or create) a WAL segment for appends at `offset`, its file at least `preallocate`
        bytes long (the bytes past what was written are zeros). A file system that cannot
        preallocate gets none: appends then grow the file, as without it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if preallocate > os.fstat(fd).st_size:
                try:
                    os.posix_fallocate(fd, 0, preallocate)
                except OSError as err:
                    if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSPC):
                        raise  # a full disk or no support: the appends will say if it matters
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def append(self, fd: int, data: bytes) -> None:
        """Write at the segment's current offset (after what was appended before)."""
        _write_all(fd, data)

    def trim(self, fd: int, size_bytes: int) -> None:
        """Cut a segment's preallocated rest, durably: a closed segment ends at its last record."""
        os.ftruncate(fd, size_bytes)
        os.fsync(fd)

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

    def write_new(self, path: Path, parts: Iterable[bytes], head_size: int = 0,
                  head: Callable[[], bytes] | None = None) -> None:
        """Create (or replace) path with the parts' bytes, in order, and fsync it (not its
        directory). They reach the disk WRITE_SYNC_CHUNK bytes at a time, as they come: a file of
        hundreds of MB never needs a buffer of its size. With `head`, the file starts with
        `head_size` bytes that `head()` gives once the last part is written (what it says may
        depend on the parts: their length, their checksum)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            buf = bytearray(head_size)  # what is not written yet: less than WRITE_SYNC_CHUNK bytes
            for part in parts:
                view = memoryview(part)
                while view:
                    take = min(len(view), WRITE_SYNC_CHUNK - len(buf))
                    buf += view[:take]
                    view = view[take:]
                    if len(buf) == WRITE_SYNC_CHUNK:
                        # (not self.append: a subclass may hold appends back)
                        _write_all(fd, buf)
                        os.fdatasync(fd)
                        # and out of the page cache: nothing reads it soon, and a file of
                        # hundreds of MB would fill the cache with pages that are slow to get
                        # on this project's VMs (three nodes' writers of a burst's log, after a burst
                        # of 16 KiB puts: 5.5-6.1 s with the pages kept, 3.2-3.8 s without, and
                        # one client's puts meanwhile 4,500-5,300 ops in 8 s, 5,700-6,400 without)
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        buf.clear()
            _write_all(fd, buf)
            if head is not None:
                data = head()
                if len(data) != head_size:
                    raise ValueError(f"a head of {len(data)} bytes for {head_size} bytes kept for it")
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, head_size - len(view)):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def append_file(self, path: Path, data: bytes) -> None:
        """Append data to an existing file and fsync it (not its directory)."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def remove(self, path: Path) -> None:
        os.remove(path)

    def remove_large(self, path: Path) -> None:
        """Remove a file that may be large (a WAL segment, an old snapshot), freeing its blocks
        REMOVE_STEP bytes at a time, a moment apart (it takes a while: call it off the loop).
        Freed at once, hundreds of MB of blocks make the file system's next commit slow, and every
        log sync on the disk waits for it: removing ten 64 MiB segments at once, the slowest of
        a beside writer's syncs took 22-24 ms here; truncated 8 MiB at a time, 1.9-2.6 ms.
        On a file system mounted with `discard`, each step is also a discard the disk carries
        out beside the log's writes: after a burst of 16 KiB puts, the three nodes freed 875 MB
        within a second 5 ms apart, and one client's puts in the next two seconds were 693 and
        549 a second; 50 ms apart, it took 2.5 s and they were 848 and 819 (one run each)."""
        fd = os.open(path, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            while size > REMOVE_STEP:
                size -= REMOVE_STEP
                os.ftruncate(fd, size)
                time.sleep(REMOVE_PAUSE_S)
        finally:
            os.close(fd)
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

    def open_segment(self, path: Path, offset: int, preallocate: int) -> int:
        fd = super().open_segment(path, offset, preallocate)
        self._pending[fd] = bytearray()
        return fd

    def trim(self, fd: int, size_bytes: int) -> None:
        if self._pending.get(fd):
            raise RuntimeError("trim of a segment with unsynced appends")
        self._check("fsync")
        super().trim(fd, size_bytes)

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

    def write_new(self, path: Path, parts: Iterable[bytes], head_size: int = 0,
                  head: Callable[[], bytes] | None = None) -> None:
        self._check("fsync")
        super().write_new(path, parts, head_size, head)

    def append_file(self, path: Path, data: bytes) -> None:
        self._check("fsync")
        super().append_file(path, data)

    def sync_dir(self, directory: Path) -> None:
        self._check("fsync of a directory")
        super().sync_dir(directory)

    def crash(self, keep_unsynced_bytes: int = 0) -> None:
        """Lose what was not synced, but for what reached the file before the crash: the whole
        sectors within its first keep_unsynced_bytes, or all of it when that is as long (a torn
        write: a disk writes a sector whole or not at all)."""
        for fd, buf in list(self._pending.items()):
            if keep_unsynced_bytes and buf:
                if keep_unsynced_bytes >= len(buf):
                    super().append(fd, bytes(buf))
                else:
                    offset = os.lseek(fd, 0, os.SEEK_CUR)
                    upto = (offset + keep_unsynced_bytes) // SECTOR_BYTES * SECTOR_BYTES - offset
                    if upto > 0:
                        super().append(fd, bytes(buf[:upto]))
            buf.clear()
            super().close(fd)
        self._pending.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
