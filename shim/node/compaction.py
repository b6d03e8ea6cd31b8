"""Automatic compaction, as etcd's `--auto-compaction-mode` and `--auto-compaction-retention`.

The history the KV store keeps grows with every write until a compaction: the leader proposes
one through the log when the retention says so, like any client's Compact (the store stays a pure
function of the log; only when to propose depends on this node's clock).
  revision  keep the last `retention` revisions: compact to (revision - retention) once that is
            at least a tenth of the retention past the last compaction (checked every second)
  periodic  keep `retention` seconds of history: the revision is sampled every tenth of the
            retention (at least every second), and the store compacted to the newest sample at
            least `retention` old
A retention of 0 turns automatic compaction off (etcd's default).

This module must never touch the KV state, the core or I/O: it says when and to what revision.
"""

from __future__ import annotations

import collections
import re

MODES = ("periodic", "revision")
CHECK_EVERY_S = 1.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_retention(mode: str, text: str) -> float:
    """etcd's reading of --auto-compaction-retention: a number of revisions (revision mode); in
    periodic mode a number of hours or a duration such as "30m" or "1h30m", in seconds. Raises
    ValueError with a message for the command line."""
    text = text.strip()
    if mode == "revision":
        if not text.isdigit():
            raise ValueError(f"--auto-compaction-retention {text!r}: revision mode needs a number of revisions")
        return float(int(text))
    if mode != "periodic":
        raise ValueError(f"--auto-compaction-mode {mode!r}: choose periodic or revision")
    try:
        hours = float(text)
    except ValueError:
        seconds = parse_duration(text)
        if seconds is None:
            raise ValueError(f"--auto-compaction-retention {text!r}: periodic mode needs hours or a "
                             "duration such as 30m or 1h30m") from None
        return seconds
    if hours < 0:
        raise ValueError(f"--auto-compaction-retention {text!r} is negative")
    return hours * 3600.0


def parse_duration(text: str) -> float | None:
    """A Go duration as etcd's flags take it ("10m", "1h30m", "45s", "500ms"), in seconds; None
    if `text` is not one."""
    pos, seconds = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return seconds if text and pos == len(text) else None


class AutoCompaction:
    """When to propose a compaction, and to which revision (see the module's text)."""

    def __init__(self, mode: str, retention: float):
        if mode not in MODES:
            raise ValueError(f"unknown auto-compaction mode {mode!r}")
        self.mode = mode
        self.retention = retention
        self._next_check = float("-inf")
        self._samples: collections.deque[tuple[float, int]] = collections.deque()  # (time, revision)
        self._floor = 0  # periodic: the revision of the newest sample at least `retention` old
        self._proposed = 0  # the last revision proposed by this node

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    def due(self, now: float, revision: int, compacted: int, leading: bool) -> int:
        """The revision to compact to now, or 0. Every node samples; only a leader proposes."""
        if not self.enabled:
            return 0
        if self.mode == "periodic":
            every = max(CHECK_EVERY_S, self.retention / 10)
            if now >= self._next_check:
                self._next_check = now + every
                self._samples.append((now, revision))
            while self._samples and self._samples[0][0] <= now - self.retention:
                self._floor = self._samples.popleft()[1]  # the newest sample at least `retention` old
            target = self._floor
        else:
            if now < self._next_check:
                return 0
            self._next_check = now + CHECK_EVERY_S
            target = revision - int(self.retention)
            if target - max(compacted, self._proposed) < max(1, int(self.retention) // 10):
                return 0
        if not leading or target <= max(compacted, self._proposed):
            return 0
        self._proposed = target
        return target
