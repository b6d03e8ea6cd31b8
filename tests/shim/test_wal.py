"""The WAL keeps every acknowledged record, shares one fdatasync among concurrent appends, cuts only
a torn tail, refuses a damaged log with the file and offset, and stops for good on a failed sync.
Segments are preallocated: the zeros after the last record are the log's end, not damage."""

import asyncio
import os

import pytest

from verikv.shim.io.disk import FaultyDisk, RealDisk
from verikv.shim.io.disk import SECTOR_BYTES
from verikv.shim.io.wal import RECORD_HEAD, Wal, WalCorruptError, WalFatalError, encode_record


class CountingDisk(RealDisk):
    def __init__(self):
        self.syncs = 0

    def sync(self, fd):
        self.syncs += 1
        super().sync(fd)


def segments(d):
    return sorted(p for p in d.iterdir() if p.suffix == ".wal")


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def records_bytes(*records):
    return sum(len(encode_record(r)) for r in records)


async def test_a_segment_is_preallocated_and_appends_do_not_grow_it(tmp_path):
    wal, _ = Wal.open(tmp_path, segment_bytes=4096)
    (seg,) = segments(tmp_path)
    assert seg.stat().st_size == 4096
    await wal.append_many([b"one"])
    wal.append_lazy([b"two"])
    await wal.append_many([b"three"])
    assert seg.stat().st_size == 4096  # no sync had a file size to write
    data = seg.read_bytes()
    end = records_bytes(b"one", b"two", b"three")
    assert data[end:] == bytes(4096 - end)
    wal.close()
    _, rec = Wal.open(tmp_path, segment_bytes=4096)
    assert rec.records == [b"one", b"two", b"three"] and rec.cut_tail is None


async def test_without_preallocation_the_log_still_works(tmp_path, monkeypatch):
    import errno

    def refuse(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    wal, _ = Wal.open(tmp_path, segment_bytes=60)
    for i in range(6):
        await wal.append_many([b"r%d" % i + b"." * 20])
    wal.close()
    assert all(seg.stat().st_size <= 60 + records_bytes(b"r0" + b"." * 20) for seg in segments(tmp_path))
    _, rec = Wal.open(tmp_path, segment_bytes=60)
    assert rec.records == [b"r%d" % i + b"." * 20 for i in range(6)] and rec.cut_tail is None


async def test_appended_records_come_back_in_order(tmp_path):
    wal, rec = Wal.open(tmp_path)
    assert rec.records == [] and rec.snapshot is None
    await wal.append_many([b"one", b"two"])
    await wal.append_many([b""])
    await wal.append_many([b"three"])
    wal.close()
    _, rec = Wal.open(tmp_path)
    assert rec.records == [b"one", b"two", b"", b"three"] and rec.cut_tail is None


async def test_a_lazy_append_stays_behind_a_durable_append_not_yet_written(tmp_path):
    wal, _ = Wal.open(tmp_path)
    durable = asyncio.get_running_loop().create_task(wal.append_many([b"first"]))
    await asyncio.sleep(0)  # the durable append is queued, its sync not yet run
    wal.append_lazy([b"second"])
    await durable
    wal.close()
    _, rec = Wal.open(tmp_path)
    assert rec.records == [b"first", b"second"]


async def test_concurrent_appends_share_syncs(tmp_path):
    disk = CountingDisk()
    wal, _ = Wal.open(tmp_path, disk)
    await asyncio.gather(*(wal.append_many([b"r%d" % i]) for i in range(50)))
    assert disk.syncs <= 2  # the first append's sync, then everyone who queued behind it
    wal.close()
    _, rec = Wal.open(tmp_path)
    assert sorted(rec.records) == sorted(b"r%d" % i for i in range(50))


async def test_segments_roll_and_replay_across_files(tmp_path):
    wal, _ = Wal.open(tmp_path, segment_bytes=100)
    for i in range(20):
        await wal.append_many([b"x" * 30 + b"%d" % i])
    wal.close()
    segs = segments(tmp_path)
    assert len(segs) > 5
    for seg in segs[:-1]:  # a closed segment ends at its last record: no preallocated zeros
        assert not seg.read_bytes().endswith(b"\0")
    _, rec = Wal.open(tmp_path, segment_bytes=100)
    assert rec.records == [b"x" * 30 + b"%d" % i for i in range(20)]


BIG = bytes(range(1, 256)) * 12  # no zero byte, 3,060 bytes: spans several sectors


@pytest.mark.parametrize("torn", ["short file", "missing sector"])
async def test_a_torn_tail_is_cut(tmp_path, torn):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"a", b"b"])
    wal.close()
    (seg,) = segments(tmp_path)
    good = records_bytes(b"a", b"b")
    partial = encode_record(BIG)[:SECTOR_BYTES - good]  # up to the end of the first sector
    write_at(seg, good, partial)
    if torn == "short file":  # a segment that was not preallocated (no support, or an older log)
        os.truncate(seg, good + len(partial))
    wal, rec = Wal.open(tmp_path)
    assert rec.records == [b"a", b"b"]
    assert rec.cut_tail and f"byte offset {good}" in rec.cut_tail
    assert seg.read_bytes()[good:].count(0) == seg.stat().st_size - good  # cut, preallocated again
    await wal.append_many([b"c"])  # appends continue after the cut
    wal.close()
    assert Wal.open(tmp_path)[1].records == [b"a", b"b", b"c"]


