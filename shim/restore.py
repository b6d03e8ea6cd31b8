"""`verikv snapshot restore FILE --data-dir DIR`: a new cluster's data directories from a snapshot
that `etcdctl snapshot save` took from a verikv node (Maintenance.Snapshot: the node's KV state,
then its sha256).

The snapshot's integrity is checked first (its sha256, then that it holds verikv's state and
that the state decodes, so that a snapshot saved from etcd, which has no `verikv` bucket, or a
cut download is refused with a message). Each node's
directory then holds a WAL whose snapshot is that state at its slot, and a core whose log starts
there, as a node that installed a peer's snapshot has: `verikv cluster up --data-dir DIR` starts
the cluster, which elects a leader and goes on from the snapshot's revision, with its history,
compaction point and leases.

This module must never write into a directory that already holds anything: restoring over a
running cluster's data would lose it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verikv snapshot", description="restore a snapshot into a new cluster")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("restore", help="build a new cluster's data directories from a snapshot file")
    r.add_argument("file", type=Path, help="a snapshot saved with `etcdctl snapshot save` from a verikv node")
    r.add_argument("--data-dir", type=Path, required=True,
                   help="the new cluster's directory (must not exist, or be empty); start it with "
                        "`verikv cluster up --data-dir DIR`")
    r.add_argument("--size", type=int, default=3, help="nodes in the new cluster (default 3)")
    return p


def restore(file: Path, data_dir: Path, size: int) -> str:
    """Build the directories; returns what was restored, or raises ValueError with a message."""
    from verikv.shim.io.wal import Wal
    from verikv.shim.kv import backup
    from verikv.shim.kv.store import KVStore
    from verikv.verified_core.core import Core

    try:
        data = file.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {file}: {err.strerror}") from None
    try:
        state = backup.decode(data)
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None
    try:
        store = KVStore.restore(state)
    except (ValueError, IndexError) as err:  # struct errors are ValueErrors too
        raise ValueError(f"{file}: not a verikv snapshot ({err})") from None
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(f"{data_dir} is not empty: restore into a new directory")
    if size < 1:
        raise ValueError("--size must be at least 1")
    slot = store.next_slot
    for i in range(size):
        core = Core(i, size)
        core.install_snapshot(slot)
        wal, _ = Wal.open(data_dir / f"node{i}" / "wal")
        try:
            wal.install_snapshot(slot, state, core.checkpoint_records())
        finally:
            wal.close()
    return (f"restored revision {store.revision} (compacted at {max(store.compact_revision, 0)}, "
            f"{store.key_count} keys, {len(store.leases.leases)} leases) into {data_dir}/node0..{size - 1}; "
            f"start it with: verikv cluster up --data-dir {data_dir}")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(restore(args.file, args.data_dir, args.size))
    except ValueError as err:
        print(f"verikv snapshot restore: {err}", file=sys.stderr)
        return 1
    return 0
