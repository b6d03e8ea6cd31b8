// Any two majorities of the same member set intersect (QuorumsIntersect), and the executable
// quorum test a leader runs over its acks equals the definition (CheckQuorum, HasQuorumIsQuorum).
module QuorumFacts {
  import opened Native
  import opened Quorums

  lemma UnionCardinality<T>(a: set<T>, b: set<T>)
    ensures |a + b| == |a| + |b| - |a * b|
  {
    if a != {} {
      var x :| x in a;
      var a' := a - {x};
      UnionCardinality(a', b);
      if x in b {
        assert a + b == (a' + b);
        assert a * b == (a' * b) + {x};
      } else {
        assert a + b == (a' + b) + {x};
        assert a * b == a' * b;
      }
    } else {
      assert a + b == b;
    }
  }

  lemma SubsetCardinality<T>(a: set<T>, b: set<T>)
    requires a <= b
    ensures |a| <= |b|
  {
    if a != {} {
      var x :| x in a;
      SubsetCardinality(a - {x}, b - {x});
    }
  }

  // Any two majorities of the same member set intersect.
  lemma QuorumsIntersect<T>(members: set<T>, q1: set<T>, q2: set<T>) returns (common: T)
    requires IsQuorum(members, q1) && IsQuorum(members, q2)
    ensures common in q1 && common in q2 && common in members
  {
    UnionCardinality(q1, q2);
    SubsetCardinality(q1 + q2, members);
    assert |q1 * q2| > 0;
    common :| common in q1 * q2;
  }

  // Executable side: members are the indices 0..n-1 of the configuration, and the acks
  // a leader has collected are a sequence of flags indexed by member.
  function QuorumSize64(n: uint64): (size: uint64)
    ensures size as nat == QuorumSize(n as nat)
  {
    n / 2 + 1
  }

  ghost function CountTrue(flags: seq<bool>): nat {
    if |flags| == 0 then 0 else CountTrue(flags[..|flags| - 1]) + (if flags[|flags| - 1] then 1 else 0)
  }

  ghost function FlagSet(flags: seq<bool>): set<nat> {
    if |flags| == 0 then {}
    else FlagSet(flags[..|flags| - 1]) + (if flags[|flags| - 1] then {|flags| - 1} else {})
  }

  lemma IndicesBound(n: nat)
    ensures forall i: nat :: i in Indices(n) <==> i < n
  {
    if n > 0 {
      IndicesBound(n - 1);
    }
  }

  lemma IndicesCardinality(n: nat)
    ensures |Indices(n)| == n
  {
    if n > 0 {
      IndicesBound(n - 1);
      IndicesCardinality(n - 1);
    }
  }

  lemma FlagSetCardinality(flags: seq<bool>)
    ensures |FlagSet(flags)| == CountTrue(flags)
    ensures FlagSet(flags) <= Indices(|flags|)
  {
    if |flags| > 0 {
      var init := flags[..|flags| - 1];
      FlagSetCardinality(init);
      IndicesBound(|init|);
      IndicesBound(|flags|);
    }
  }

  ghost predicate HasQuorum(flags: seq<bool>) {
    CountTrue(flags) >= QuorumSize(|flags|)
  }

  // The executable test and the ghost definition agree: the flagged members form a quorum
  // of the configuration exactly when HasQuorum says so.
  lemma HasQuorumIsQuorum(flags: seq<bool>)
    ensures HasQuorum(flags) <==> IsQuorum(Indices(|flags|), FlagSet(flags))
  {
    FlagSetCardinality(flags);
    IndicesCardinality(|flags|);
  }

  method CountAcks(flags: seq<bool>) returns (count: uint64)
    requires |flags| < 0x1_0000_0000
    ensures count as nat == CountTrue(flags)
  {
    count := 0;
    var i: uint64 := 0;
    while i < |flags| as uint64
      invariant i as nat <= |flags|
      invariant count as nat == CountTrue(flags[..i]) <= i as nat
    {
      assert flags[..i + 1][..i] == flags[..i];
      if flags[i] {
        count := count + 1;
      }
      i := i + 1;
    }
    assert flags[..|flags|] == flags;
  }

  method CheckQuorum(flags: seq<bool>) returns (ok: bool)
    requires |flags| < 0x1_0000_0000
    ensures ok == HasQuorum(flags)
  {
    var count := CountAcks(flags);
    ok := count >= QuorumSize64(|flags| as uint64);
  }
}
