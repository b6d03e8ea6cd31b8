// The proof of the end-to-end theorem (Main.s.dfy): a Cluster of the contract is an
// ImplCluster.Cluster (the proven composition of the replicas) and the ghost set of the values
// proposed. Every client's request in the run's network is of a proposed value (only Propose's
// ClientSends adds one: ImplCluster.Grew), so ImplCluster's AllAgree is Safe.
module Main refines MainSpec {
  import S = Spec
  import IC = ImplCluster

  // The Readies of the returned tuples (state, host, Ready).
  ghost function Readies(rs: seq<IC.Returned>): seq<Ready> {
    seq(|rs|, k requires 0 <= k < |rs| => rs[k].2)
  }

  lemma ReadiesAppend(rs: seq<IC.Returned>, e: IC.Returned)
    ensures Readies(rs + [e]) == Readies(rs) + [e.2]
  {
  }

  // Requests in net are of proposed values.
  ghost predicate RequestsProposed(net: set<S.Message>, proposed: set<Value>) {
    forall m | m in net && m.Request? :: m.val in proposed
  }

  lemma SafeOf(rs: seq<IC.Returned>, net: set<S.Message>, proposed: set<Value>)
    requires IC.AllAgree(rs, net) && RequestsProposed(net, proposed)
    ensures Safe(Readies(rs), proposed)
  {
    var out := Readies(rs);
    forall a, b, x, y | a in out && b in out && 0 <= x < |a.commits| && 0 <= y < |b.commits|
      ensures && (a.commits[x].slot == b.commits[y].slot ==> a.commits[x].val == b.commits[y].val)
              && (a.commits[x].val == [] || a.commits[x].val in proposed)
    {
      var ka :| 0 <= ka < |rs| && out[ka] == a;
      var kb :| 0 <= kb < |rs| && out[kb] == b;
      assert rs[ka] in rs && rs[kb] in rs;
      if a.commits[x].val != [] {
        assert S.Requested(net, a.commits[x].val);
        var m :| m in net && m.Request? && m.val == a.commits[x].val;
      }
    }
  }

  class Cluster ... {
    const inner: IC.Cluster
    ghost var proposed: set<Value>

    ghost predicate Valid() {
      && this in Repr && inner in Repr && Repr == {this} + inner.Repr && this !in inner.Repr
      && inner.Valid() && inner.n == n
      && RequestsProposed(inner.Last().abs.net, proposed)
    }

    ghost function Sent(): set<Packet> {
      inner.Last().wire
    }

    ghost function Proposed(): set<Value> {
      proposed
    }

    ghost function Returned(): seq<Ready> {
      Readies(inner.readies)
    }

    constructor (n: uint64, electionTicks: uint64, heartbeatTicks: uint64) {
      this.n := n;
      inner := new IC.Cluster(n, electionTicks, heartbeatTicks);
      proposed := {};
      new;
      Repr := {this} + inner.Repr;
    }

    method Deliver(i: uint64, p: Packet) returns (r: Ready) {
      ghost var rs0 := inner.readies;
      r := inner.Deliver(i, p);
      ReadiesAppend(rs0, (|inner.run| - 1, i as nat, r));
      reveal IC.Grew();
      SafeOf(inner.readies, inner.Last().abs.net, proposed);
    }

    method Tick(i: uint64) returns (r: Ready) {
      ghost var rs0 := inner.readies;
      r := inner.Tick(i);
      ReadiesAppend(rs0, (|inner.run| - 1, i as nat, r));
      reveal IC.Grew();
      SafeOf(inner.readies, inner.Last().abs.net, proposed);
    }

    method Propose(i: uint64, val: Value) returns (r: Ready) {
      ghost var rs0 := inner.readies;
      inner.Request(i as nat, val);
      proposed := proposed + {val};
      r := inner.ProposeRequested(i, val);
      ReadiesAppend(rs0, (|inner.run| - 1, i as nat, r));
      reveal IC.Grew();
      SafeOf(inner.readies, inner.Last().abs.net, proposed);
    }

    method ConfirmRead(i: uint64) returns (r: Ready, seqNo: uint64, readSlot: uint64) {
      ghost var rs0 := inner.readies;
      r, seqNo, readSlot := inner.ConfirmRead(i);
      ReadiesAppend(rs0, (|inner.run| - 1, i as nat, r));
      reveal IC.Grew();
      SafeOf(inner.readies, inner.Last().abs.net, proposed);
    }

    method Truncate(i: uint64, upto: uint64) returns (r: Ready) {
      ghost var rs0 := inner.readies;
      r := inner.Truncate(i, upto);
      ReadiesAppend(rs0, (|inner.run| - 1, i as nat, r));
      reveal IC.Grew();
      SafeOf(inner.readies, inner.Last().abs.net, proposed);
    }

    method InstallSnapshot(i: uint64, upto: uint64) returns (r: Ready) {
      ghost var rs0 := inner.readies;
      r := inner.InstallSnapshot(i, upto);
      ReadiesAppend(rs0, (|inner.run| - 1, i as nat, r));
      reveal IC.Grew();
      SafeOf(inner.readies, inner.Last().abs.net, proposed);
    }
  }
}
