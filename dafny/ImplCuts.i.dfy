// The Replica (Impl.i.dfy), part 5 of 7: the crash cuts of a whole step, the proofs that a
// crash part-way through one is a system step (the cuts and each kind's proof are ImplCrash's,
// Cr). A step under way (StepOk); the lemmas the whole steps (ImplSteps, which refines this
// module so that its methods can call them) use to keep every cut covered: the moment between
// two handlings is a point (PointHere), each handling is SyncFirst (HandledSyncFirst) and keeps
// every cut covered (StartCovered, ReceivedCovered, HandledCovered); and, at the end, a crash at
// a cut of a whole step is a system step (CrashPartWay, EveryCutIsCrashStep, QuietCrashPartWay).
abstract module ImplCuts refines ImplHandlers {
  import Prep = ImplPrepared      // Prepared, which a PromiseCut reads

  class Replica ... {
    // A step under way: it started from the state st (this host at h0, its packet log at log0)
    // and has run `moves` so far (RR.StepTrail, reading st.net and what it sent itself).
    ghost predicate StepOk(st: P.State, h0: P.Host, log0: seq<Packet>, moves: seq<RR.Move>)
      reads this, votes, committed
    {
      && PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0
      && RR.StepTrail(Consts(), me as nat, h0, log0, st.net, moves, AbsHost(), sentLog)
      && acked <= st.net + RR.SentBy(moves)
      && (forall p | p in log0 :: OT.OnWire(p, st.net))
    }

    // Once the trace is past FirstRecord (a record that needs a sync), the step's early packets
    // are those of t0, and it is synced.
    lemma FirstRecordSyncs(t0: seq<O.Out>, m: Msg, pr0: Ballot, ls0: uint64)
      requires Valid() && FirstRecord(m, pr0, ls0) != [] && t0 + FirstRecord(m, pr0, ls0) <= sofar.trace
      ensures out.sync && out.early == O.Early(me, t0)
    {
      var r := FirstRecord(m, pr0, ls0)[0].r;
      assert FirstRecord(m, pr0, ls0) == [O.Emitted(r)] && NeedsSync(r);
      O.EarlyBeforeSync(me, t0, r, sofar.trace);
      O.Snoc(me, t0, O.Emitted(r));
      O.Prefix(me, t0 + [O.Emitted(r)], sofar.trace);
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
    }

    // What Dispatch of m from this host itself did to the trace t0, as FirstRecord says.
    lemma FirstRecordDid(m: Msg, t0: seq<O.Out>, sq0: seq<Msg>, pr0: Ballot, ls0: uint64)
      requires FirstRecord(m, pr0, ls0) != []
      requires m.Prepare? ==> exists q: Packet :: sofar.trace == t0 + Cr.PromiseTrace(BalLt(pr0, m.bal), m.bal, q)
      requires m.Accept? ==> Cr.AcceptDid(t0, sofar.trace, sq0, selfQueue, me, me, pr0, m.bal, ls0, m.slot, m.val)
      ensures t0 + FirstRecord(m, pr0, ls0) <= sofar.trace
    {
      if m.Accept? && m.bal == pr0 && ls0 <= m.slot && m.slot - ls0 < WINDOW {
        Cr.AcceptDidIs(t0, sofar.trace, sq0, selfQueue, me, me, pr0, m.bal, ls0, m.slot, m.val);
        var q := Cr.AcceptAnswer(sofar.trace, t0, BalLt(m.bal, pr0), ls0, BalLt(pr0, m.bal), m.bal, m.slot, m.val);
        assert sofar.trace == t0 + [O.Emitted(RecVote(m.slot, m.bal, m.val))] + [O.Sent(q)];
      } else if m.Prepare? && BalLt(pr0, m.bal) {
        var q := Cr.PromiseAnswer(sofar.trace, t0, true, m.bal);
        assert sofar.trace == t0 + [O.Emitted(RecPromised(m.bal))] + [O.Sent(q)];
      }
    }

