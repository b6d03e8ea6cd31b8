"""The saved-snapshot file: etcdctl's size rule (a multiple of 512, plus the sha256), and every
damage refused with what is wrong."""

import hashlib

import pytest

from verikv.shim.kv import backup


@pytest.mark.parametrize("size", [0, 1, 495, 496, 497, 5000])
def test_a_state_comes_back_from_a_file_of_etcdctls_shape(size):
    state = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = backup.encode(state)
    assert len(data) % 512 == 32 and backup.decode(data) == state


def test_damage_is_refused_with_what_is_wrong():
    data = backup.encode(b"state")
    with pytest.raises(ValueError, match="sha256 does not match"):
        backup.decode(data[:-1])
    with pytest.raises(ValueError, match="sha256 does not match"):
        backup.decode(data[:5] + b"X" + data[6:])
    foreign = b"\0" * 512
    with pytest.raises(ValueError, match="not a snapshot saved from verikv"):
        backup.decode(foreign + hashlib.sha256(foreign).digest())
    lying = backup.MAGIC + (10**6).to_bytes(8, "little") + bytes(496)
    with pytest.raises(ValueError, match="length field is larger"):
        backup.decode(lying + hashlib.sha256(lying).digest())
