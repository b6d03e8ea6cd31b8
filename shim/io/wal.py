"""The write-ahead log of the core's durable records, and the snapshots that let it be cut short.

Layout of a data directory's `wal/`: segment files `NNNNNNNNNNNNNNNN.wal` (hex sequence number)
holding records `[u32 body length][u32 CRC32 of type+body][u8 type][body]`, and snapshot files
`snap-NNNNNNNNNNNNNNNN.snap` (atomic: temp file, fsync, rename, fsync directory). A node's own
snapshot is written whole apart (possibly by a child process): its KV state, then the core's
state as of the same moment, when the WAL starts a new segment for the records that follow (see
begin_state); a peer's snapshot is written in the loop, with the core's state after installing it.

Rules this module must never break:
- `append_many` returns only after the records are on disk (one fdatasync per group: every append
  waiting at that moment shares it). A record that was acknowledged is never lost or cut.
- A failed write or sync is fatal (`WalFatalError`, and the WAL refuses every later call): after
  a failed fsync the kernel may have dropped the dirty pages, so retrying could lie.
- Recovery only ever cuts a torn tail: a partial last record of the last segment. A bad CRC
  anywhere else, or a damaged record before the tail, refuses to start (`WalCorruptError` names
  the file and the byte offset): the node must not run with a log it cannot trust.

Segments are preallocated (zeros, `RealDisk.open_segment`), so the last one ends in zeros after its
last record, and a write torn by a crash can leave zeros inside a record rather than a short file.
A record of the last segment that fails its CRC is a torn tail when a piece of it within one
512-byte sector is all zeros: a sector that never reached the disk (etcd's rule). The zero header
after the last record ends the log. A closed segment is trimmed to its last record, so zeros in
an older segment are damage.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from verikv.shim.io.disk import SECTOR_BYTES, RealDisk

RECORD_HEAD = struct.Struct("<IIB")  # body length, crc32(type + body), type
MAX_RECORD_BYTES = 64 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
SYNC_BUCKETS_S = tuple(0.001 * 2 ** i for i in range(14))  # etcd's wal_fsync_duration_seconds buckets
TYPE_CORE = 1  # a record from the core's Ready (opaque to the shim)
SEGMENT_SUFFIX = ".wal"
SNAP_PREFIX, SNAP_SUFFIX = "snap-", ".snap"
# a snapshot file: [magic, slot, kv length, crc32 of kv][kv state] then [first segment, record
# count][records, each u32 length + bytes][crc32 of the first header and this part]
_STATE_HEAD = struct.Struct("<4sQQI")
_SNAP_MAGIC = b"VKP2"
_SNAP_HEAD_V1 = struct.Struct("<4sIQQQI")  # magic, crc32 of the rest, slot, first segment, kv length, record count
_SNAP_MAGIC_V1 = b"VKP1"


class WalCorruptError(Exception):
    """The log on disk is damaged somewhere other than a torn tail; the node must not start."""


class WalFatalError(Exception):
    """A write or sync failed: the node must stop now (fail-stop), without sending anything more."""


def encode_record(body: bytes, rtype: int = TYPE_CORE) -> bytes:
    crc = zlib.crc32(bytes([rtype]) + body)
    return RECORD_HEAD.pack(len(body), crc, rtype) + body


def _segment_name(seq: int) -> str:
    return f"{seq:016x}{SEGMENT_SUFFIX}"


def _torn(data: bytes, pos: int, end: int) -> bool:
    """The record at [pos, end) of the last segment, which failed its check, was torn by a crash:
    a piece of it within one 512-byte sector is all zeros, a sector that never reached the disk
    (a disk writes a sector whole or not at all; etcd's rule, `isTornEntry`)."""
    start = pos
    while start < end:
        stop = min(end, (start // SECTOR_BYTES + 1) * SECTOR_BYTES)
        if data.count(0, start, stop) == stop - start:
            return True
        start = stop
    return False


class _More(Exception):
    """The segment's first bytes, all that was read of it, end before its records do."""


def _parse_segment(path: Path, data: bytes, is_last: bool, whole: bool = True) -> tuple[list[bytes], int, bool]:
    """Records of one segment, the length of its valid prefix, and whether what follows that
    prefix is a torn tail (False: nothing, or the zeros of its preallocation). `data` is the
    whole segment, or (whole=False) its first bytes: _More if they do not settle it."""
    records = []
    pos = 0
    while pos < len(data):
        rest = len(data) - pos
        if rest < RECORD_HEAD.size:
            if not whole:
                raise _More
            if is_last:  # zeros: the preallocated rest; else a header that never finished reaching the disk
                return records, pos, data.count(0, pos) != rest
            raise WalCorruptError(f"{path}: record at byte offset {pos} is cut short "
                                  f"({rest} bytes left) in a segment that is not the last")
        length, crc, rtype = RECORD_HEAD.unpack_from(data, pos)
        if is_last and length == 0 and crc == 0 and rtype == 0:
            # no record has this header (its CRC covers its type, 1): the preallocated rest,
            # the end of the log; what a torn write left after it was never synced (as etcd's)
            return records, pos, False
        if length > MAX_RECORD_BYTES:
            raise WalCorruptError(f"{path}: record at byte offset {pos} has a bad length {length} "
                                  f"(max {MAX_RECORD_BYTES})")
        end = pos + RECORD_HEAD.size + length
        if end > len(data):
            if not whole:
                raise _More
            if is_last:
                return records, pos, True  # torn tail: a body that never finished reaching the disk
            raise WalCorruptError(f"{path}: record at byte offset {pos} claims {length} bytes, "
                                  f"only {rest - RECORD_HEAD.size} follow, in a segment that is not the last")
        body = data[pos + RECORD_HEAD.size:end]
        if zlib.crc32(bytes([rtype]) + body) != crc or rtype != TYPE_CORE:
            if is_last and _torn(data, pos, end):
                return records, pos, True
            if rtype != TYPE_CORE and zlib.crc32(bytes([rtype]) + body) == crc:
                raise WalCorruptError(f"{path}: record at byte offset {pos} has an unknown type {rtype}")
            raise WalCorruptError(f"{path}: record at byte offset {pos} has a bad CRC "
                                  f"(length {length}, type {rtype})")
        records.append(body)
        pos = end
    if not whole:
        raise _More
    return records, pos, False


def _read_last_segment(disk, path: Path) -> tuple[bytes, tuple[list[bytes], int, bool]]:
    """Read and parse the last segment, only as far as its records go: it is preallocated (64
    MiB), and its zeros need not be read. Returns the bytes read and _parse_segment's answer."""
    n = 1 << 20
    while True:
        data = disk.read_head(path, n)
        whole = len(data) < n
        try:
            return data, _parse_segment(path, data, True, whole)
        except _More:
            n *= 4


@dataclass
class Snapshot:
    slot: int  # every slot below this one is applied in kv_state
    first_segment: int  # WAL segments from this one on hold what happened after the snapshot
    kv_state: bytes
    core_records: list[bytes]  # core.checkpoint_records() at the snapshot


def _encode_trailer(slot: int, kv_state_bytes: int, kv_crc: int, first_segment: int,
                    core_records: list[bytes]) -> bytes:
    """Its second part: where the log goes on, and the core's state; the CRC covers the first
    part's header and this part. Written with the state by whoever writes it (a node's own
    snapshot), or appended in the loop (a peer's)."""
    return b"".join(_trailer_parts(slot, kv_state_bytes, kv_crc, first_segment, core_records))


def _trailer_parts(slot: int, kv_state_bytes: int, kv_crc: int, first_segment: int,
                   core_records: list[bytes]) -> Iterator[bytes]:
    """_encode_trailer's bytes, in parts (the core's records are not copied)."""
    crc = zlib.crc32(_STATE_HEAD.pack(_SNAP_MAGIC, slot, kv_state_bytes, kv_crc))
    head = struct.pack("<QI", first_segment, len(core_records))
    crc = zlib.crc32(head, crc)
    yield head
    for r in core_records:
        length = struct.pack("<I", len(r))
        crc = zlib.crc32(r, zlib.crc32(length, crc))
        yield length
        yield r
    yield struct.pack("<I", crc)


def _decode_snapshot(path: Path, data: bytes) -> Snapshot:
    if data[:4] == _SNAP_MAGIC_V1:
        return _decode_snapshot_v1(path, data)
    if len(data) < _STATE_HEAD.size:
        raise WalCorruptError(f"{path}: snapshot is {len(data)} bytes, shorter than its header")
    magic, slot, kv_len, kv_crc = _STATE_HEAD.unpack_from(data)
    pos = _STATE_HEAD.size
    kv_state = data[pos:pos + kv_len]
    if magic != _SNAP_MAGIC or len(kv_state) != kv_len or zlib.crc32(kv_state) != kv_crc:
        raise WalCorruptError(f"{path}: snapshot has a bad magic, length or CRC of its state")
    pos += kv_len
    log_crc = zlib.crc32(data[pos:-4], zlib.crc32(data[:_STATE_HEAD.size]))  # (no copy of the state)
    if len(data) < pos + 16 or log_crc != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise WalCorruptError(f"{path}: snapshot has a bad CRC of its log part")
    first_segment, nrec = struct.unpack_from("<QI", data, pos)
    pos += 12
    records = []
    for _ in range(nrec):
        (n,) = struct.unpack_from("<I", data, pos)
        records.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    if pos != len(data) - 4:
        raise WalCorruptError(f"{path}: snapshot's records end at byte {pos}, its CRC at {len(data) - 4}")
    return Snapshot(slot, first_segment, kv_state, records)


def _decode_snapshot_v1(path: Path, data: bytes) -> Snapshot:
    """A snapshot written whole at once (before the state was written apart)."""
    if len(data) < _SNAP_HEAD_V1.size:
        raise WalCorruptError(f"{path}: snapshot is {len(data)} bytes, shorter than its header")
    magic, crc, slot, first_segment, kv_len, nrec = _SNAP_HEAD_V1.unpack_from(data)
    if magic != _SNAP_MAGIC_V1 or zlib.crc32(data[8:]) != crc:
        raise WalCorruptError(f"{path}: snapshot has a bad magic or CRC")
    pos = _SNAP_HEAD_V1.size
    kv_state = data[pos:pos + kv_len]
    pos += kv_len
    records = []
    for _ in range(nrec):
        (n,) = struct.unpack_from("<I", data, pos)
        records.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return Snapshot(slot, first_segment, kv_state, records)


@dataclass
class StateFile:
    """A snapshot being written apart, begun by Wal.begin_state: the file at `tmp` is written
    (`written`: synced) and not yet made a snapshot. `first_segment`: the segment its log goes on
    in, once the WAL started it (start_segment), when the snapshot is written whole apart."""
    slot: int
    tmp: Path
    kv_state_bytes: int = 0
    kv_crc: int = 0
    written: bool = False
    first_segment: int | None = None


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
        self._fd = disk.open_segment(directory / _segment_name(seq), size_bytes, segment_bytes)
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
        self._state: StateFile | None = None  # the next snapshot's state, being written
        self._snapshot_tries = 0

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
        seq, size = first, 0
        for i, seq in enumerate(segs):
            path = directory / _segment_name(seq)
            if i == len(segs) - 1:
                data, (recs, size, torn) = _read_last_segment(disk, path)
            else:
                data = disk.read(path)
                recs, size, torn = _parse_segment(path, data, is_last=False)
            records += recs
            if torn:
                tail = max(0, len(data.rstrip(b"\0")) - size)  # up to the zeros (of what was read)
                cut = f"{path}: cut a torn tail of {tail} bytes at byte offset {size}"
                disk.truncate(path, size)  # the segment is preallocated again when opened
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
            # In the next loop iteration: the sync blocks the loop's thread, and uvloop writes
            # to sockets only after an iteration's callbacks, so the packets a turn handed to a
            # socket's transport before asking for this sync (its early packets) leave before
            # the sync starts.
            asyncio.get_running_loop().call_soon(self._flush)
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
        self.disk.trim(self._fd, self.size_bytes)  # a closed segment ends at its last record
        self.disk.close(self._fd)
        self.seq += 1
        self._fd = self.disk.open_segment(self.directory / _segment_name(self.seq), 0, self.segment_bytes)
        self.size_bytes = 0
        self.disk.sync_dir(self.directory)

    # ---- snapshots ----

    def install_snapshot(self, slot: int, kv_state: bytes | None, core_records: list[bytes],
                         remove=None) -> None:
        """Make a snapshot durable, then delete what it covers: its state is `kv_state`, or (None)
        the state file written for `slot` (begin_state, [start_segment,] write_state,
        state_written). `remove`, if given, is handed the paths to delete (see remove_files) instead.

        Unless the file was written whole (start_segment, then write_state with the core's
        records: `core_records` is then not used), call at a turn boundary, with nothing appended
        since `core_records` were taken: the new segment this starts holds everything after the
        snapshot.
        """
        self._check_usable()
        if self._pending:
            raise RuntimeError("install_snapshot while an append is pending")
        state = self._state
        if kv_state is not None:
            self.abandon_state()
            state = self.begin_state(slot)
            try:
                self.write_state(state, kv_state)
            except OSError as err:
                self._failed = err
                raise WalFatalError(f"writing the snapshot failed: {err}") from err
            self.state_written(state)
        elif state is None or state.slot != slot or not state.written:
            raise RuntimeError(f"install_snapshot at slot {slot} without its state written")
        self._state = None
        name = f"{SNAP_PREFIX}{slot:016x}{SNAP_SUFFIX}"
        first = state.first_segment  # (written whole apart: its log goes on there)
        try:
            if first is None:
                if self._unsynced:  # lazily written records: the segment is closed synced
                    self._write_and_sync(b"", 0)
                self._roll()
                first = self.seq
                self.disk.append_file(state.tmp, _encode_trailer(slot, state.kv_state_bytes, state.kv_crc,
                                                                 first, core_records))
            self.disk.rename(state.tmp, self.directory / name)
            self.disk.sync_dir(self.directory)
        except OSError as err:
            self._failed = err
            raise WalFatalError(f"writing the snapshot failed: {err}") from err
        covered = [self.directory / n for n in self.disk.listdir(self.directory)
                   if (n.endswith(SEGMENT_SUFFIX) and int(n[:-len(SEGMENT_SUFFIX)], 16) < first)
                   or (n.startswith(SNAP_PREFIX) and n.endswith(SNAP_SUFFIX) and n != name)]
        if remove is None:
            self.remove_files(covered)
        else:
            remove(covered)

    def remove_files(self, paths: list[Path]) -> None:
        """Delete what a snapshot covers (segments before it, older snapshots): recovery reads
        none of them, so this may happen later (in another thread) or never (a crash first; the
        next snapshot deletes them)."""
        for path in paths:
            try:
                self.disk.remove_large(path)
            except FileNotFoundError:
                pass

    # A node's own snapshot is written apart (by a child process, in the runner: a large state
    # takes seconds), while the node goes on: begin_state, then start_segment (the records that
    # follow go to a new segment), then write_state with the KV state and the core's state of
    # that moment; the snapshot is made (install_snapshot with kv_state None) and the core's log
    # truncated only once the file is durable. Until then the WAL only grew by a segment:
    # recovery uses the previous snapshot and every segment after it.

    def begin_state(self, slot: int) -> StateFile:
        """Start writing the state at `slot` of the next snapshot (one at a time)."""
        self._check_usable()
        if self._state is not None:
            raise RuntimeError(f"begin_state at slot {slot} while the state at slot {self._state.slot} is open")
        self._snapshot_tries += 1
        name = f"{SNAP_PREFIX}{slot:016x}{SNAP_SUFFIX}.{os.getpid()}-{self._snapshot_tries}.tmp"
        self._state = StateFile(slot, self.directory / name)  # Wal.open removes a leftover one
        return self._state

    def start_segment(self, state: StateFile) -> None:
        """The records appended from now on go to a new segment, where the log of the snapshot
        being written goes on: its core records (write_state) are the core's state as of now.
        Lazily written records are synced first (the segment is closed synced)."""
        self._check_usable()
        if self._state is not state or state.first_segment is not None:
            raise RuntimeError(f"start_segment for the state at slot {state.slot}, which is not open or has one")
        if self._pending:
            raise RuntimeError("start_segment while an append is pending")
        try:
            if self._unsynced:
                self._write_and_sync(b"", 0)
            self._roll()
        except OSError as err:
            self._failed = err
            raise WalFatalError(f"starting a segment for the snapshot at slot {state.slot} failed: {err}") from err
        state.first_segment = self.seq

    def write_state(self, state: StateFile, kv_state: bytes | Iterable[bytes],
                    core_records: list[bytes] | None = None) -> None:
        """Write and fsync the state's file: the KV state (its bytes, or its parts in order: they
        are written as they come, so a state of hundreds of MB is never whole in memory), and with
        `core_records` (the core's state when start_segment was called) the whole snapshot.
        Touches nothing else of the WAL: a child process may call it on its copy (OSError on
        failure)."""
        if core_records is not None and state.first_segment is None:
            raise RuntimeError(f"write_state with core records for the state at slot {state.slot} "
                               "before start_segment")
        parts = [kv_state] if isinstance(kv_state, (bytes, bytearray, memoryview)) else kv_state
        length = kv_crc = 0

        def body() -> Iterator[bytes]:
            nonlocal length, kv_crc
            for part in parts:
                length += len(part)
                kv_crc = zlib.crc32(part, kv_crc)
                yield part
            if core_records is not None:
                yield from _trailer_parts(state.slot, length, kv_crc, state.first_segment, core_records)

        self.disk.write_new(state.tmp, body(), _STATE_HEAD.size,
                            lambda: _STATE_HEAD.pack(_SNAP_MAGIC, state.slot, length, kv_crc))

    def state_written(self, state: StateFile) -> None:
        """The state's file is written and synced (by whoever wrote it): read its header."""
        if self._state is not state:
            raise RuntimeError(f"state_written for the state at slot {state.slot}, which is not open")
        head = self.disk.read_head(state.tmp, _STATE_HEAD.size)
        magic, slot, state.kv_state_bytes, state.kv_crc = _STATE_HEAD.unpack(head)
        if magic != _SNAP_MAGIC or slot != state.slot:
            raise WalFatalError(f"{state.tmp}: the state written is not the state at slot {state.slot}")
        state.written = True

    def abandon_state(self) -> None:
        """Forget the state being written, if any (the previous snapshot stays the WAL's start)."""
        state, self._state = self._state, None
        if state is not None:
            self.remove_files([state.tmp])

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