    // The moment between two handlings of a step under way is a point (Cr.PointOf): its run so
    // far, and its records so far, which rebuild its durable state (Replays()).
    lemma PointHere(st: P.State, h0: P.Host, log0: seq<Packet>, moves: seq<RR.Move>)
      requires Valid() && StepOk(st, h0, log0, moves) && log0 == sofar.sentBase
      ensures Cr.PointOf(Consts(), me as nat, h0, log0, st.net, sofar.recBase, sofar.trace, Cr.Point(moves, AbsHost(), sofar.trace))
      ensures recLog == sofar.recBase + O.Records(sofar.trace)
      ensures out.early == O.Early(me, sofar.trace) && out.sync == O.Synced(sofar.trace)
    {
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
    }

    // An Accept this host sent itself, on the wire of a state st it is part of, is at a ballot
    // it has promised (AcceptFromLeader, AcceptBelowLeaderPromise): handling it raises no promise.
    lemma SelfAcceptNotAbove(st: P.State, m: Msg)
      requires PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == AbsHost()
      requires m.Accept? && OT.OnWire(Packet(me, me, m), st.net)
      ensures !BalLt(promised, m.bal)
    {
      reveal PI.AcceptFromLeader(), PI.AcceptBelowLeaderPromise();
      assert S.Accept(me as nat, me as nat, m.bal, m.slot as nat, m.val) in st.net;
    }

    // A handling of m from the trace t0 (the record log rl0) on, as Dispatch ensures, with no
    // promise raised by an Accept: SyncFirst.
    lemma HandledSyncFirst(m: Msg, t0: seq<O.Out>, rl0: seq<Record>, sq0: seq<Msg>, src: uint64, pr0: Ballot, ls0: uint64)
      requires Valid() && rl0 == sofar.recBase + O.Records(t0)
      requires m.Prepare? ==> exists q: Packet :: sofar.trace == t0 + Cr.PromiseTrace(BalLt(pr0, m.bal), m.bal, q)
      requires m.Accept? ==> Cr.AcceptDid(t0, sofar.trace, sq0, selfQueue, me, src, pr0, m.bal, ls0, m.slot, m.val)
                              && !BalLt(pr0, m.bal)
      requires !m.Prepare? && !m.Accept? ==> rl0 <= recLog && forall j | |rl0| <= j < |recLog| :: !NeedsSync(recLog[j])
      ensures Cr.SyncFirst(me, t0, sofar.trace)
    {
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      if m.Prepare? {
        var q := Cr.PromiseAnswer(sofar.trace, t0, BalLt(pr0, m.bal), m.bal);
        Cr.PromiseTraceSyncFirst(me, t0, BalLt(pr0, m.bal), m.bal, q);
      } else if m.Accept? {
        Cr.AcceptDidIs(t0, sofar.trace, sq0, selfQueue, me, src, pr0, m.bal, ls0, m.slot, m.val);
        var q := Cr.AcceptAnswer(sofar.trace, t0, BalLt(m.bal, pr0), ls0, BalLt(pr0, m.bal), m.bal, m.slot, m.val);
        Cr.AcceptTraceSyncFirst(me, t0, BalLt(m.bal, pr0), ls0, m.bal, m.slot, m.val, q);
      } else {
        reveal Cr.SyncFirst();
        var r0, r1 := O.Records(t0), O.Records(sofar.trace);
        assert r0 == rl0[|sofar.recBase|..] && r1 == recLog[|sofar.recBase|..];
        forall j | |r0| <= j < |r1| ensures !NeedsSync(r1[j]) {
          assert r1[j] == recLog[|sofar.recBase| + j];
        }
      }
    }