async def test_a_record_cut_inside_one_sector_is_damage_not_a_torn_write(tmp_path):
    """A disk writes a sector whole: a record that ends inside a sector and fails its CRC was
    damaged after it was written, so the node refuses to start rather than cut it."""
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"a", b"b"])
    wal.close()
    (seg,) = segments(tmp_path)
    good = records_bytes(b"a", b"b")
    write_at(seg, good, encode_record(b"partial body")[:-3])
    with pytest.raises(WalCorruptError, match=f"byte offset {good} has a bad CRC"):
        Wal.open(tmp_path)


async def test_the_zeros_after_the_last_record_are_no_cut(tmp_path):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"a", b"b"])
    wal.close()
    wal, rec = Wal.open(tmp_path)
    assert rec.records == [b"a", b"b"] and rec.cut_tail is None
    wal.close()


async def test_a_record_with_a_sector_that_never_reached_the_disk_is_a_torn_tail(tmp_path):
    """A crash can persist a record's later sectors but not an earlier one: in a preallocated
    segment that sector reads as zeros, inside the record (etcd's rule for a torn write)."""
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"a"])
    await wal.append_many([BIG])
    wal.close()
    (seg,) = segments(tmp_path)
    start = records_bytes(b"a")
    sector = (start // SECTOR_BYTES + 2) * SECTOR_BYTES  # a whole sector inside the second record
    write_at(seg, sector, bytes(SECTOR_BYTES))
    wal, rec = Wal.open(tmp_path)
    assert rec.records == [b"a"] and rec.cut_tail and f"byte offset {start}" in rec.cut_tail
    wal.close()


async def test_a_bad_crc_with_no_zero_sector_in_the_last_record_refuses_to_start(tmp_path):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"a"])
    await wal.append_many([BIG])
    wal.close()
    (seg,) = segments(tmp_path)
    start = records_bytes(b"a")
    write_at(seg, start + RECORD_HEAD.size + 1000, b"\xff")  # a flipped byte, the rest intact
    with pytest.raises(WalCorruptError, match=f"byte offset {start} has a bad CRC"):
        Wal.open(tmp_path)


async def test_a_bad_crc_in_the_middle_refuses_to_start(tmp_path):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"aaaa", b"bbbb", b"cccc"])
    wal.close()
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    second = RECORD_HEAD.size + 4
    data[second + RECORD_HEAD.size] ^= 0xFF  # flip a body byte of the second record
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match=rf"{seg.name}: record at byte offset {second} has a bad CRC"):
        Wal.open(tmp_path)


