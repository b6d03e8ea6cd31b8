"""The file `etcdctl snapshot save` stores from a verikv node (Maintenance.Snapshot), and its
reading back by `verikv snapshot restore`.

Layout: a magic, the KV state's length (8 bytes), the state (KVStore.snapshot()), zeros up to a
multiple of 512 bytes, then the sha256 of everything before it. etcdctl 3.4 refuses a download
whose size is not a multiple of 512 plus the 32 bytes of a sha256 (a bolt file's shape), and
etcd's restore checks the sha256: both hold here.

This module must never touch anything but the bytes it is given.
"""

from __future__ import annotations

import hashlib

MAGIC = b"VKBACKUP"
_PAGE = 512


def encode(state: bytes) -> bytes:
    """The whole file, sha256 included."""
    head = MAGIC + len(state).to_bytes(8, "little")
    body = head + state + bytes(-(len(head) + len(state)) % _PAGE)
    return body + hashlib.sha256(body).digest()


def decode(data: bytes) -> bytes:
    """The KV state in a file `encode` wrote; ValueError saying what is wrong otherwise."""
    body, digest = data[:-32], data[-32:]
    if len(data) < 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError("its sha256 does not match its contents (cut short, or not a snapshot saved from verikv)")
    if not body.startswith(MAGIC):
        raise ValueError("not a snapshot saved from verikv (an etcd snapshot is restored with "
                         "`etcdctl snapshot restore`)")
    length = int.from_bytes(body[len(MAGIC):len(MAGIC) + 8], "little")
    if len(MAGIC) + 8 + length > len(body):
        raise ValueError("its length field is larger than the file")
    return body[len(MAGIC) + 8:len(MAGIC) + 8 + length]
