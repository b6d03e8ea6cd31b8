"""The operation history of a test run: what each client asked, when, and what it learned.

One `Op` per completed operation (invocation and completion folded together), with
times in milliseconds since the start of the run. `type` follows Jepsen:
  ok   - the operation took effect (and for reads/CAS, `result` says what it observed);
  fail - the operation certainly did NOT take effect (e.g. connection refused before sending);
  info - unknown (timeout, connection lost mid-request): it may take effect, at any time
         after its invocation, or never.
This module must never classify an uncertain outcome as `fail`: that would let the checker
accept lost writes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK, FAIL, INFO = "ok", "fail", "info"


@dataclass
class Op:
    process: int                 # logical client; a new one after every `info` (Jepsen rule)
    f: str                       # read | write | cas | add | final-read
    key: str | None
    value: Any                   # write: int; cas: [old, new]; add: int; reads: None
    invoke_ms: float
    complete_ms: float
    type: str = OK               # ok | fail | info
    result: Any = None           # read: int|None; cas: bool (swapped?); final-read: list[int]
    node: int | None = None      # index of the node the client talked to
    error: str | None = None
    id: int = -1

    @property
    def latency_ms(self) -> float:
        return self.complete_ms - self.invoke_ms

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "Op":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def short(self) -> str:
        """One-line human description, e.g. `p3 cas(k7, 4->9) ok=true [120.1, 130.5] ms`."""
        if self.f == "write":
            what = f"write({self.key}, {self.value})"
        elif self.f == "cas":
            what = f"cas({self.key}, {self.value[0]}->{self.value[1]})"
        elif self.f == "read":
            what = f"read({self.key})"
        else:
            what = f"{self.f}({self.key}, {self.value})"
        outcome = self.type
        if self.type == OK and self.f in ("read", "cas"):
            outcome = f"ok -> {json.dumps(self.result)}"
        return f"#{self.id} p{self.process} {what} {outcome} [{self.invoke_ms:.1f}, {self.complete_ms:.1f}] ms"


@dataclass
class History:
    """Thread-safe append-only list of ops."""

    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def append(self, op: Op) -> Op:
        with self._lock:
            op.id = len(self.ops)
            self.ops.append(op)
        return op

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w") as out:
            for op in self.snapshot():
                out.write(op.to_json() + "\n")