async def test_a_bad_crc_in_the_last_record_is_not_mistaken_for_a_torn_tail(tmp_path):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"aaaa", b"bbbb"])
    wal.close()
    (seg,) = segments(tmp_path)
    last = records_bytes(b"aaaa", b"bbbb") - 1  # the last record's last byte
    write_at(seg, last, bytes([seg.read_bytes()[last] ^ 0x01]))
    with pytest.raises(WalCorruptError, match="bad CRC"):
        Wal.open(tmp_path)


async def test_a_bad_length_refuses_to_start(tmp_path):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"aaaa", b"bbbb"])
    wal.close()
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    data[0:4] = (2**31).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match=r"byte offset 0 has a bad length"):
        Wal.open(tmp_path)


async def test_a_cut_record_in_an_older_segment_refuses_to_start(tmp_path):
    wal, _ = Wal.open(tmp_path, segment_bytes=30)
    for i in range(4):
        await wal.append_many([b"y" * 25])
    wal.close()
    first = segments(tmp_path)[0]
    first.write_bytes(first.read_bytes()[:-5])
    with pytest.raises(WalCorruptError, match=f"{first.name}: record at byte offset 0"):
        Wal.open(tmp_path, segment_bytes=30)


async def test_a_failed_sync_is_fatal_and_stays_fatal(tmp_path):
    disk = FaultyDisk()
    wal, _ = Wal.open(tmp_path, disk)
    await wal.append_many([b"durable"])
    disk.fail_syncs = True
    with pytest.raises(WalFatalError, match="injected fault"):
        await wal.append_many([b"lost"])
    disk.fail_syncs = False
    with pytest.raises(WalFatalError, match="failed earlier"):
        await wal.append_many([b"after"])  # never retried: fail-stop
    disk.crash()
    assert Wal.open(tmp_path)[1].records == [b"durable"]


async def test_fsync_fault_can_be_triggered_from_outside(tmp_path):
    disk = FaultyDisk(trigger_dir=tmp_path)
    wal, _ = Wal.open(tmp_path / "wal", disk)
    (tmp_path / "fail-fsync").touch()
    with pytest.raises(WalFatalError):
        await wal.append_many([b"x"])


async def test_a_crash_loses_exactly_the_unsynced_writes(tmp_path):
    disk = FaultyDisk()
    wal, _ = Wal.open(tmp_path, disk)
    await wal.append_many([b"synced"])
    disk.append(wal._fd, encode_record(BIG))  # written but never synced
    disk.crash(keep_unsynced_bytes=SECTOR_BYTES)  # a torn write: its first sector reached the disk
    wal, rec = Wal.open(tmp_path)
    assert rec.records == [b"synced"] and rec.cut_tail


async def test_snapshot_replaces_older_segments(tmp_path):
    wal, _ = Wal.open(tmp_path, segment_bytes=60)
    for i in range(10):
        await wal.append_many([b"old%d" % i + b"." * 20])
    wal.install_snapshot(slot=42, kv_state=b"KV", core_records=[b"ckpt1", b"ckpt2"])
    await wal.append_many([b"new"])
    wal.close()
    assert len(segments(tmp_path)) == 1 and len(list(tmp_path.glob("snap-*.snap"))) == 1
    _, rec = Wal.open(tmp_path)
    assert rec.snapshot.slot == 42 and rec.snapshot.kv_state == b"KV"
    assert rec.snapshot.core_records == [b"ckpt1", b"ckpt2"] and rec.records == [b"new"]


async def test_a_snapshot_that_fails_after_the_segment_rolled_leaves_a_log_that_recovers(tmp_path):
    """install_snapshot closes the segment early, before the snapshot file is complete (its log
    part is appended after): that segment, no longer the last, must end at its last record
    (trimmed), not in preallocated zeros."""

    class NoSnapshotFiles(RealDisk):
        def append_file(self, path, data):
            raise OSError(28, "No space left on device")

    wal, _ = Wal.open(tmp_path, NoSnapshotFiles())
    await wal.append_many([b"a", b"b"])
    with pytest.raises(WalFatalError, match="writing the snapshot failed"):
        wal.install_snapshot(slot=2, kv_state=b"KV", core_records=[])
    wal.close()
    assert len(segments(tmp_path)) == 2
    _, rec = Wal.open(tmp_path)
    assert rec.snapshot is None and rec.records == [b"a", b"b"] and rec.cut_tail is None


