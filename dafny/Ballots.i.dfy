// The laws of the ballot order (Ballots.s.dfy), proven once, and the ballots a node takes.
module BallotFacts {
  import opened Native
  import opened Ballots

  // The ballot a node with id `me` uses to take over from a cluster that has seen `seen`:
  // the smallest of its own ballots that is above `seen`.
  function NextBallot(seen: Ballot, me: uint64): Ballot
    requires seen.round < UINT64_MAX
  {
    if seen.node < me then Ballot(seen.round, me) else Ballot(seen.round + 1, me)
  }

  lemma NextBallotIsAbove(seen: Ballot, me: uint64)
    requires seen.round < UINT64_MAX
    ensures BalLt(seen, NextBallot(seen, me))
    ensures NextBallot(seen, me).node == me
    ensures forall b: Ballot :: b.node == me && BalLt(seen, b) ==> BalLe(NextBallot(seen, me), b)
  {
  }

  lemma BalLtIrreflexive(a: Ballot)
    ensures !BalLt(a, a)
  {
  }

  lemma BalLtTransitive(a: Ballot, b: Ballot, c: Ballot)
    requires BalLt(a, b) && BalLt(b, c)
    ensures BalLt(a, c)
  {
  }

  lemma BalLtTotal(a: Ballot, b: Ballot)
    ensures BalLt(a, b) || a == b || BalLt(b, a)
  {
  }

  lemma BalLtAsymmetric(a: Ballot, b: Ballot)
    requires BalLt(a, b)
    ensures !BalLt(b, a) && !BalLe(b, a)
  {
  }

  lemma BalLeTransitive(a: Ballot, b: Ballot, c: Ballot)
    requires BalLe(a, b) && BalLe(b, c)
    ensures BalLe(a, c)
  {
  }

  // The larger of two ballots.
  function BalMax(a: Ballot, b: Ballot): (m: Ballot)
    ensures BalLe(a, m) && BalLe(b, m)
    ensures m == a || m == b
  {
    if BalLt(a, b) then b else a
  }
}
