"""The Python API of the compiled core: thin calls into `_core`, which Dafny generated.

Each name matches the Dafny definition it calls (ballot_lt is Ballots.BalLt, has_quorum is
Quorums.CheckQuorum, ...). This module converts; it must never decide.
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as err:  # only on an unbuilt source tree
    raise ImportError(
        "verikv's native core is not built: run `./dev build` "
        "(or `python -m verikv.verified_core.build`) in the source tree"
    ) from err

Ballot = tuple[int, int]

ballot_lt = _core.ballot_lt
ballot_le = _core.ballot_le
ballot_max = _core.ballot_max
next_ballot = _core.next_ballot
quorum_size = _core.quorum_size
count_acks = _core.count_acks
has_quorum = _core.has_quorum

__all__ = ["Ballot", "ballot_lt", "ballot_le", "ballot_max", "next_ballot", "quorum_size",
           "count_acks", "has_quorum"]