async def test_a_snapshot_that_never_got_renamed_is_ignored(tmp_path):
    wal, _ = Wal.open(tmp_path)
    await wal.append_many([b"a"])
    wal.close()
    (tmp_path / "snap-0000000000000009.snap.tmp").write_bytes(b"half")
    _, rec = Wal.open(tmp_path)
    assert rec.snapshot is None and rec.records == [b"a"]
    assert not list(tmp_path.glob("*.tmp"))


async def test_a_corrupt_snapshot_refuses_to_start(tmp_path):
    wal, _ = Wal.open(tmp_path)
    wal.install_snapshot(slot=1, kv_state=b"KV", core_records=[])
    wal.close()
    (snap,) = tmp_path.glob("snap-*.snap")
    data = bytearray(snap.read_bytes())
    data[-1] ^= 1
    snap.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match="snapshot has a bad CRC of its log part"):
        Wal.open(tmp_path)
    data[-1] ^= 1
    data[24] ^= 1  # the state, after its 24-byte header
    snap.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match="snapshot has a bad magic, length or CRC of its state"):
        Wal.open(tmp_path)


async def test_a_snapshots_state_is_written_apart_and_the_log_changes_only_when_it_is_made(tmp_path):
    """begin_state/write_state (what a child process does)/state_written, then install_snapshot
    with the core's records: until then the WAL is as before, and a crash recovers from it."""
    wal, _ = Wal.open(tmp_path, segment_bytes=60)
    wal.install_snapshot(slot=3, kv_state=b"KV3", core_records=[b"c3"])
    await wal.append_many([b"a" * 30, b"b" * 30])
    state = wal.begin_state(5)
    wal.write_state(state, b"KV5" * 1000)
    await wal.append_many([b"c"])  # the node goes on meanwhile
    with pytest.raises(RuntimeError, match="without its state written"):
        wal.install_snapshot(slot=5, kv_state=None, core_records=[b"c5"])
    # a crash now: the previous snapshot and every record after it
    _, rec = Wal.open(tmp_path, segment_bytes=60)
    assert rec.snapshot.slot == 3 and rec.records == [b"a" * 30, b"b" * 30, b"c"]
    assert not list(tmp_path.glob("*.tmp"))  # the state written is a leftover

    wal, _ = Wal.open(tmp_path, segment_bytes=60)
    state = wal.begin_state(5)
    with pytest.raises(RuntimeError, match="while the state at slot 5 is open"):
        wal.begin_state(6)
    wal.write_state(state, b"KV5" * 1000)
    wal.state_written(state)
    await wal.append_many([b"d"])
    wal.install_snapshot(slot=5, kv_state=None, core_records=[b"c5", b"c5'"])
    await wal.append_many([b"e"])
    wal.close()
    assert [p.name for p in tmp_path.glob("snap-*")] == ["snap-0000000000000005.snap"]
    _, rec = Wal.open(tmp_path, segment_bytes=60)
    assert (rec.snapshot.slot, rec.snapshot.kv_state, rec.snapshot.core_records) == (5, b"KV5" * 1000, [b"c5", b"c5'"])
    assert rec.records == [b"e"]


