"""The write-ahead log of the core's durable records, and the snapshots that let it be cut short.

Layout of a data directory's `wal/`: segment files `NNNNNNNNNNNNNNNN.wal` (hex sequence number)
holding records `[u32 body length][u32 CRC32 of type+body][u8 type][body]`, and snapshot files
`snap-NNNNNNNNNNNNNNNN.snap` (atomic: temp file, fsync, rename, fsync directory).

Rules this module must never break:
- `append_many` returns only after the records are on disk (one fdatasync per group: every append
  waiting at that moment shares it). A record that was acknowledged is never lost or cut.
- A failed write or sync is fatal (`WalFatalError`, and the WAL refuses every later call): after
  a failed fsync the kernel may have dropped the dirty pages, so retrying could lie.
- Recovery only ever cuts a torn tail: a partial last record of the last segment (or zero fill).
  A bad CRC anywhere, or a damaged record before the tail, refuses to start (`WalCorruptError`
  names the file and the byte offset): the node must not run with a log it cannot trust.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from verikv.shim.io.disk import RealDisk

RECORD_HEAD = struct.Struct("<IIB")  # body length, crc32(type + body), type
MAX_RECORD_BYTES = 64 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
SYNC_BUCKETS_S = tuple(0.001 * 2 ** i for i in range(14))  # etcd's wal_fsync_duration_seconds buckets
TYPE_CORE = 1  # a record from the core's Ready (opaque to the shim)
SEGMENT_SUFFIX = ".wal"
SNAP_PREFIX, SNAP_SUFFIX = "snap-", ".snap"
_SNAP_HEAD = struct.Struct("<4sIQQQI")  # magic, crc32 of the rest, slot, first segment, kv length, record count
_SNAP_MAGIC = b"VKP1"


class WalCorruptError(Exception):
    """The log on disk is damaged somewhere other than a torn tail; the node must not start."""


class WalFatalError(Exception):
    """A write or sync failed: the node must stop now (fail-stop), without sending anything more."""


def encode_record(body: bytes, rtype: int = TYPE_CORE) -> bytes:
    crc = zlib.crc32(bytes([rtype]) + body)
    return RECORD_HEAD.pack(len(body), crc, rtype) + body


def _segment_name(seq: int) -> str:
    return f"{seq:016x}{SEGMENT_SUFFIX}"


def _parse_segment(path: Path, data: bytes, is_last: bool) -> tuple[list[bytes], int]:
    """Records of one segment and the length of its valid prefix (shorter only for a torn tail)."""
    records = []
    pos = 0
    while pos < len(data):
        rest = len(data) - pos
        if rest < RECORD_HEAD.size:
            if is_last:
                return records, pos  # torn tail: a header that never finished reaching the disk
            raise WalCorruptError(f"{path}: record at byte offset {pos} is cut short "
                                  f"({rest} bytes left) in a segment that is not the last")
        length, crc, rtype = RECORD_HEAD.unpack_from(data, pos)
        if length == 0 and crc == 0 and rtype == 0 and is_last and not any(data[pos:]):
            return records, pos  # zero fill after the last record: a torn tail too
        if length > MAX_RECORD_BYTES:
            raise WalCorruptError(f"{path}: record at byte offset {pos} has a bad length {length} "
                                  f"(max {MAX_RECORD_BYTES})")
        if pos + RECORD_HEAD.size + length > len(data):
            if is_last:
                return records, pos  # torn tail: a body that never finished reaching the disk
            raise WalCorruptError(f"{path}: record at byte offset {pos} claims {length} bytes, "
                                  f"only {rest - RECORD_HEAD.size} follow, in a segment that is not the last")
        body = data[pos + RECORD_HEAD.size:pos + RECORD_HEAD.size + length]
        if zlib.crc32(bytes([rtype]) + body) != crc:
            raise WalCorruptError(f"{path}: record at byte offset {pos} has a bad CRC "
                                  f"(length {length}, type {rtype})")
        if rtype != TYPE_CORE:
            raise WalCorruptError(f"{path}: record at byte offset {pos} has an unknown type {rtype}")
        records.append(body)
        pos += RECORD_HEAD.size + length
    return records, pos


@dataclass
class Snapshot:
    slot: int  # every slot below this one is applied in kv_state
    first_segment: int  # WAL segments from this one on hold what happened after the snapshot
    kv_state: bytes
    core_records: list[bytes]  # core.checkpoint_records() at the snapshot


def _encode_snapshot(s: Snapshot) -> bytes:
    body = [struct.pack("<I", len(r)) + r for r in s.core_records]
    rest = s.kv_state + b"".join(body)
    head_rest = struct.pack("<QQQI", s.slot, s.first_segment, len(s.kv_state), len(s.core_records))
    crc = zlib.crc32(head_rest + rest)
    return _SNAP_MAGIC + struct.pack("<I", crc) + head_rest + rest


def _decode_snapshot(path: Path, data: bytes) -> Snapshot:
    if len(data) < _SNAP_HEAD.size:
        raise WalCorruptError(f"{path}: snapshot is {len(data)} bytes, shorter than its header")
    magic, crc, slot, first_segment, kv_len, nrec = _SNAP_HEAD.unpack_from(data)
    if magic != _SNAP_MAGIC or zlib.crc32(data[8:]) != crc:
        raise WalCorruptError(f"{path}: snapshot has a bad magic or CRC")
    pos = _SNAP_HEAD.size
    kv_state = data[pos:pos + kv_len]
    pos += kv_len
    records = []
    for _ in range(nrec):
        (n,) = struct.unpack_from("<I", data, pos)
        records.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return Snapshot(slot, first_segment, kv_state, records)


@dataclass
class Recovered:
    snapshot: Snapshot | None
    records: list[bytes]  # the core's records after the snapshot, in the order they were persisted
    cut_tail: str | None  # "FILE: cut N bytes at offset M" if a torn tail was removed


class Wal:
    """An open WAL. Create with `Wal.open(directory)`, which recovers first."""

    SYNC_BUCKETS_S = SYNC_BUCKETS_S  # the upper bounds of sync_counts' buckets

    def __init__(self, directory: Path, disk, segment_bytes: int, seq: int, size_bytes: int):
        self.directory = directory
        self.disk = disk
        self.segment_bytes = segment_bytes
        self.seq = seq
        self.size_bytes = size_bytes
        self._fd = disk.open_append(directory / _segment_name(seq))
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future] = []
        self._flush_scheduled = False
        self._unsynced = 0  # records written by append_lazy, not yet synced
        self._failed: BaseException | None = None
        self.syncs = 0  # fdatasync calls made (for tests and metrics)
        self.sync_counts = [0] * (len(SYNC_BUCKETS_S) + 1)  # syncs by duration: each bucket, then slower
        self.sync_seconds = 0.0  # their total duration
        self.synced_records = 0  # records durable (synced) since open
        self.written_records = 0  # records handed to append_many/append_lazy since open

    @classmethod
    def open(cls, directory: Path, disk=None, segment_bytes: int = DEFAULT_SEGMENT_BYTES
             ) -> tuple["Wal", Recovered]:
        disk = disk or RealDisk()
        directory = Path(directory)
        disk.makedirs(directory)
        names = disk.listdir(directory)
        for name in names:  # leftovers of a snapshot that never got renamed
            if name.endswith(".tmp"):
                disk.remove(directory / name)
        snapshot = None
        snaps = sorted(n for n in names if n.startswith(SNAP_PREFIX) and n.endswith(SNAP_SUFFIX))
        if snaps:
            snapshot = _decode_snapshot(directory / snaps[-1], disk.read(directory / snaps[-1]))
        segs = sorted(int(n[:-len(SEGMENT_SUFFIX)], 16) for n in names if n.endswith(SEGMENT_SUFFIX))
        first = snapshot.first_segment if snapshot else 0
        segs = [s for s in segs if s >= first]
        records: list[bytes] = []
        cut = None
        for i, seq in enumerate(segs):
            path = directory / _segment_name(seq)
            data = disk.read(path)
            recs, valid = _parse_segment(path, data, is_last=i == len(segs) - 1)
            records += recs
            if valid < len(data):
                cut = f"{path}: cut a torn tail of {len(data) - valid} bytes at byte offset {valid}"
                disk.truncate(path, valid)
        if segs:
            seq, size = segs[-1], disk.size(directory / _segment_name(segs[-1]))
        else:
            seq, size = first, 0
        wal = cls(directory, disk, segment_bytes, seq, size)
        if not segs:
            disk.sync_dir(directory)
        return wal, Recovered(snapshot, records, cut)

    # ---- appending ----

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise WalFatalError(f"the WAL failed earlier: {self._failed}") from self._failed

    async def append_many(self, records: list[bytes]) -> None:
        """Append records and return once they are durable. Appends made in the same loop
        iteration share one fdatasync (group commit)."""
        self._check_usable()
        if not records:
            return
        fut = asyncio.get_running_loop().create_future()
        self._pending.extend(encode_record(r) for r in records)
        self.written_records += len(records)
        self._waiters.append(fut)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # One loop iteration later: the sync blocks the loop's thread, and uvloop writes
            # to sockets only between iterations, so the packets a turn handed to the transport
            # before asking for this sync (its early packets) leave before the sync starts.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._flush)
        await fut

    def append_lazy(self, records: list[bytes]) -> None:
        """Append records that may become durable later: they are written at once and made
        durable by the next sync (in order with everything appended before and after)."""
        self._check_usable()
        if not records:
            return
        self.written_records += len(records)
        if self._pending:  # behind a durable append not yet written: keep the order
            self._pending.extend(encode_record(r) for r in records)
            return
        data = b"".join(encode_record(r) for r in records)
        try:
            self.disk.append(self._fd, data)
        except BaseException as err:  # noqa: BLE001 - every failure is fatal and reported
            self._fail(err, [])
            raise self._fatal(err) from err
        self.size_bytes += len(data)
        self._unsynced += len(records)

    def _flush(self) -> None:
        """Write what is pending and fdatasync, on the loop's thread: a sync costs less than
        handing it to another thread and back on a small machine, and the turn that asked
        for it waits for it anyway."""
        self._flush_scheduled = False
        if not self._pending and not self._waiters:
            return
        data, waiters, count = b"".join(self._pending), self._waiters, len(self._pending)
        self._pending, self._waiters = [], []
        try:
            self._write_and_sync(data, count)
        except BaseException as err:  # noqa: BLE001 - every failure is fatal and reported
            self._fail(err, waiters)
            return
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _fatal(self, err: BaseException) -> WalFatalError:
        return WalFatalError(f"WAL write/fdatasync of {self.directory / _segment_name(self.seq)} failed: {err}")

    def _fail(self, err: BaseException, waiters: list) -> None:
        self._failed = err
        fatal = self._fatal(err)
        for w in waiters + self._waiters:
            if not w.done():
                w.set_exception(fatal)
        self._pending, self._waiters = [], []

    def _write_and_sync(self, data: bytes, count: int) -> None:
        """Write `count` records (`data`) and sync: they and every lazily written record are
        durable."""
        if data:
            self.disk.append(self._fd, data)
            self.size_bytes += len(data)
        started = time.perf_counter()
        self.disk.sync(self._fd)
        took = time.perf_counter() - started
        self.sync_seconds += took
        self.sync_counts[next((i for i, b in enumerate(SYNC_BUCKETS_S) if took <= b), len(SYNC_BUCKETS_S))] += 1
        self.syncs += 1
        self.synced_records += count + self._unsynced
        self._unsynced = 0
        if self.size_bytes >= self.segment_bytes:
            self._roll()  # only right after a sync: an earlier segment never ends unsynced

    def _roll(self) -> None:
        self.disk.close(self._fd)
        self.seq += 1
        self._fd = self.disk.open_append(self.directory / _segment_name(self.seq))
        self.size_bytes = 0
        self.disk.sync_dir(self.directory)

    # ---- snapshots ----

    def install_snapshot(self, slot: int, kv_state: bytes, core_records: list[bytes]) -> None:
        """Make a snapshot durable, then delete what it covers.

        Call at a turn boundary, with nothing appended since `core_records` were taken: the new
        segment this starts holds everything after the snapshot.
        """
        self._check_usable()
        if self._pending:
            raise RuntimeError("install_snapshot while an append is pending")
        try:
            if self._unsynced:  # lazily written records: the segment is closed synced
                self._write_and_sync(b"", 0)
            self._roll()
            snap = Snapshot(slot, self.seq, kv_state, core_records)
            name = f"{SNAP_PREFIX}{slot:016x}{SNAP_SUFFIX}"
            tmp = self.directory / (name + ".tmp")
            self.disk.write_new(tmp, _encode_snapshot(snap))
            self.disk.rename(tmp, self.directory / name)
            self.disk.sync_dir(self.directory)
        except OSError as err:
            self._failed = err
            raise WalFatalError(f"writing the snapshot failed: {err}") from err
        for n in self.disk.listdir(self.directory):
            if n.endswith(SEGMENT_SUFFIX) and int(n[:-len(SEGMENT_SUFFIX)], 16) < self.seq:
                self.disk.remove(self.directory / n)
            elif n.startswith(SNAP_PREFIX) and n.endswith(SNAP_SUFFIX) and n != name:
                self.disk.remove(self.directory / n)

    def drain(self) -> None:
        """Make everything appended so far durable now, blocking (before a snapshot or close());
        after a failure nothing more reaches the disk, and the next append raises."""
        if self._failed is not None:
            return
        if self._pending or self._waiters:
            self._flush()
        elif self._unsynced:
            try:
                self._write_and_sync(b"", 0)
            except BaseException as err:  # noqa: BLE001 - every failure is fatal and reported
                self._fail(err, [])
                raise self._fatal(err) from err

    def close(self) -> None:
        if self._fd is not None:
            self.disk.close(self._fd)
            self._fd = None

