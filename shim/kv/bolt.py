"""Files in bbolt's format (the B+tree file etcd keeps its backend in, and the one `etcdctl
snapshot save` stores): `write` builds one from buckets of sorted key/value pairs, `read`
walks one back. Only what a snapshot file needs: one transaction, no free pages, every bucket
a tree of its own pages (none inline).

The format, as bbolt 1.3 reads it (go.etcd.io/bbolt: page.go, db.go, bucket.go):
- 4096-byte pages; page N starts at byte N * 4096. Every page starts with a header: its id
  (u64), flags (u16: branch 0x01, leaf 0x02, meta 0x04, freelist 0x10), element count (u16)
  and the number of further pages it runs over (u32).
- Pages 0 and 1 are the two meta pages: magic 0xED0CDAED, version 2, page size, flags, the
  root bucket (its root page, sequence), the freelist page, the high-water mark (the first
  page id past the file's pages), the transaction id, and an FNV-1a-64 checksum of the fields
  before it. A reader takes the valid one with the higher transaction id.
- Page 2 is the (empty) freelist. Every other page below the high-water mark is reachable from
  the root exactly once: `bolt check`, which `etcdctl snapshot status` runs, says so.
- A leaf page holds elements of (flags, pos, ksize, vsize), pos counted from the element itself
  to its key, the value right after the key; flag 0x01 marks a value that is a bucket's header
  (its root page, sequence). A branch page holds (pos, ksize, child page) with each child's
  first key. Keys ascend within and across pages.

This module must never touch anything but the bytes it is given.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from verikv.shim.kv import steps

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF = 0x01

_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_LEAF = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH = struct.Struct("<IIQ")  # pos, ksize, pgid
_META = struct.Struct("<IIIIQQQQQ")  # magic, version, page size, flags, root, sequence, freelist, pgid, txid
_BUCKET = struct.Struct("<QQ")  # root page, sequence
_FREELIST_PAGE = 2
_MAX_COUNT = 0xFFFF  # a page's element count is a u16
STEP_PAGES = 1000  # leaf pages written between two yields of write_steps (a few ms here)


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _meta_page(pgid: int, root: int, high_water: int, txid: int) -> bytes:
    fields = _META.pack(MAGIC, VERSION, PAGE_SIZE, 0, root, 0, _FREELIST_PAGE, high_water, txid)
    body = _HEADER.pack(pgid, META, 0, 0) + fields + struct.pack("<Q", _fnv64a(fields))
    return body + bytes(PAGE_SIZE - len(body))


class _Pages:
    """Pages after the first three, numbered as they are added."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.next = 3

    def add(self, flags: int, count: int, body: bytes) -> int:
        pgid = self.next
        size = _HEADER.size + len(body)
        pages = -(-size // PAGE_SIZE)
        self.parts += [_HEADER.pack(pgid, flags, count, pages - 1), body, bytes(pages * PAGE_SIZE - size)]
        self.next += pages
        return pgid

    def leaf(self, items: list[tuple[bytes, bytes, int]]) -> int:
        """One leaf page of (key, value, flags)."""
        elems, data = [], []
        at = len(items) * _LEAF.size  # from the first element to the data
        for i, (k, v, flags) in enumerate(items):
            elems.append(_LEAF.pack(flags, at - i * _LEAF.size, len(k), len(v)))
            data += [k, v]
            at += len(k) + len(v)
        return self.add(LEAF, len(items), b"".join(elems) + b"".join(data))

    def branch(self, children: list[tuple[bytes, int]]) -> int:
        elems, data = [], []
        at = len(children) * _BRANCH.size
        for i, (k, pgid) in enumerate(children):
            elems.append(_BRANCH.pack(at - i * _BRANCH.size, len(k), pgid))
            data.append(k)
            at += len(k)
        return self.add(BRANCH, len(children), b"".join(elems) + b"".join(data))

    def tree(self, items: list[tuple[bytes, bytes, int]]):
        """The root page of a tree holding `items` (sorted by key, no key twice): leaves filled
        up to a page each (a large value runs over more pages), then branch levels up to one
        root. A generator that yields after every STEP_PAGES leaves; returns the root's id."""
        level = []
        for k, group in _groups(items, lambda it: _LEAF.size + len(it[0]) + len(it[1])):
            level.append((k, self.leaf(group)))
            if len(level) % STEP_PAGES == 0:
                yield
        if not level:
            return self.leaf([])
        while len(level) > 1:
            level = [(k, self.branch(group)) for k, group in _groups(level, lambda it: _BRANCH.size + len(it[0]))]
        return level[0][1]


def _groups(items: list, size_of) -> Iterator[tuple[bytes, list]]:
    """Runs of consecutive items that fill a page (at least one item each), with each run's
    first key."""
    group: list = []
    used = _HEADER.size
    last = None
    for item in items:
        if last is not None and item[0] <= last:
            raise ValueError(f"keys not strictly ascending: {item[0]!r} after {last!r}")
        last = item[0]
        size = size_of(item)
        if group and (used + size > PAGE_SIZE or len(group) == _MAX_COUNT):
            yield group[0][0], group
            group, used = [], _HEADER.size
        group.append(item)
        used += size
    if group:
        yield group[0][0], group


def write_steps(buckets: dict[bytes, list[tuple[bytes, bytes]]]):
    """A bolt file holding these buckets, each a list of (key, value) sorted by key with no key
    twice; ValueError if one is not. A generator that yields now and then (see _Pages.tree) and
    returns the file's bytes."""
    pages = _Pages()
    roots = []
    for name in sorted(buckets):
        root = yield from pages.tree([(k, v, 0) for k, v in buckets[name]])
        roots.append((name, _BUCKET.pack(root, 0), BUCKET_LEAF))
        yield
    root = yield from pages.tree(roots)
    freelist = _HEADER.pack(_FREELIST_PAGE, FREELIST, 0, 0) + bytes(PAGE_SIZE - _HEADER.size)
    return b"".join([_meta_page(0, root, pages.next, 0), _meta_page(1, root, pages.next, 1), freelist, *pages.parts])


def write(buckets: dict[bytes, list[tuple[bytes, bytes]]]) -> bytes:
    """write_steps at once."""
    return steps.run(write_steps(buckets))


# ---- reading ----

class BoltError(ValueError):
    pass


def _page(data: bytes, pgid: int) -> tuple[int, int, int]:
    """(offset, flags, count) of page `pgid`, checked to lie in the file with its own id."""
    off = pgid * PAGE_SIZE
    if pgid < 0 or off + _HEADER.size > len(data):
        raise BoltError(f"page {pgid} lies past the end of the file")
    got, flags, count, _ = _HEADER.unpack_from(data, off)
    if got != pgid:
        raise BoltError(f"page {pgid} says it is page {got}")
    return off, flags, count


def _root(data: bytes) -> int:
    """The root bucket's page, from the valid meta page with the higher transaction id."""
    best = None
    for pgid in (0, 1):
        off = pgid * PAGE_SIZE + _HEADER.size
        if off + _META.size + 8 > len(data):
            continue
        fields = data[off:off + _META.size]
        magic, version, page_size, _, root, _, _, _, txid = _META.unpack(fields)
        (checksum,) = struct.unpack_from("<Q", data, off + _META.size)
        if magic == MAGIC and version == VERSION and page_size == PAGE_SIZE and checksum == _fnv64a(fields):
            if best is None or txid > best[0]:
                best = (txid, root)
    if best is None:
        raise BoltError("not a bolt file (no valid meta page)")
    return best[1]


def _items(data: bytes, pgid: int, seen: set[int] | None = None) -> Iterator[tuple[bytes, bytes, int]]:
    """The (key, value, flags) of the tree at page `pgid`, in order; BoltError for a page out
    of the file, of another kind, or reached twice."""
    seen = set() if seen is None else seen
    if pgid in seen:
        raise BoltError(f"page {pgid} is reached twice")
    seen.add(pgid)
    off, flags, count = _page(data, pgid)
    size = _BRANCH.size if flags & BRANCH else _LEAF.size
    if off + _HEADER.size + count * size > len(data):
        raise BoltError(f"page {pgid}: its {count} elements run past the end of the file")
    if flags & BRANCH:
        for i in range(count):
            _, _, child = _BRANCH.unpack_from(data, off + _HEADER.size + i * _BRANCH.size)
            yield from _items(data, child, seen)
    elif flags & LEAF:
        for i in range(count):
            at = off + _HEADER.size + i * _LEAF.size
            eflags, pos, ksize, vsize = _LEAF.unpack_from(data, at)
            k = data[at + pos:at + pos + ksize]
            v = data[at + pos + ksize:at + pos + ksize + vsize]
            if len(k) != ksize or len(v) != vsize:
                raise BoltError(f"page {pgid}: an element runs past the end of the file")
            yield k, v, eflags
    else:
        raise BoltError(f"page {pgid} is neither a branch nor a leaf (flags {flags:#x})")


def buckets(data: bytes) -> list[bytes]:
    """The names of the top-level buckets."""
    return [k for k, _, flags in _items(data, _root(data)) if flags & BUCKET_LEAF]


def read(data: bytes, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of a top-level bucket, in key order; BoltError if the file is not
    a bolt file or has no such bucket (an inline bucket, which this module never writes, is
    read too)."""
    for k, v, flags in _items(data, _root(data)):
        if k == bucket and flags & BUCKET_LEAF:
            if len(v) < _BUCKET.size:
                raise BoltError(f"bucket {bucket.decode(errors='replace')!r}: its header is cut short")
            root, _ = _BUCKET.unpack_from(v)
            if root:
                return ((k2, v2) for k2, v2, _ in _items(data, root))
            page = v[_BUCKET.size:]  # an inline bucket: its leaf page follows its header
            return ((k2, v2) for k2, v2, _ in _items(bytes(page), 0))
    raise BoltError(f"no bucket {bucket.decode(errors='replace')!r}")