async def test_a_snapshot_written_whole_apart_starts_at_the_segment_begun_with_it(tmp_path):
    """A node's own snapshot: begin_state, start_segment (the core's state is taken then: the
    records after it go to a new segment), write_state with both (a child process), and
    install_snapshot only renames it: the log goes on at that segment, the segments before it
    go, and until it is made a crash recovers from the previous snapshot and every record."""
    wal, _ = Wal.open(tmp_path, segment_bytes=60)
    wal.install_snapshot(slot=3, kv_state=b"KV3", core_records=[b"c3"])
    await wal.append_many([b"a" * 30])
    wal.append_lazy([b"b" * 30])
    state = wal.begin_state(5)
    with pytest.raises(RuntimeError, match="before start_segment"):
        wal.write_state(state, b"KV5", [b"c5"])
    synced = wal.synced_records
    wal.start_segment(state)
    assert wal.synced_records == synced + 1  # the lazily written record is synced with its segment
    first = state.first_segment
    assert (tmp_path / f"{first:016x}.wal").exists()
    await wal.append_many([b"c"])  # after the core's state: in the new segment
    wal.write_state(state, b"KV5" * 1000, [b"c5", b"c5'"])
    # a crash now: the previous snapshot and every record after it
    _, rec = Wal.open(tmp_path, segment_bytes=60)
    assert rec.snapshot.slot == 3 and rec.records == [b"a" * 30, b"b" * 30, b"c"]

    wal, _ = Wal.open(tmp_path, segment_bytes=60)
    state = wal.begin_state(5)
    wal.start_segment(state)
    first = state.first_segment
    await wal.append_many([b"d"])
    wal.write_state(state, b"KV5" * 1000, [b"c5", b"c5'"])
    wal.state_written(state)
    await wal.append_many([b"e"])
    wal.install_snapshot(slot=5, kv_state=None, core_records=None)
    await wal.append_many([b"f"])
    wal.close()
    assert [p.name for p in tmp_path.glob("snap-*")] == ["snap-0000000000000005.snap"]
    assert min(int(p.name[:-4], 16) for p in tmp_path.glob("*.wal")) == first  # the ones before went
    _, rec = Wal.open(tmp_path, segment_bytes=60)
    assert (rec.snapshot.slot, rec.snapshot.first_segment, rec.snapshot.kv_state, rec.snapshot.core_records) == (
        5, first, b"KV5" * 1000, [b"c5", b"c5'"])
    assert rec.records == [b"d", b"e", b"f"]


def test_a_snapshot_written_whole_before_states_were_written_apart_still_recovers(tmp_path):
    import struct, zlib
    (tmp_path / "0000000000000002.wal").write_bytes(encode_record(b"after"))
    rest = b"KV" + struct.pack("<I", 2) + b"c1"
    head_rest = struct.pack("<QQQI", 7, 2, 2, 1)
    (tmp_path / "snap-0000000000000007.snap").write_bytes(
        b"VKP1" + struct.pack("<I", zlib.crc32(head_rest + rest)) + head_rest + rest)
    _, rec = Wal.open(tmp_path)
    assert (rec.snapshot.slot, rec.snapshot.first_segment, rec.snapshot.kv_state, rec.snapshot.core_records) == (
        7, 2, b"KV", [b"c1"])
    assert rec.records == [b"after"]


def test_records_are_really_fsynced(tmp_path, monkeypatch):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd)))
    wal, _ = Wal.open(tmp_path)
    wal.append_lazy([b"x"])
    assert not calls  # written, not synced
    wal.drain()
    assert calls and wal.synced_records == 1


def test_packets_handed_to_a_socket_before_a_durable_append_leave_before_its_sync(tmp_path):
    """The node's loop runs on uvloop, which writes to sockets only after a loop iteration's
    callbacks, and the WAL's sync blocks the loop's thread: a turn's early packets (handed to the
    socket's transport just before the turn asks for a sync, as the runner's flush_now does with
    a TLS connection's) must be on the wire before the sync starts, so peers persist in parallel
    with this node."""
    import socket

    import uvloop

    ours, peer = socket.socketpair()
    seen_at_sync = []

    class PeekingDisk(RealDisk):
        def sync(self, fd):
            try:
                seen_at_sync.append(peer.recv(100, socket.MSG_DONTWAIT))
            except BlockingIOError:
                seen_at_sync.append(b"")
            super().sync(fd)

    async def turn():
        wal, _ = Wal.open(tmp_path, PeekingDisk())
        _, writer = await asyncio.open_connection(sock=ours)
        writer.write(b"early")  # as Transport.flush_now does
        await wal.append_many([b"vote"])
        wal.close()
        writer.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(turn())
    finally:
        loop.close()
        peer.close()
    assert seen_at_sync == [b"early"]


