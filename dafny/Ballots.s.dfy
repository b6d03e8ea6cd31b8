// Ballots: (round, node) pairs, totally ordered, round first. Every Paxos decision compares
// ballots; their laws are proven in Ballots.i.dfy (BallotFacts).
module Ballots {
  import opened Native

  datatype Ballot = Ballot(round: uint64, node: uint64)

  // The ballot no leader ever uses: every real ballot is above it.
  const Zero: Ballot := Ballot(0, 0)

  predicate BalLt(a: Ballot, b: Ballot) {
    a.round < b.round || (a.round == b.round && a.node < b.node)
  }

  predicate BalLe(a: Ballot, b: Ballot) {
    a == b || BalLt(a, b)
  }
}
