"""What the harness tests use and the harness does not: histories written by hand, reading a
run's history back, and what a network nemesis left on the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from verikv.jepsen.history import Op
from verikv.jepsen.net import TABLE_PREFIX, PrivateNetwork, _run


def read_jsonl(path: Path) -> list[Op]:
    with open(path) as src:
        return [Op.from_dict(json.loads(line)) for line in src if line.strip()]


def make_ops(rows: Iterable[tuple]) -> list[Op]:
    """Compact constructor for hand-written histories in tests:
    (process, f, key, value, invoke_ms, complete_ms, type, result)."""
    ops = []
    for i, row in enumerate(rows):
        process, f, key, value, t0, t1, typ, result = row
        ops.append(Op(process=process, f=f, key=key, value=value, invoke_ms=t0, complete_ms=t1,
                      type=typ, result=result, id=i))
    return ops


def nft_rules(network: PrivateNetwork) -> str:
    """The nftables rules of a private network's table, as `nft list` prints them."""
    return _run(["nft", "list", "table", "bridge", network.table], check=False).stdout


def leftover_resources() -> list[str]:
    """Names of any harness tables, namespaces or bridges present on this machine."""
    found = []
    tables = _run(["nft", "list", "tables"], check=False).stdout
    found += [line.strip() for line in tables.splitlines() if TABLE_PREFIX in line]
    found += [n for n in _run(["ip", "netns", "list"], check=False).stdout.split() if n.startswith("vkj-")]
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if ": vkj" in line]
    return found