def test_a_snapshots_state_reaches_the_disk_a_chunk_at_a_time(tmp_path, monkeypatch):
    # written whole and synced once, a large state reaches the disk in one burst that the WAL's
    # syncs (this node's and its peers', on the same disk) wait behind
    from verikv.shim.io import disk as disk_mod
    written_since_sync, most = [0], [0]
    real_write, real_sync = os.write, os.fdatasync

    def write(fd, data):
        n = real_write(fd, data)
        written_since_sync[0] += n
        most[0] = max(most[0], written_since_sync[0])
        return n

    def sync(fd):
        written_since_sync[0] = 0
        real_sync(fd)
    dropped = []  # each synced chunk leaves the page cache (nothing reads it soon)
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fdatasync", sync)
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: dropped.append(advice))
    wal, _ = Wal.open(tmp_path)
    state = wal.begin_state(5)
    kv_state = os.urandom(10 * disk_mod.WRITE_SYNC_CHUNK + 123)
    wal.write_state(state, kv_state)
    assert most[0] <= disk_mod.WRITE_SYNC_CHUNK
    assert dropped == [os.POSIX_FADV_DONTNEED] * 10
    wal.state_written(state)
    wal.install_snapshot(5, None, [b"core"])
    _, rec = Wal.open(tmp_path)
    assert (rec.snapshot.slot, rec.snapshot.kv_state, rec.snapshot.core_records) == (5, kv_state, [b"core"])


def test_a_snapshots_state_is_written_as_its_parts_come(tmp_path):
    # a state of hundreds of MB is never whole in memory (fresh memory is slow to get on a VM
    # whose host takes freed pages back): its first parts are on disk before its last is made
    from verikv.shim.io.disk import WRITE_SYNC_CHUNK
    wal, _ = Wal.open(tmp_path)
    state = wal.begin_state(5)
    part, n = os.urandom(1000), 3 * WRITE_SYNC_CHUNK // 1000
    on_disk_before_the_last_part = []

    def parts():
        yield from (part for _ in range(n))
        on_disk_before_the_last_part.append(os.stat(state.tmp).st_size)
        yield b"last"
    wal.write_state(state, parts())
    assert on_disk_before_the_last_part[0] >= 2 * WRITE_SYNC_CHUNK
    wal.state_written(state)
    assert state.kv_state_bytes == n * len(part) + 4
    wal.install_snapshot(5, None, [b"core"])
    _, rec = Wal.open(tmp_path)
    assert (rec.snapshot.slot, rec.snapshot.kv_state, rec.snapshot.core_records) == (5, part * n + b"last", [b"core"])


def test_a_large_file_a_snapshot_covers_is_freed_a_step_at_a_time(tmp_path, monkeypatch):
    # freed at once, hundreds of MB of blocks slow the file system's next commit, which every
    # log sync on the disk waits for
    from verikv.shim.io import disk as disk_mod
    monkeypatch.setattr(disk_mod, "REMOVE_STEP", 4096)
    monkeypatch.setattr(disk_mod, "REMOVE_PAUSE_S", 0)
    sizes, real_ftruncate = [], os.ftruncate
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: (sizes.append(n), real_ftruncate(fd, n))[1])
    wal, _ = Wal.open(tmp_path)
    old = tmp_path / "0000000000000000.old"
    old.write_bytes(os.urandom(5 * 4096 + 100))
    wal.remove_files([old, tmp_path / "gone-already"])
    assert sizes == [4 * 4096 + 100, 3 * 4096 + 100, 2 * 4096 + 100, 4096 + 100, 100]
    assert not old.exists()
