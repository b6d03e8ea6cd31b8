"""The compiled ballot and quorum functions agree with their definitions on random inputs.

The definitions restated here in Python are the Dafny ones (Ballots.s.dfy, Quorums.s.dfy, and
the executable ones in Ballots.i.dfy, Quorums.i.dfy); the functions under test are the
Dafny-extracted C++ in the extension.
"""

from hypothesis import given, strategies as st

from verikv.verified_core import core

U64 = st.integers(min_value=0, max_value=2**64 - 1)
SMALL = st.integers(min_value=0, max_value=3)  # collisions on purpose: equal rounds, equal nodes
BALLOT = st.tuples(st.one_of(SMALL, U64), st.one_of(SMALL, U64))


def definition_lt(a, b):
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])


@given(BALLOT, BALLOT)
def test_ballot_order_is_lexicographic_round_then_node(a, b):
    assert core.ballot_lt(a, b) == definition_lt(a, b)
    assert core.ballot_le(a, b) == (a == b or definition_lt(a, b))
    assert core.ballot_max(a, b) == max(a, b)


@given(BALLOT, BALLOT)
def test_ballot_order_is_total_and_strict(a, b):
    outcomes = [core.ballot_lt(a, b), a == b, core.ballot_lt(b, a)]
    assert outcomes.count(True) == 1, (a, b, outcomes)


@given(st.tuples(st.integers(0, 2**64 - 2), st.one_of(SMALL, U64)), st.one_of(SMALL, U64))
def test_next_ballot_is_the_smallest_own_ballot_above(seen, me):
    nxt = core.next_ballot(seen, me)
    assert nxt[1] == me
    assert definition_lt(seen, nxt)
    # the smallest: the same round if that is already above, else the next round
    expected = (seen[0], me) if seen[1] < me else (seen[0] + 1, me)
    assert nxt == expected


def test_next_ballot_refuses_an_exhausted_round():
    import pytest

    with pytest.raises(ValueError, match="exhausted"):
        core.next_ballot((2**64 - 1, 0), 1)


@given(U64)
def test_quorum_size_is_a_strict_majority(n):
    size = core.quorum_size(n)
    assert size == n // 2 + 1
    assert 2 * size > n  # two quorums always overlap
    assert 2 * (size - 1) <= n  # and it is the smallest such size


@given(st.lists(st.booleans(), max_size=64))
def test_has_quorum_matches_majority_of_flags(flags):
    assert core.count_acks(flags) == sum(flags)
    assert core.has_quorum(flags) == (2 * sum(flags) > len(flags))


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)),
                                                     st.sets(st.integers(0, n - 1)))))
def test_any_two_compiled_quorums_intersect(case):
    n, q1, q2 = case
    flags1 = [i in q1 for i in range(n)]
    flags2 = [i in q2 for i in range(n)]
    if core.has_quorum(flags1) and core.has_quorum(flags2):
        assert q1 & q2, (n, q1, q2)