    // A handling of a message this host sent itself, at the point pt0 (trace t0) of a step whose
    // every cut was covered: every cut is still covered (Cr.CoveredGrows).
    lemma HandledCovered(st: P.State, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>, m: Msg, t0: seq<O.Out>, pt0: Cr.Point,
                         rl0: seq<Record>, e0: seq<Packet>, s0: bool, sq0: seq<Msg>, pr0: Ballot, ls0: uint64)
      requires Valid() && sofar.recBase == recs0 && rl0 == recs0 + O.Records(t0)
      requires Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, recs0, t0)
      requires Cr.PointOf(Consts(), me as nat, h0, log0, st.net, recs0, t0, pt0) && pt0.trace == t0
      requires e0 == O.Early(me, t0) && s0 == O.Synced(t0) && (s0 ==> out.early == e0)
      requires m.Prepare? ==> exists q: Packet :: sofar.trace == t0 + Cr.PromiseTrace(BalLt(pr0, m.bal), m.bal, q)
      requires m.Accept? ==> Cr.AcceptDid(t0, sofar.trace, sq0, selfQueue, me, me, pr0, m.bal, ls0, m.slot, m.val)
                              && !BalLt(pr0, m.bal)
      requires !m.Prepare? && !m.Accept? ==> rl0 <= recLog && forall j | |rl0| <= j < |recLog| :: !NeedsSync(recLog[j])
      ensures Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, recs0, sofar.trace)
    {
      HandledSyncFirst(m, t0, rl0, sq0, me, pr0, ls0);
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      Cr.CoveredGrows(Consts(), me, h0, log0, st.net, recs0, t0, sofar.trace, pt0);
    }

    // A step whose first handling emitted no record that needs a sync but its first, sending
    // nothing early before it: every cut is covered (Cr.CoveredFromStart).
    lemma StartCovered(st: P.State, h0: P.Host, log0: seq<Packet>)
      requires Valid() && sofar.recBase <= recLog
      requires forall j | |sofar.recBase| < j < |recLog| :: !NeedsSync(recLog[j])
      requires |recLog| > |sofar.recBase| && NeedsSync(recLog[|sofar.recBase|]) ==> out.early == []
      ensures Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace)
    {
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      O.Empty(me);
      var r1 := O.Records(sofar.trace);
      assert r1 == recLog[|sofar.recBase|..];
      forall j | 0 < j < |r1| ensures !NeedsSync(r1[j]) {
        assert r1[j] == recLog[|sofar.recBase| + j];
      }
      if |r1| > 0 {
        assert r1[0] == recLog[|sofar.recBase|];
      }
      assert Cr.SyncFirst(me, [], sofar.trace) by {
        reveal Cr.SyncFirst();
      }
      Cr.CoveredFromStart(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace);
    }

    // Receive's handling of p from another member, from the step's start (as Dispatch ensures):
    // every cut is covered, from the start, or, for an Accept that raises the promise, Covered
    // or the PromiseCut (Cr.AcceptRaiseCovered).
    lemma ReceivedCovered(st: P.State, h0: P.Host, log0: seq<Packet>, p: Packet, pr0: Ballot, ls0: uint64, rl0: seq<Record>)
      requires Valid() && h0.promised == pr0 && p.dst == me && p.src != me && OT.OnWire(p, st.net)
      requires rl0 == sofar.recBase
      requires p.msg.Prepare? ==> exists q: Packet :: sofar.trace == [] + Cr.PromiseTrace(BalLt(pr0, p.msg.bal), p.msg.bal, q)
      requires p.msg.Accept? ==> Cr.AcceptDid([], sofar.trace, [], selfQueue, me, p.src, pr0, p.msg.bal, ls0, p.msg.slot, p.msg.val)
      requires !p.msg.Prepare? && !p.msg.Accept? ==> rl0 <= recLog && forall j | |rl0| <= j < |recLog| :: !NeedsSync(recLog[j])
      ensures Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace)
    {
      O.Empty(me);
      var m := p.msg;
      if m.Accept? && BalLt(pr0, m.bal) {
        Cr.AcceptDidIs([], sofar.trace, [], selfQueue, me, p.src, pr0, m.bal, ls0, m.slot, m.val);
        var q := Cr.AcceptAnswer(sofar.trace, [], BalLt(m.bal, pr0), ls0, BalLt(pr0, m.bal), m.bal, m.slot, m.val);
        assert sofar.trace == Cr.AcceptTrace(BalLt(m.bal, pr0), ls0, true, m.bal, m.slot, m.val, q);
        assert S.Accept(p.src as nat, me as nat, m.bal, m.slot as nat, m.val) in st.net;
        Cr.AcceptRaiseCovered(Consts(), me, h0, log0, st.net, sofar.recBase, BalLt(m.bal, pr0), ls0, m.bal, m.slot, m.val, q);
      } else {
        assert rl0 == sofar.recBase + O.Records([]);
        HandledSyncFirst(m, [], rl0, [], p.src, pr0, ls0);
        Cr.CoveredFromStart(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace);
      }
    }

    // A crash part-way through a whole step (Receive, Tick, Propose, ConfirmRead: after it,
    // StepOk and ReadyIs hold), the driver having made only its first k records durable, with
    // the packets that may have left by then (pkts) on the wire: for the cuts Cr.Covered, a
    // system step from the state the step began in (st, whose wire holds the packets sent
    // before) to the one whose host restarted from the records before the step (recs0, which
    // rebuilt its host h0 then: Replays()) and those k (Cr.CrashPartWay).
    lemma CrashPartWay(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                       moves: seq<RR.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && StepOk(st, h0, log0, moves) && ReadyIs(r, t, log0, recs0)
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires k <= |r.records|
      requires Cr.Covered(r.records, r.early, log0, k)
               || exists pt :: Cr.PointOf(Consts(), me as nat, h0, log0, st.net, recs0, t, pt) && Cr.CutAtPoint(me, t, log0, pt, k)
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      s' := CrashCut(st, wire, h0, log0, recs0, moves, r, t, k, pkts);
    }

    // A crash part-way through a whole step at any cut k: each whole step ensures that every
    // cut is covered (Cr.EveryCutCovered), and then the crash is a system step from the state
    // the step began in, as above, in every state where Prep.Prepared holds (every reachable one,
    // Prep.ImplPrepared), which a PromiseCut reads (Cr.EveryCutIsCrashStep).
    lemma EveryCutIsCrashStep(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                              moves: seq<RR.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && StepOk(st, h0, log0, moves) && ReadyIs(r, t, log0, recs0)
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires Prep.Prepared(Consts(), st)
      requires k <= |r.records| && Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, recs0, t)
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      var s := Sy.Sys(st, wire);
      O.EarlyThenLate(me, t);
      forall p | p in pkts ensures p in O.Early(me, t) || (Cr.AfterLastSync(O.Records(t), k) && p in O.Sends(t)) {
        if p !in r.early {
          assert p in O.Early(me, t) + O.Late(me, t);
          O.ToOthersSub(me, O.Sends(t), p);
        }
      }
      s' := Cr.EveryCutIsCrashStep(Consts(), s, me as nat, log0, recs0, moves, AbsHost(), t, k, pkts);
    }

    // The same for a step that sends nothing and is a run of its host's steps (Truncate,
    // InstallSnapshot: their RR.Run; FinishRecovery: the empty run), from any state st whose
    // host is at h0: it has no early packet, so the cut before its records is Covered too
    // (Truncate and InstallSnapshot emit at most one record, Cr.AtMostOne: every cut of theirs is
    // one of the two; FinishRecovery emits none).
    lemma QuietCrashPartWay(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                            moves: seq<RR.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && ReadyIs(r, t, log0, recs0) && sentLog == log0
      requires P.WF(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0
      requires RR.Run(Consts(), me as nat, h0, {}, moves, AbsHost())
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires k <= |r.records| && (k == 0 || Cr.AfterLastSync(r.records, k))
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      RR.RunStepTrail(Consts(), me as nat, h0, {}, st.net, moves, AbsHost(), sentLog);
      O.EarlyThenLate(me, t);
      assert O.Sends(t) == [] by {
        assert log0 + O.Sends(t) == log0 + [];
      }
      reveal O.ToOthers();
      assert r.early == [];
      s' := CrashCut(st, wire, h0, log0, recs0, moves, r, t, k, pkts);
    }

    // What the two lemmas above share: the step's trail from st, and its Ready.
    lemma CrashCut(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                   moves: seq<RR.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && ReadyIs(r, t, log0, recs0)
      requires P.WF(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0
      requires RR.StepTrail(Consts(), me as nat, h0, log0, st.net, moves, AbsHost(), sentLog)
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires k <= |r.records|
      requires Cr.Covered(r.records, r.early, log0, k)
               || exists pt :: Cr.PointOf(Consts(), me as nat, h0, log0, st.net, recs0, t, pt) && Cr.CutAtPoint(me, t, log0, pt, k)
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      var s := Sy.Sys(st, wire);
      O.EarlyThenLate(me, t);
      forall p | p in pkts ensures p in O.Early(me, t) || (Cr.AfterLastSync(O.Records(t), k) && p in O.Sends(t)) {
        if p !in r.early {
          assert p in O.Early(me, t) + O.Late(me, t);
          O.ToOthersSub(me, O.Sends(t), p);
        }
      }
      s' := Cr.CrashPartWay(Consts(), s, me as nat, log0, recs0, moves, AbsHost(), t, k, pkts);
    }
  }
}
