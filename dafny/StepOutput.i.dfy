// What one step of the replica did, in the order it did it, and what its Ready must therefore
// hold. A step's trace lists each packet it sent (to itself included) and each durable record
// it emitted. Impl.Replica keeps its output buffers equal to the functions below of the trace
// (OutTied, part of Valid()), and each step ensures StepReady: the Ready the node obeys is
// exactly what the step sent and emitted, split as the driver's contract needs:
// - early: the packets to other members sent before the step's first record that needs a sync;
//   they depend on no such record, so they may leave before the records are durable;
// - late: the packets to other members sent after it; they leave only once the records are
//   durable.
module StepOutput {
  import opened Native
  import opened ImplTypes

  datatype Out = Sent(p: Packet) | Emitted(r: Record)

  // A step under way: what it did so far, after the packet log and record log it began with.
  datatype Step = Step(trace: seq<Out>, sentBase: seq<Packet>, recBase: seq<Record>)

  opaque ghost function Sends(t: seq<Out>): seq<Packet> {
    if t == [] then [] else Sends(Front(t)) + (if Last(t).Sent? then [Last(t).p] else [])
  }

  opaque ghost function Records(t: seq<Out>): seq<Record> {
    if t == [] then [] else Records(Front(t)) + (if Last(t).Emitted? then [Last(t).r] else [])
  }

  // Some record of t must be durable before a packet sent after it may leave.
  opaque ghost predicate Synced(t: seq<Out>) {
    t != [] && (Synced(Front(t)) || (Last(t).Emitted? && NeedsSync(Last(t).r)))
  }

  // The packets to members other than me sent before any record of t that needs a sync.
  opaque ghost function Early(me: uint64, t: seq<Out>): seq<Packet> {
    if t == [] then []
    else Early(me, Front(t)) + (if ToOther(me, Last(t)) && !Synced(Front(t)) then [Last(t).p] else [])
  }

  // The packets to members other than me sent after a record of t that needs a sync.
  opaque ghost function Late(me: uint64, t: seq<Out>): seq<Packet> {
    if t == [] then []
    else Late(me, Front(t)) + (if ToOther(me, Last(t)) && Synced(Front(t)) then [Last(t).p] else [])
  }

  // The packets of ps to members other than me, in order.
  opaque ghost function ToOthers(me: uint64, ps: seq<Packet>): seq<Packet> {
    if ps == [] then [] else ToOthers(me, ps[..|ps| - 1]) + (if ps[|ps| - 1].dst != me then [ps[|ps| - 1]] else [])
  }

  ghost predicate ToOther(me: uint64, o: Out) {
    o.Sent? && o.p.dst != me
  }

  ghost function Front(t: seq<Out>): seq<Out>
    requires t != []
  {
    t[..|t| - 1]
  }

  ghost function Last(t: seq<Out>): Out
    requires t != []
  {
    t[|t| - 1]
  }

  // Early then late is every packet the step sent to another member, in order.
  // The functions above are opaque: a proof that uses them works through these lemmas.
  lemma Empty(me: uint64)
    ensures Sends([]) == [] && Records([]) == [] && !Synced([]) && Early(me, []) == [] && Late(me, []) == []
  {
    reveal Sends(), Records(), Synced(), Early(), Late();
  }

  lemma EarlyThenLate(me: uint64, t: seq<Out>)
    ensures Early(me, t) + Late(me, t) == ToOthers(me, Sends(t))
  {
    reveal Sends(), Synced(), Early(), Late(), ToOthers();
    if t != [] {
      EarlyThenLate(me, Front(t));
      if !Synced(Front(t)) {
        NoSyncNoLate(me, Front(t));
      } else {
        SyncedEarlyStops(me, t);
      }
      ToOthersSnoc(me, Sends(Front(t)), Last(t));
    }
  }

