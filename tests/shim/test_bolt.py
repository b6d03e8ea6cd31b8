"""bbolt's file format (shim/kv/bolt.py): what `write` builds reads back the same, through
branch pages and values that run over many pages; etcd's own reader (`etcdctl snapshot status`,
which runs bolt's consistency check over every page) accepts it; and a damaged file is refused
with a BoltError, never another exception or a hang."""

import hashlib
import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from verikv.shim.kv import bolt

ETCDCTL = shutil.which("etcdctl")


def sample() -> dict[bytes, list[tuple[bytes, bytes]]]:
    return {
        b"many": [(b"k%06d" % i, b"v" * (i % 97)) for i in range(20_000)],  # leaves under branches
        b"big": [(b"a", b"x" * 100_000), (b"b", b""), (b"c", bytes(range(256)) * 40)],  # overflow pages
        b"empty": [],
    }


def test_what_is_written_reads_back_the_same():
    buckets = sample()
    data = bolt.write(buckets)
    assert len(data) % bolt.PAGE_SIZE == 0
    assert bolt.buckets(data) == sorted(buckets)
    for name, items in buckets.items():
        assert list(bolt.read(data, name)) == items
    with pytest.raises(bolt.BoltError, match="no bucket 'nope'"):
        bolt.read(data, b"nope")


def test_keys_must_ascend():
    with pytest.raises(ValueError, match="not strictly ascending"):
        bolt.write({b"b": [(b"2", b""), (b"1", b"")]})
    with pytest.raises(ValueError, match="not strictly ascending"):
        bolt.write({b"b": [(b"1", b""), (b"1", b"")]})


@pytest.mark.skipif(ETCDCTL is None, reason="etcdctl is not installed")
def test_etcds_reader_checks_every_page_and_counts_every_key(tmp_path):
    buckets = sample()
    body = bolt.write(buckets)
    path = tmp_path / "snap.db"
    path.write_bytes(body + hashlib.sha256(body).digest())  # etcdctl's file: bolt, then its sha256
    res = subprocess.run([ETCDCTL, "snapshot", "status", str(path), "-w", "json"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["totalKey"] == sum(len(items) for items in buckets.values())
    assert status["totalSize"] == len(body)
    # etcdctl's hash: CRC-32C over each bucket's name, then its keys and values, in order
    assert status["hash"] == _crc32c(b"".join(name + b"".join(k + v for k, v in buckets[name])
                                              for name in sorted(buckets)))
    damaged = bytearray(body)
    damaged[bolt.PAGE_SIZE * 3 + 8] = bolt.FREELIST  # page 3, a leaf, said to be a freelist
    path.write_bytes(bytes(damaged))
    res = subprocess.run([ETCDCTL, "snapshot", "status", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0  # so the check above is one that can fail


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


SMALL = bolt.write({b"a": [(b"k%03d" % i, b"v" * i) for i in range(300)], b"b": [(b"x", b"y")]})


# anywhere, or in a page's first bytes (its header, the meta fields, the first elements)
AT = st.one_of(st.integers(0, len(SMALL) - 1),
               st.builds(lambda page, off: page * bolt.PAGE_SIZE + off,
                         st.integers(0, len(SMALL) // bolt.PAGE_SIZE - 1), st.integers(0, 95)))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(AT, st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(SMALL)))
def test_damage_is_refused_with_a_bolt_error(flips, cut):
    data = bytearray(SMALL)
    for at, b in flips:
        data[at] = b
    data = bytes(data[:cut])
    try:
        for name in bolt.buckets(data):
            list(bolt.read(data, name))
    except bolt.BoltError:
        pass  # the damage was seen; any other exception fails the test
