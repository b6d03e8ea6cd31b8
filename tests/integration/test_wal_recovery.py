"""WAL damage on real nodes (layout in shim/io/wal.py: segments `NNNNNNNNNNNNNNNN.wal` of records
`[u32 length][u32 crc32(type+body)][u8 type][body]`, preallocated: zeros after the last record):
a torn tail of the newest segment is cut and the node starts with its data intact; a flipped byte in the middle of a segment makes the node
refuse to start with a FATAL line naming the file and the record's byte offset, and no traceback."""

import struct
import time
from pathlib import Path

import pytest

HEAD = struct.Struct("<IIB")
SECTOR = 512


def records(data: bytes) -> list[tuple[int, int]]:
    """(offset, body length) of each whole record, up to the zeros of the preallocation."""
    out, pos = [], 0
    while pos + HEAD.size <= len(data):
        length, crc, rtype = HEAD.unpack_from(data, pos)
        if (length, crc, rtype) == (0, 0, 0) or pos + HEAD.size + length > len(data):
            break
        out.append((pos, length))
        pos += HEAD.size + length
    return out


def newest_segment(wal_dir: Path) -> Path:
    segs = sorted(wal_dir.glob("*.wal"))
    assert segs, f"no WAL segment in {wal_dir}"
    return segs[-1]


def check_data(cluster, nodes, expected: dict[bytes, bytes]) -> None:
    for i in nodes:
        got = {kv.key: kv.value for kv in cluster.range_all(i, serializable=True, key=b"wal/", range_end=b"wal0").kvs}
        assert got == expected, f"node {i}: {len(got)} keys, expected {len(expected)}"


@pytest.mark.slow
def test_torn_tail_is_cut_but_a_flipped_byte_refuses_to_start(make_cluster):
    cluster = make_cluster(4)
    cluster.up()
    expected = {}
    for n in range(60):
        key, value = f"wal/{n:03d}".encode(), f"value-{n}".encode() * 3
        cluster.put_retrying(key, value)
        expected[key] = value
    cluster.wait_caught_up(0)
    cluster.wait_caught_up(1)
    cluster.wait_caught_up(2)
    assert cluster.down().returncode == 0

    # ---- torn tails, one kind per node, on each node's newest segment, after its last record ----
    def sector_rest(end: int, head: bytes) -> bytes:  # a record's first bytes, up to a sector's end
        return head + b"x" * ((end // SECTOR + 1) * SECTOR - end - len(head))

    sizes, tails = {}, {}
    for i in range(3):
        seg = newest_segment(cluster.wal_dir(i))
        data = seg.read_bytes()
        last_pos, last_len = records(data)[-1]
        end = last_pos + HEAD.size + last_len
        if i == 0:  # a record whose later sectors never reached the disk (they read as zeros)
            tails[i] = sector_rest(end, HEAD.pack(4000, 0x12345678, 1))
        elif i == 1:  # a record's middle sector never reached the disk, the sector after it did
            tails[i] = sector_rest(end, HEAD.pack(4000, 0x9ABCDEF0, 1)) + bytes(SECTOR) + b"y" * SECTOR
        else:  # a segment that was not preallocated (an older log): a header cut short at its end
            tails[i] = b"\xde\xad\xbe\xef\x01"
        with open(seg, "r+b") as f:
            f.seek(end)
            f.write(tails[i])
            if i == 2:
                f.truncate(end + len(tails[i]))
        sizes[i] = (seg.resolve(), end)
    up = cluster.up()
    assert "Traceback" not in up.stdout + up.stderr
    assert all(n["pid"] for n in cluster.status()), "a node with only a torn tail did not start"
    for i, (seg, size) in sizes.items():
        text = cluster.log(i)
        assert f"{seg}: cut a torn tail of {len(tails[i])} bytes at byte offset {size}" in text, text[-2000:]
        assert "Traceback" not in text
    check_data(cluster, range(3), expected)
    cluster.put_retrying(b"wal/after-tail", b"ok")
    expected[b"wal/after-tail"] = b"ok"
    for i in range(3):
        cluster.wait_caught_up(i)
    check_data(cluster, range(3), expected)
    assert cluster.down().returncode == 0

    # ---- a flipped byte inside a record in the middle of node 1's segment ----
    seg = newest_segment(cluster.wal_dir(1))
    data = bytearray(seg.read_bytes())
    recs = [(pos, length) for pos, length in records(bytes(data)) if length > 0]
    assert len(recs) >= 10, f"too few records in {seg} to damage the middle: {len(recs)}"
    pos, length = min(recs, key=lambda r: abs(r[0] - len(data) // 2))
    assert 0 < pos < len(data) - HEAD.size - length  # not the last record: not a tail
    data[pos + HEAD.size + length // 2] ^= 0x5A
    seg.write_bytes(bytes(data))
    log_before = len(cluster.log(1))

    up = cluster.up(check=False)
    out = up.stdout + up.stderr
    assert "Traceback" not in out
    deadline = time.monotonic() + 20
    while cluster.status()[1]["role"] != "stopped":
        assert time.monotonic() < deadline, "node 1 started from a WAL with a flipped byte"
        time.sleep(0.2)
    text = cluster.log(1)[log_before:]
    expected_line = (f"FATAL WAL is corrupt, refusing to start: {seg.resolve()}: "
                     f"record at byte offset {pos} has a bad CRC")
    assert expected_line in text, text
    assert "Traceback" not in text
    if up.returncode != 0:  # `up` saw node 1 exit: it must say why, with the same line
        assert "node 1 exited while starting" in up.stderr and expected_line in up.stderr, up.stderr
    assert seg.read_bytes() == bytes(data), "the refusing node changed its damaged WAL"
    # the other two nodes still form a cluster with every acknowledged write
    cluster.wait_leader()
    check_data(cluster, [0, 2], expected)