  lemma NoSyncNoLate(me: uint64, t: seq<Out>)
    requires !Synced(t)
    ensures Late(me, t) == []
  {
    reveal Synced(), Late();
    if t != [] {
      NoSyncNoLate(me, Front(t));
    }
  }

  lemma SyncedEarlyStops(me: uint64, t: seq<Out>)
    requires t != [] && Synced(Front(t))
    ensures Early(me, t) == Early(me, Front(t))
  {
    reveal Early();
  }

  lemma ToOthersSnoc(me: uint64, ps: seq<Packet>, o: Out)
    ensures ToOthers(me, ps + (if o.Sent? then [o.p] else []))
            == ToOthers(me, ps) + (if ToOther(me, o) then [o.p] else [])
  {
    reveal ToOthers();
    if o.Sent? {
      var qs := ps + [o.p];
      assert qs[..|qs| - 1] == ps && qs[|qs| - 1] == o.p;
    } else {
      assert ps + [] == ps;
    }
  }

  // Appending one output: each function grows by what that output contributes.
  lemma Snoc(me: uint64, t: seq<Out>, o: Out)
    ensures Front(t + [o]) == t && Last(t + [o]) == o
    ensures Sends(t + [o]) == Sends(t) + (if o.Sent? then [o.p] else [])
    ensures Records(t + [o]) == Records(t) + (if o.Emitted? then [o.r] else [])
    ensures Synced(t + [o]) == (Synced(t) || (o.Emitted? && NeedsSync(o.r)))
    ensures Early(me, t + [o]) == Early(me, t) + (if ToOther(me, o) && !Synced(t) then [o.p] else [])
    ensures Late(me, t + [o]) == Late(me, t) + (if ToOther(me, o) && Synced(t) then [o.p] else [])
  {
    reveal Sends(), Records(), Synced(), Early(), Late();
    assert (t + [o])[..|t|] == t;
  }

  // A longer trace: its packets and records extend those of t.
  lemma Prefix(me: uint64, t: seq<Out>, t': seq<Out>)
    requires t <= t'
    ensures Sends(t) <= Sends(t') && Records(t) <= Records(t')
    ensures Synced(t) ==> Synced(t') && Early(me, t') == Early(me, t)
    decreases |t'|
  {
    if |t'| > |t| {
      var f := Front(t');
      assert t <= f;
      Prefix(me, t, f);
      Snoc(me, f, Last(t'));
      assert f + [Last(t')] == t';
    } else {
      assert t == t';
    }
  }

  // Once a record that needs a sync is in a trace, its early packets are those sent before it.
  lemma EarlyBeforeSync(me: uint64, t: seq<Out>, r: Record, t': seq<Out>)
    requires t + [Emitted(r)] <= t' && NeedsSync(r)
    ensures Early(me, t') == Early(me, t)
    ensures forall p | p in Early(me, t') :: p in Sends(t)
  {
    Snoc(me, t, Emitted(r));
    Prefix(me, t + [Emitted(r)], t');
    EarlyThenLate(me, t);
    forall p | p in Early(me, t) ensures p in Sends(t) {
      assert p in ToOthers(me, Sends(t));
      ToOthersSub(me, Sends(t), p);
    }
  }

  lemma ToOthersSub(me: uint64, ps: seq<Packet>, p: Packet)
    requires p in ToOthers(me, ps)
    ensures p in ps
    decreases |ps|
  {
    reveal ToOthers();
    if ps != [] {
      var front := ps[..|ps| - 1];
      if p in ToOthers(me, front) {
        ToOthersSub(me, front, p);
        assert front <= ps;
      }
    }
  }

  // A trace that is not Synced emitted no record that needs a sync.
  lemma UnsyncedRecords(t: seq<Out>)
    requires !Synced(t)
    ensures forall i | 0 <= i < |Records(t)| :: !NeedsSync(Records(t)[i])
  {
    reveal Synced(), Records();
    if t != [] {
      UnsyncedRecords(Front(t));
    }
  }
}
