// The end-to-end theorem, for a human to read and trust: what the verified core promises to the
// node that drives it. Main.i.dfy refines this module with the proven code (ImplCluster), so
// Dafny checks that every method below meets the contract stated here.
//
// A reader must trust, besides the .s.dfy files this one imports:
// - that the node creates a Cluster with the constructor and calls only the methods below;
// - that the network delivers (Deliver) only packets that a returned Ready carried (each is in
//   Sent(); the network may drop, duplicate and reorder them);
// - that the node honours each Ready as Driver.s.dfy says (its records durable before its late
//   packets and commits leave or apply).
// Then every commit of every Ready returned agrees per slot with every other, and is a value some
// client proposed or the no-op (Safe).
// Not stated here: a restart of a replica from its durable records, and a crash part-way through
// a step (Restart, RestartFromCheckpoint, DeliverThenCrash, ... in ImplCluster.i.dfy): their
// preconditions speak of the proof's notions (a replica's emitted records), so they are members
// of the proof's class only, proved to keep the same invariant.
abstract module MainSpec {
  import opened Native
  import opened ImplTypes

  // The commits of the Readies agree per slot, and each is a proposed value or the no-op ([]).
  ghost predicate Safe(returned: seq<Ready>, proposed: set<Value>) {
    forall a, b, x, y | a in returned && b in returned && 0 <= x < |a.commits| && 0 <= y < |b.commits| ::
      && (a.commits[x].slot == b.commits[y].slot ==> a.commits[x].val == b.commits[y].val)
      && (a.commits[x].val == [] || a.commits[x].val in proposed)
  }

  class Cluster {
    const n: uint64
    ghost var Repr: set<object>

    ghost predicate Valid()
      reads this, Repr

    // Every packet sent so far: it holds those of every returned Ready (and may hold more).
    ghost function Sent(): set<Packet>
      requires Valid()
      reads this, Repr

    // Every value passed to Propose.
    ghost function Proposed(): set<Value>
      requires Valid()
      reads this, Repr

    // Every Ready returned, in order.
    ghost function Returned(): seq<Ready>
      requires Valid()
      reads this, Repr

    constructor (n: uint64, electionTicks: uint64, heartbeatTicks: uint64)
      requires 1 <= n <= 64
      requires 1 <= electionTicks <= 0x1_0000_0000 && 1 <= heartbeatTicks <= 0x1_0000_0000
      ensures Valid() && fresh(Repr) && this.n == n
      ensures Sent() == {} && Proposed() == {} && Returned() == []

    // The network delivers p to replica i.
    method Deliver(i: uint64, p: Packet) returns (r: Ready)
      requires Valid() && i < n && p in Sent()
      modifies Repr
      ensures Valid() && fresh(Repr - old(Repr))
      ensures Returned() == old(Returned()) + [r] && Proposed() == old(Proposed()) && old(Sent()) <= Sent()
      ensures forall q | q in r.early || q in r.packets :: q in Sent()
      ensures Safe(Returned(), Proposed())

    // A tick of replica i's clock.
    method Tick(i: uint64) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && fresh(Repr - old(Repr))
      ensures Returned() == old(Returned()) + [r] && Proposed() == old(Proposed()) && old(Sent()) <= Sent()
      ensures forall q | q in r.early || q in r.packets :: q in Sent()
      ensures Safe(Returned(), Proposed())

    // A client asks replica i to decide val.
    method Propose(i: uint64, val: Value) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && fresh(Repr - old(Repr))
      ensures Returned() == old(Returned()) + [r] && Proposed() == old(Proposed()) + {val} && old(Sent()) <= Sent()
      ensures forall q | q in r.early || q in r.packets :: q in Sent()
      ensures Safe(Returned(), Proposed())

    // Leader i starts confirming that it still leads (a read's confirmation).
    method ConfirmRead(i: uint64) returns (r: Ready, seqNo: uint64, readSlot: uint64)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && fresh(Repr - old(Repr))
      ensures Returned() == old(Returned()) + [r] && Proposed() == old(Proposed()) && old(Sent()) <= Sent()
      ensures forall q | q in r.early || q in r.packets :: q in Sent()
      ensures Safe(Returned(), Proposed())

    // Replica i drops the slots below upto (its state machine holds a snapshot of them).
    method Truncate(i: uint64, upto: uint64) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && fresh(Repr - old(Repr))
      ensures Returned() == old(Returned()) + [r] && Proposed() == old(Proposed()) && old(Sent()) <= Sent()
      ensures forall q | q in r.early || q in r.packets :: q in Sent()
      ensures Safe(Returned(), Proposed())

    // Replica i installs a snapshot of the slots below upto (from another member).
    method InstallSnapshot(i: uint64, upto: uint64) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && fresh(Repr - old(Repr))
      ensures Returned() == old(Returned()) + [r] && Proposed() == old(Proposed()) && old(Sent()) <= Sent()
      ensures forall q | q in r.early || q in r.packets :: q in Sent()
      ensures Safe(Returned(), Proposed())
  }
}
