"""The pending table of a node's client commands (shim/node/proposals.py): the acked_below each
command carries is always the lowest seq still waiting (what the dedup table may forget below),
whatever order the answers and timeouts come in."""

from hypothesis import given, settings, strategies as st

from verikv.shim.kv.commands import Command, Kind
from verikv.shim.kv.store import Outcome
from verikv.shim.node.proposals import Proposals


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(("add",)), st.tuples(st.just("answer"), st.integers(0, 30)),
                          st.tuples(st.just("scan"), st.floats(0, 20)), st.just(("fail",))), max_size=80))
def test_acked_below_is_the_lowest_seq_still_waiting(steps):
    p = Proposals(5, request_timeout_s=10.0, retry_after_s=1.0, max_pending=1000, max_batch_bytes=1 << 20)
    answered = []
    now = 0.0
    for step in steps:
        if step[0] == "add":
            p.add(Kind.PUT, b"", answered.append, now)
            carried = Command.decode(p.local[-1]).acked_below
            assert carried == min(p.waiting)  # the new one is waiting too
        elif step[0] == "answer" and p.waiting:
            seq = sorted(p.waiting)[step[1] % len(p.waiting)]
            p.answer([Outcome(Command(Kind.PUT, 5, seq, 0, b""), "ok", False)])
        elif step[0] == "scan":
            now += step[1]
            p.scan(now)
        elif step[0] == "fail":
            p.fail_all(RuntimeError("stopping"))
        assert p.acked_below() == (min(p.waiting) if p.waiting else p.next_seq)
