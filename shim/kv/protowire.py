"""Protobuf's wire encoding of a varint, for the few answers and records the node encodes by hand
(a keep-alive's answer, a range's cached key-value, a watch's ID, a backup's lease), where
building a message object to serialize it would cost more than the bytes.

This module must never know any message: numbers in, bytes out.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]
_INT64 = 0xFFFF_FFFF_FFFF_FFFF


def varint(n: int) -> bytes:
    """`n` as protobuf writes an int64, uint64, enum or length: seven bits a byte, the lowest
    first; a negative number as its 64-bit two's complement (ten bytes)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if 0 < n < 0x4000:  # a length or a small TTL: two bytes, without the loop
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    n &= _INT64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_field(number: int, n: int) -> bytes:
    """Field `number` holding the varint `n`; nothing for 0, as proto3 writes."""
    return bytes((number << 3,)) + varint(n) if n else b""
