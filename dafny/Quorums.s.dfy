// Majority quorums over a fixed member set: what a quorum is. The one fact Paxos safety rests
// on, that any two quorums share a member, is proven in Quorums.i.dfy (QuorumFacts).
module Quorums {
  import opened Native

  ghost function QuorumSize(n: nat): nat {
    n / 2 + 1
  }

  ghost predicate IsQuorum<T>(members: set<T>, q: set<T>) {
    q <= members && |q| >= QuorumSize(|members|)
  }

  // The members 0 .. n-1 of a configuration of n.
  ghost function Indices(n: nat): set<nat> {
    if n == 0 then {} else Indices(n - 1) + {n - 1}
  }
}
