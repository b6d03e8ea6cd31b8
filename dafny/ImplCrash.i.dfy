// A crash part-way through a step of the core: the driver made only a prefix of the step's
// records durable (the first k, the cut), and of its packets only some left (its early ones, or
// all of them once the records that need a sync are durable). Which cuts leave a state the
// protocol reaches: each lemma here shows that the restart (the host rebuilt from the records
// before the step and the first k of the step's, R.ApplyAll), with those packets on the wire,
// is one system step (ImplSystem.ImplCrashStep: a run of the host's protocol steps, then the
// protocol's Crash). Replica.CrashPartWay (ImplCuts.i.dfy) applies them to a whole step (its
// StepOk and ReadyIs). The cuts covered: every cut at or after the step's last record that
// needs a sync (the crash comes after the step's whole run: what the cut loses is commit
// records), and the cut before the step's first record when every early packet is one sent
// before the step (Covered); and the cut after a first record that raises the promise
// (PromiseCut: the protocol's ReceivePrepare, then Crash), which OnAccept's vote has when it
// raises its promise (Impl's Receive proves which cuts its Prepare and Accept steps have); and
// a cut at a point part-way through the step (CutAtPoint). Every cut of a whole step is one of
// these (EveryCutCovered, which Impl's whole steps ensure; EveryCutIsCrashStep, in every state
// where the Prepare a PromiseCut reads was sent: ImplPrepared.i.dfy).
module ImplCrash {
  import opened Native
  import opened ImplTypes
  import opened ImplBounds
  import opened Ballots
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import RM = ImplAbsMessages
  import RR = ImplAbsRuns
  import O = StepOutput
  import Rep = ImplReplay
  import Sy = ImplSystem
  import Prep = ImplPrepared      // the Prepare a PromiseCut reads

  // The host a restart rebuilds from the durable records recs (Impl's Replays()).
  ghost function Rebuilt(recs: seq<Record>): P.Host {
    R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat)
  }

  // The cut k of a step's records rs comes after every one of them that needs a sync.
  ghost predicate AfterLastSync(rs: seq<Record>, k: nat) {
    k <= |rs| && forall j | k <= j < |rs| :: !NeedsSync(rs[j])
  }

  // A step's records rs are at most one record (Truncate's and InstallSnapshot's: the one that
  // moves the log's start), so every cut of it is before all of them or after all of them
  // (EveryQuietCut). Opaque: the steps' callers that do not cut them see only the name.
  opaque ghost predicate AtMostOne(rs: seq<Record>) {
    |rs| <= 1
  }

  lemma EveryQuietCut(rs: seq<Record>, k: nat)
    requires AtMostOne(rs) && k <= |rs|
    ensures k == 0 || AfterLastSync(rs, k)
  {
    reveal AtMostOne();
  }

  // The cuts proven: after the last record that needs a sync, or before every record when the
  // step's early packets (those that may leave before its records are durable) were all sent
  // before the step (in log0).
  ghost predicate Covered(rs: seq<Record>, early: seq<Packet>, log0: seq<Packet>, k: nat) {
    AfterLastSync(rs, k) || (k == 0 && forall p | p in early :: p in log0)
  }

  // The packets that may have left by the crash: the early ones, and after the last record that
  // needs a sync, any of the step's.
  ghost predicate MayHaveLeft(rs: seq<Record>, early: seq<Packet>, sent: seq<Packet>, k: nat, pkts: seq<Packet>) {
    forall p | p in pkts :: p in early || (AfterLastSync(rs, k) && p in sent)
  }

  // An early packet is one of the step's packets.
  lemma EarlyIsSent(me: uint64, t: seq<O.Out>, p: Packet)
    requires p in O.Early(me, t)
    ensures p in O.Sends(t)
  {
    O.EarlyThenLate(me, t);
    assert p in O.Early(me, t) + O.Late(me, t);
    O.ToOthersSub(me, O.Sends(t), p);
  }

  // Cutting after the last record that needs a sync loses only commit records.
  lemma CutLosesCommits(recs0: seq<Record>, rs: seq<Record>, k: nat)
    requires AfterLastSync(rs, k)
    ensures R.LosesCommits(recs0 + rs, recs0 + rs[..k])
  {
    var all, cut := recs0 + rs, recs0 + rs[..k];
    assert all[..|cut|] == cut;
    forall j | |cut| <= j < |all| ensures all[j].RecCommit? || all[j].RecLearn? {
      assert all[j] == rs[j - |recs0|];
      assert !NeedsSync(rs[j - |recs0|]);
    }
  }

  // A cut after the step's last record that needs a sync: the host took the step's whole run
  // (its trail from s, ending at h with the packet log log0 + Sends(t), which Rebuilt(recs0 +
  // Records(t)) rebuilds), then crashed, losing the commit records after the cut.
  lemma CrashAfterRun(c: P.Constants, s: Sy.Sys, i: nat, log0: seq<Packet>, recs0: seq<Record>, moves: seq<RR.Move>,
                      h: P.Host, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts| && (forall p | p in log0 :: p in s.wire)
    requires RR.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log0 + O.Sends(t))
    requires Rebuilt(recs0 + O.Records(t)) == h.(leader := P.NotLeader)
    requires AfterLastSync(O.Records(t), k) && forall p | p in pkts :: p in O.Sends(t) || p in log0
    ensures Sy.ImplNext(c, s, s')
    ensures s'.abs.hosts == s.abs.hosts[i := Rebuilt(recs0 + O.Records(t)[..k])]
    ensures s'.wire == s.wire + (set j | 0 <= j < |pkts| :: pkts[j])
  {
    var log := log0 + O.Sends(t);
    var d := Rebuilt(recs0 + O.Records(t)[..k]);
    RR.StepTrailIs(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log);
    forall j | 0 <= j < |pkts|
      ensures (RM.PacketRefines(pkts[j], RR.SentBy(moves)) && RM.LearnBacked(pkts[j], RR.SentBy(moves), s.abs.net + RR.SentBy(moves)))
              || pkts[j] in s.wire
    {
      assert pkts[j] in pkts;
      if pkts[j] !in log0 {
        assert pkts[j] in O.Sends(t);
        var m :| 0 <= m < |O.Sends(t)| && O.Sends(t)[m] == pkts[j];
        assert log[|log0| + m] == pkts[j];
      }
    }
    var mid := Sy.After(s, i, h, moves, pkts);
    assert Sy.ImplStep(c, s, mid, i, s.abs.net, moves, h, pkts);
    CutLosesCommits(recs0, O.Records(t), k);
    R.LosingCommits(Rep.InitHost(), recs0 + O.Records(t), recs0 + O.Records(t)[..k], WINDOW as nat, SLOT_LIMIT as nat);
    Rep.ApplyAllKeepsNotLeader(recs0 + O.Records(t)[..k]);
    assert P.Crash(c, i, h, d, {});
    s' := Sy.Restarted(mid, i, d);
    assert Sy.ImplCrashStep(c, s, s', i, s.abs.net, moves, h, pkts, d);
    assert s.abs.hosts[i := h][i := d] == s.abs.hosts[i := d];
  }

  // The cut before the step's first record: the host crashed where the step began (its
  // records rebuild it, Replays()), and only packets already on the wire left again.
  lemma CrashBeforeStep(c: P.Constants, s: Sy.Sys, i: nat, recs0: seq<Record>, rs: seq<Record>, pkts: seq<Packet>)
    returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts|
    requires Rebuilt(recs0) == s.abs.hosts[i].(leader := P.NotLeader)
    requires forall p | p in pkts :: p in s.wire
    ensures Sy.ImplNext(c, s, s')
    ensures s'.abs.hosts == s.abs.hosts[i := Rebuilt(recs0 + rs[..0])]
    ensures s'.wire == s.wire + (set j | 0 <= j < |pkts| :: pkts[j])
  {
    var h := s.abs.hosts[i];
    assert recs0 + rs[..0] == recs0;
    var d := Rebuilt(recs0);
    RR.RunNil(c, i, h, s.abs.net);
    RR.RunGOf(c, i, h, s.abs.net, s.abs.net, [], h);
    assert RR.SentBy([]) == {};
    var mid := Sy.After(s, i, h, [], pkts);
    assert s.abs.hosts[i := h] == s.abs.hosts;
    assert Sy.ImplStep(c, s, mid, i, s.abs.net, [], h, pkts);
    Rep.ApplyAllKeepsNotLeader(recs0);
    assert P.Crash(c, i, h, d, {});
    s' := Sy.Restarted(mid, i, d);
    assert Sy.ImplCrashStep(c, s, s', i, s.abs.net, [], h, pkts, d);
  }

  // Every cut of the records rs is Covered.
  ghost predicate AllCovered(rs: seq<Record>, early: seq<Packet>, log0: seq<Packet>) {
    forall k: nat | k <= |rs| :: Covered(rs, early, log0, k)
  }

  // What a host that handles a Prepare(b) does (Impl's OnPrepare): the record of its promise,
  // when it raises its promise, then its answer q.
  ghost function PromiseTrace(raise: bool, b: Ballot, q: Packet): seq<O.Out> {
    (if raise then [O.Emitted(RecPromised(b))] else []) + [O.Sent(q)]
  }

  // The answer of a PromiseTrace that t continues t0 with (a lemma, so that the Replica's methods
  // need no `:|` statement: see the head of Impl.i.dfy).
  lemma PromiseAnswer(t: seq<O.Out>, t0: seq<O.Out>, raise: bool, b: Ballot) returns (q: Packet)
    requires exists q :: t == t0 + PromiseTrace(raise, b, q)
    ensures t == t0 + PromiseTrace(raise, b, q)
  {
    q :| t == t0 + PromiseTrace(raise, b, q);
  }

  // Every cut of such a step is Covered: its answer leaves after the promise's record.
  lemma PromiseTraceCovered(me: uint64, raise: bool, b: Ballot, q: Packet, log0: seq<Packet>)
    ensures AllCovered(O.Records(PromiseTrace(raise, b, q)), O.Early(me, PromiseTrace(raise, b, q)), log0)
  {
    var t := PromiseTrace(raise, b, q);
    O.Empty(me);
    if raise {
      var t1 := [O.Emitted(RecPromised(b))];
      O.Snoc(me, [], O.Emitted(RecPromised(b)));
      assert [] + [O.Emitted(RecPromised(b))] == t1;
      O.Snoc(me, t1, O.Sent(q));
      assert t == t1 + [O.Sent(q)];
      assert O.Records(t) == [RecPromised(b)] && O.Early(me, t) == [];
    } else {
      O.Snoc(me, [], O.Sent(q));
      assert t == [] + [O.Sent(q)];
      assert O.Records(t) == [];
    }
  }

  // THEOREM (a crash part-way through a step, for the cuts Covered): a step of host i from s
  // (its trail: the run moves to h, its packet log log0 + Sends(t); the records before it,
  // recs0, rebuild its host in s, and recs0 + Records(t) the host it reached) cut at k, with
  // the packets pkts that may have left by then on the wire, is a system step to the state
  // whose host i is the one a restart rebuilds from recs0 and the step's first k records.
  lemma CrashPartWay(c: P.Constants, s: Sy.Sys, i: nat, log0: seq<Packet>, recs0: seq<Record>, moves: seq<RR.Move>,
                     h: P.Host, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts| && i <= UINT64_MAX as nat && (forall p | p in log0 :: p in s.wire)
    requires RR.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log0 + O.Sends(t))
    requires Rebuilt(recs0) == s.abs.hosts[i].(leader := P.NotLeader)
    requires Rebuilt(recs0 + O.Records(t)) == h.(leader := P.NotLeader)
    requires k <= |O.Records(t)|
    requires Covered(O.Records(t), O.Early(i as uint64, t), log0, k)
             || exists pt :: PointOf(c, i, s.abs.hosts[i], log0, s.abs.net, recs0, t, pt) && CutAtPoint(i as uint64, t, log0, pt, k)
    requires MayHaveLeft(O.Records(t), O.Early(i as uint64, t), O.Sends(t), k, pkts)
    ensures Sy.ImplNext(c, s, s')
    ensures s'.abs.hosts == s.abs.hosts[i := Rebuilt(recs0 + O.Records(t)[..k])]
    ensures s'.wire == s.wire + (set j | 0 <= j < |pkts| :: pkts[j])
  {
    var me := i as uint64;
    if AfterLastSync(O.Records(t), k) {
      forall p | p in pkts ensures p in O.Sends(t) {
        if p in O.Early(me, t) {
          EarlyIsSent(me, t, p);
        }
      }
      s' := CrashAfterRun(c, s, i, log0, recs0, moves, h, t, k, pkts);
    } else if Covered(O.Records(t), O.Early(me, t), log0, k) {
      s' := CrashBeforeStep(c, s, i, recs0, O.Records(t), pkts);
    } else {
      var pt :| PointOf(c, i, s.abs.hosts[i], log0, s.abs.net, recs0, t, pt) && CutAtPoint(me, t, log0, pt, k);
      s' := CrashAfterRun(c, s, i, log0, recs0, pt.moves, pt.host, pt.trace, k, pkts);
    }
  }

  // ---------------------------------------------------------------------------------------
  // A point part-way through a step, between two of its host's protocol moves: a crash there,
  // with some of the records emitted so far durable, is the run so far, then Crash. Which cuts
  // of a step such a point covers: those whose packets (the step's early ones) had all been
  // sent by then, with only records that need no sync between the cut and the point.

  // The run so far (moves, to host) and the trace so far.
  datatype Point = Point(moves: seq<RR.Move>, host: P.Host, trace: seq<O.Out>)

  // pt is a point of the step of host i that began at h0 (its packet log log0, its record log
  // recs0, reading net) and did t: the run to it is a trail whose packets are the trace's so
  // far, and the records so far rebuild its durable state.
  ghost predicate PointOf(c: P.Constants, i: nat, h0: P.Host, log0: seq<Packet>, net: set<S.Message>, recs0: seq<Record>,
                          t: seq<O.Out>, pt: Point) {
    && RR.StepTrail(c, i, h0, log0, net, pt.moves, pt.host, log0 + O.Sends(pt.trace))
    && Rebuilt(recs0 + O.Records(pt.trace)) == pt.host.(leader := P.NotLeader)
  }

  // The cut k is one the point covers: the step's first k records are the point's, the
  // point's records from k on need no sync, and every early packet of the step had been sent
  // by then (or before the step).
  ghost predicate CutAtPoint(me: uint64, t: seq<O.Out>, log0: seq<Packet>, pt: Point, k: nat) {
    && k <= |O.Records(pt.trace)| && k <= |O.Records(t)| && O.Records(t)[..k] == O.Records(pt.trace)[..k]
    && AfterLastSync(O.Records(pt.trace), k)
    && forall p | p in O.Early(me, t) :: p in O.Sends(pt.trace) || p in log0
  }

  // ---------------------------------------------------------------------------------------
  // The cut between a promise record and what follows it (OnAccept raising its promise, then
  // voting): the durable state is the protocol's ReceivePrepare of a Prepare of that ballot.

  // The cut after the step's first record, a promise raised from p0, when the step sent
  // nothing new early.
  ghost predicate PromiseCut(rs: seq<Record>, early: seq<Packet>, log0: seq<Packet>, k: nat, p0: Ballot) {
    k == 1 && |rs| >= 1 && rs[0].RecPromised? && BalLe(p0, rs[0].bal) && forall p | p in early :: p in log0
  }

  // A step whose first record raises the promise to b, cut after it: the host took the
  // protocol's ReceivePrepare of a Prepare(b) sent to it (whose Promise never left), then
  // crashed; only packets already on the wire left.
  lemma CrashAtPromise(c: P.Constants, s: Sy.Sys, i: nat, recs0: seq<Record>, rs: seq<Record>, pkts: seq<Packet>, x: nat)
    returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts|
    requires Rebuilt(recs0) == s.abs.hosts[i].(leader := P.NotLeader)
    requires |rs| >= 1 && rs[0].RecPromised? && BalLe(s.abs.hosts[i].promised, rs[0].bal)
    requires S.Prepare(x, i, rs[0].bal) in s.abs.net
    requires forall p | p in pkts :: p in s.wire
    ensures Sy.ImplNext(c, s, s')
    ensures s'.abs.hosts == s.abs.hosts[i := Rebuilt(recs0 + rs[..1])]
    ensures s'.wire == s.wire + (set j | 0 <= j < |pkts| :: pkts[j])
  {
    var h, b := s.abs.hosts[i], rs[0].bal;
    var m := S.Prepare(x, i, b);
    var h1 := h.(promised := b);
    var mv := RR.Move(P.ReceivePrepareStep(m, 0), {S.Promise(i, x, b, h.logStart, P.VotesFrom(h.votes, h.logStart))}, h1);
    assert P.HostStep(c, i, h, h1, s.abs.net, mv.sent, mv.step);
    RR.RunOne(c, i, h, s.abs.net, mv);
    RR.RunGOf(c, i, h, s.abs.net, s.abs.net, [mv], h1);
    var mid := Sy.After(s, i, h1, [mv], pkts);
    assert Sy.ImplStep(c, s, mid, i, s.abs.net, [mv], h1, pkts);
    assert recs0 + rs[..1] == recs0 + [rs[0]];
    R.ApplyAllSnoc(Rep.InitHost(), recs0, rs[0], WINDOW as nat, SLOT_LIMIT as nat);
    var d := Rebuilt(recs0 + rs[..1]);
    assert d == h1.(leader := P.NotLeader);
    assert P.Crash(c, i, h1, d, {});
    s' := Sy.Restarted(mid, i, d);
    assert Sy.ImplCrashStep(c, s, s', i, s.abs.net, [mv], h1, pkts, d);
    assert s.abs.hosts[i := h1][i := d] == s.abs.hosts[i := d];
  }

  // What a host that handles an Accept(b, slot, val) does (Impl's OnAccept): refuse it with an
  // answer q (a Nack), ignore it (outside its window, from ls), or vote: the record of its promise, when
  // it raises it, then the vote's record, then its answer q (an Accepted).
  ghost function AcceptTrace(refuse: bool, ls: uint64, raise: bool, b: Ballot, slot: uint64, val: Value, q: Packet): seq<O.Out> {
    if refuse then [O.Sent(q)]
    else if !(ls <= slot && slot - ls < WINDOW) then []
    else (if raise then [O.Emitted(RecPromised(b))] else []) + [O.Emitted(RecVote(slot, b, val)), O.Sent(q)]
  }

  // The answer of an AcceptTrace that t continues t0 with (as PromiseAnswer).
  lemma AcceptAnswer(t: seq<O.Out>, t0: seq<O.Out>, refuse: bool, ls: uint64, raise: bool, b: Ballot, slot: uint64,
                     val: Value) returns (q: Packet)
    requires exists q :: t == t0 + AcceptTrace(refuse, ls, raise, b, slot, val, q)
    ensures t == t0 + AcceptTrace(refuse, ls, raise, b, slot, val, q)
  {
    q :| t == t0 + AcceptTrace(refuse, ls, raise, b, slot, val, q);
  }

  // What OnAccept did, from the trace t0 and the self-delivery queue sq0 to t and sq: its
  // AcceptTrace, and a message to itself only when it answers itself (opaque: OnAccept's proof
  // is large, and sees only the lemmas below).
  opaque ghost predicate AcceptDid(t0: seq<O.Out>, t: seq<O.Out>, sq0: seq<Msg>, sq: seq<Msg>, me: uint64, src: uint64,
                                   p0: Ballot, b: Ballot, ls: uint64, slot: uint64, val: Value) {
    && (exists q: Packet :: t == t0 + AcceptTrace(BalLt(b, p0), ls, BalLt(p0, b), b, slot, val, q))
    && (src != me && b.node != me ==> sq == sq0)
  }

  lemma AcceptDidIs(t0: seq<O.Out>, t: seq<O.Out>, sq0: seq<Msg>, sq: seq<Msg>, me: uint64, src: uint64,
                    p0: Ballot, b: Ballot, ls: uint64, slot: uint64, val: Value)
    requires AcceptDid(t0, t, sq0, sq, me, src, p0, b, ls, slot, val)
    ensures exists q: Packet :: t == t0 + AcceptTrace(BalLt(b, p0), ls, BalLt(p0, b), b, slot, val, q)
    ensures src != me && b.node != me ==> sq == sq0
  {
    reveal AcceptDid();
  }

  // Its refusal: a Nack to src.
  lemma RefuseDid(t0: seq<O.Out>, t: seq<O.Out>, sq0: seq<Msg>, sq: seq<Msg>, me: uint64, src: uint64,
                  p0: Ballot, b: Ballot, ls: uint64, slot: uint64, val: Value)
    requires BalLt(b, p0) && t == t0 + [O.Sent(Packet(me, src, Nack(p0)))]
    requires sq == sq0 + (if src == me then [Nack(p0)] else [])
    ensures AcceptDid(t0, t, sq0, sq, me, src, p0, b, ls, slot, val)
  {
    reveal AcceptDid();
    assert t == t0 + AcceptTrace(BalLt(b, p0), ls, BalLt(p0, b), b, slot, val, Packet(me, src, Nack(p0)));
  }

  // An Accept outside its window: nothing.
  lemma IgnoreDid(t0: seq<O.Out>, t: seq<O.Out>, sq0: seq<Msg>, sq: seq<Msg>, me: uint64, src: uint64,
                  p0: Ballot, b: Ballot, ls: uint64, slot: uint64, val: Value)
    requires !BalLt(b, p0) && !(ls <= slot && slot - ls < WINDOW) && t == t0 && sq == sq0
    ensures AcceptDid(t0, t, sq0, sq, me, src, p0, b, ls, slot, val)
  {
    reveal AcceptDid();
    var q := Packet(me, src, Nack(p0));
    assert t == t0 + AcceptTrace(BalLt(b, p0), ls, BalLt(p0, b), b, slot, val, q) by {
      assert t0 + [] == t0;
    }
  }

  // Its vote: the promise's record (SetPromised: when it raises its promise), then the vote's
  // record and its Accepted to b's leader.
  lemma VoteDid(t0: seq<O.Out>, t1: seq<O.Out>, t1': seq<O.Out>, t: seq<O.Out>, sq0: seq<Msg>, sq1: seq<Msg>, sq: seq<Msg>,
                me: uint64, src: uint64, p0: Ballot, b: Ballot, ls: uint64, slot: uint64, val: Value)
    requires !BalLt(b, p0) && ls <= slot && slot - ls < WINDOW
    requires t1 == t0 + (if p0 != b then [O.Emitted(RecPromised(b))] else []) && t1' == t1
    requires t == t1' + [O.Emitted(RecVote(slot, b, val))] + [O.Sent(Packet(me, b.node, Accepted(b, slot)))]
    requires sq1 == sq0 && sq == sq1 + (if b.node == me then [Accepted(b, slot)] else [])
    ensures AcceptDid(t0, t, sq0, sq, me, src, p0, b, ls, slot, val)
  {
    reveal AcceptDid();
    var q := Packet(me, b.node, Accepted(b, slot));
    assert t == t0 + AcceptTrace(BalLt(b, p0), ls, BalLt(p0, b), b, slot, val, q);
  }

  // Every cut of such a step is Covered, but the one between a raised promise's record and the
  // vote's, which is a PromiseCut.
  lemma AcceptTraceCovered(me: uint64, refuse: bool, ls: uint64, raise: bool, b: Ballot, slot: uint64, val: Value,
                           q: Packet, log0: seq<Packet>, p0: Ballot)
    requires raise ==> BalLe(p0, b)
    ensures var t := AcceptTrace(refuse, ls, raise, b, slot, val, q);
            forall k: nat | k <= |O.Records(t)| ::
              Covered(O.Records(t), O.Early(me, t), log0, k) || PromiseCut(O.Records(t), O.Early(me, t), log0, k, p0)
  {
    var t := AcceptTrace(refuse, ls, raise, b, slot, val, q);
    var vote := ls <= slot && slot - ls < WINDOW;
    O.Empty(me);
    var v := O.Emitted(RecVote(slot, b, val));
    if refuse {
      O.Snoc(me, [], O.Sent(q));
      assert t == [] + [O.Sent(q)];
    } else if !vote {
    } else if raise {
      var p := O.Emitted(RecPromised(b));
      O.Snoc(me, [], p);
      assert [] + [p] == [p];
      O.Snoc(me, [p], v);
      assert [p] + [v] == [p, v];
      O.Snoc(me, [p, v], O.Sent(q));
      assert t == [p, v] + [O.Sent(q)];
      assert O.Records(t) == [RecPromised(b), RecVote(slot, b, val)] && O.Early(me, t) == [];
    } else {
      O.Snoc(me, [], v);
      assert [] + [v] == [v];
      O.Snoc(me, [v], O.Sent(q));
      assert t == [v] + [O.Sent(q)];
      assert O.Records(t) == [RecVote(slot, b, val)] && O.Early(me, t) == [];
    }
  }

  // ---------------------------------------------------------------------------------------
  // Every cut of a whole step. A step is its first handling (of the message received, of the
  // tick, the proposal or the read) and then one handling per message it sent itself; between
  // two of them the host is at a point (Replays()). Each handling emits no record that needs a
  // sync but its first record, and sends nothing early before that one (SyncFirst); then each
  // cut is after the last record that needs a sync, or before the first record of a handling
  // that begins with one, a point at which every early packet of the step had been sent
  // (CoveredGrows). The step's first handling begins where the step began (CoveredFromStart),
  // or is an Accept that raises the promise, whose cut after the promise is a PromiseCut.

  // An Accept at b to host i is in net (then its sender sent i a Prepare(b): Prep.Prepared).
  ghost predicate AcceptIn(net: set<S.Message>, i: nat, b: Ballot) {
    exists m :: m in net && m.Accept? && m.dst == i && m.bal == b
  }

  // The cut k of the step of host me that began at h0 (its packet log log0, its record log
  // recs0, reading net) and did t is covered: Covered, a PromiseCut whose Accept is in net,
  // or covered by a point.
  ghost predicate CutCovered(c: P.Constants, me: uint64, h0: P.Host, log0: seq<Packet>, net: set<S.Message>, recs0: seq<Record>,
                             t: seq<O.Out>, k: nat) {
    || Covered(O.Records(t), O.Early(me, t), log0, k)
    || (PromiseCut(O.Records(t), O.Early(me, t), log0, k, h0.promised) && AcceptIn(net, me as nat, O.Records(t)[0].bal))
    || exists pt :: PointOf(c, me as nat, h0, log0, net, recs0, t, pt) && CutAtPoint(me, t, log0, pt, k)
  }

  // (opaque: the steps' proofs see it only through the lemmas below)
  opaque ghost predicate EveryCutCovered(c: P.Constants, me: uint64, h0: P.Host, log0: seq<Packet>, net: set<S.Message>,
                                  recs0: seq<Record>, t: seq<O.Out>) {
    forall k: nat | k <= |O.Records(t)| :: CutCovered(c, me, h0, log0, net, recs0, t, k)
  }

  // From t0 to t1, a handling emitted no record that needs a sync but its first, and when its
  // first needs one, it sent nothing early before it.
  opaque ghost predicate SyncFirst(me: uint64, t0: seq<O.Out>, t1: seq<O.Out>) {
    && O.Records(t0) <= O.Records(t1)
    && (forall j | |O.Records(t0)| < j < |O.Records(t1)| :: !NeedsSync(O.Records(t1)[j]))
    && (|O.Records(t1)| > |O.Records(t0)| && NeedsSync(O.Records(t1)[|O.Records(t0)|]) ==> O.Early(me, t1) == O.Early(me, t0))
  }

  // A step whose first handling did t1 from its start: every cut is Covered.
  lemma CoveredFromStart(c: P.Constants, me: uint64, h0: P.Host, log0: seq<Packet>, net: set<S.Message>, recs0: seq<Record>,
                         t1: seq<O.Out>)
    requires SyncFirst(me, [], t1)
    ensures EveryCutCovered(c, me, h0, log0, net, recs0, t1)
  {
    reveal EveryCutCovered(), SyncFirst();
    O.Empty(me);
    var rs := O.Records(t1);
    forall k: nat | k <= |rs| ensures Covered(rs, O.Early(me, t1), log0, k) {
      if !AfterLastSync(rs, k) {
        assert k == 0 && NeedsSync(rs[0]);
      }
    }
  }

  // A handling from the point pt0 (whose trace is t0) to t1 that is SyncFirst, the step's early
  // packets fixed once it is synced (SameBases): every cut stays covered.
  lemma CoveredGrows(c: P.Constants, me: uint64, h0: P.Host, log0: seq<Packet>, net: set<S.Message>, recs0: seq<Record>,
                     t0: seq<O.Out>, t1: seq<O.Out>, pt0: Point)
    requires EveryCutCovered(c, me, h0, log0, net, recs0, t0)
    requires SyncFirst(me, t0, t1) && (O.Synced(t0) ==> O.Early(me, t1) == O.Early(me, t0))
    requires PointOf(c, me as nat, h0, log0, net, recs0, t0, pt0) && pt0.trace == t0
    ensures EveryCutCovered(c, me, h0, log0, net, recs0, t1)
  {
    reveal EveryCutCovered(), SyncFirst();
    var r0, r1 := O.Records(t0), O.Records(t1);
    var e0, e1 := O.Early(me, t0), O.Early(me, t1);
    var syncs := |r1| > |r0| && NeedsSync(r1[|r0|]);
    if !O.Synced(t0) {
      O.UnsyncedRecords(t0);
    }
    forall k: nat | k <= |r1| ensures CutCovered(c, me, h0, log0, net, recs0, t1, k) {
      assert r1[..k] == r0[..k] <== k <= |r0|;
      if k > |r0| {
        assert AfterLastSync(r1, k);
      } else if AfterLastSync(r0, k) || !O.Synced(t0) {
        assert AfterLastSync(r0, k);
        if syncs {
          forall p | p in e1 ensures p in O.Sends(pt0.trace) || p in log0 {
            EarlyIsSent(me, t0, p);
          }
          assert CutAtPoint(me, t1, log0, pt0, k);
        } else {
          assert AfterLastSync(r1, k);
        }
      } else {
        assert e1 == e0;
        assert CutCovered(c, me, h0, log0, net, recs0, t0, k);
        if Covered(r0, e0, log0, k) {
          assert Covered(r1, e1, log0, k);
        } else if PromiseCut(r0, e0, log0, k, h0.promised) && AcceptIn(net, me as nat, r0[0].bal) {
          assert r1[0] == r0[0];
        } else {
          var pt :| PointOf(c, me as nat, h0, log0, net, recs0, t0, pt) && CutAtPoint(me, t0, log0, pt, k);
          assert CutAtPoint(me, t1, log0, pt, k);
        }
      }
    }
  }

  // The handlings whose trace is known: a record, then a packet; a packet; nothing.
  lemma SyncFirstRecordSend(me: uint64, t0: seq<O.Out>, r: Record, q: Packet)
    ensures SyncFirst(me, t0, t0 + [O.Emitted(r), O.Sent(q)])
  {
    reveal SyncFirst();
    var t1 := t0 + [O.Emitted(r)];
    O.Snoc(me, t0, O.Emitted(r));
    O.Snoc(me, t1, O.Sent(q));
    assert t1 + [O.Sent(q)] == t0 + [O.Emitted(r), O.Sent(q)];
    if NeedsSync(r) {
      O.EarlyBeforeSync(me, t0, r, t0 + [O.Emitted(r), O.Sent(q)]);
    }
  }

  lemma SyncFirstSend(me: uint64, t0: seq<O.Out>, q: Packet)
    ensures SyncFirst(me, t0, t0 + [O.Sent(q)])
  {
    reveal SyncFirst();
    O.Snoc(me, t0, O.Sent(q));
  }

  // OnPrepare's trace (PromiseTrace) is SyncFirst.
  lemma PromiseTraceSyncFirst(me: uint64, t0: seq<O.Out>, raise: bool, b: Ballot, q: Packet)
    ensures SyncFirst(me, t0, t0 + PromiseTrace(raise, b, q))
  {
    if raise {
      assert t0 + PromiseTrace(raise, b, q) == t0 + [O.Emitted(RecPromised(b)), O.Sent(q)];
      SyncFirstRecordSend(me, t0, RecPromised(b), q);
    } else {
      assert t0 + PromiseTrace(raise, b, q) == t0 + [O.Sent(q)];
      SyncFirstSend(me, t0, q);
    }
  }

  // OnAccept's trace (AcceptTrace) is SyncFirst when it does not raise its promise.
  lemma AcceptTraceSyncFirst(me: uint64, t0: seq<O.Out>, refuse: bool, ls: uint64, b: Ballot, slot: uint64, val: Value, q: Packet)
    ensures SyncFirst(me, t0, t0 + AcceptTrace(refuse, ls, false, b, slot, val, q))
  {
    var t := AcceptTrace(refuse, ls, false, b, slot, val, q);
    if refuse {
      assert t0 + t == t0 + [O.Sent(q)];
      SyncFirstSend(me, t0, q);
    } else if !(ls <= slot && slot - ls < WINDOW) {
      assert t0 + t == t0;
      reveal SyncFirst();
    } else {
      assert t0 + t == t0 + [O.Emitted(RecVote(slot, b, val)), O.Sent(q)];
      SyncFirstRecordSend(me, t0, RecVote(slot, b, val), q);
    }
  }

  // A step whose first handling is OnAccept raising its promise (its AcceptTrace): every cut is
  // Covered or the PromiseCut, whose Accept is in net.
  lemma AcceptRaiseCovered(c: P.Constants, me: uint64, h0: P.Host, log0: seq<Packet>, net: set<S.Message>, recs0: seq<Record>,
                           refuse: bool, ls: uint64, b: Ballot, slot: uint64, val: Value, q: Packet)
    requires BalLe(h0.promised, b) && AcceptIn(net, me as nat, b)
    ensures EveryCutCovered(c, me, h0, log0, net, recs0, AcceptTrace(refuse, ls, true, b, slot, val, q))
  {
    reveal EveryCutCovered();
    var t := AcceptTrace(refuse, ls, true, b, slot, val, q);
    AcceptTraceCovered(me, refuse, ls, true, b, slot, val, q, log0, h0.promised);
    O.Empty(me);
    if refuse {
      O.Snoc(me, [], O.Sent(q));
      assert t == [] + [O.Sent(q)];
      assert O.Records(t) == [];
    } else if !(ls <= slot && slot - ls < WINDOW) {
      assert O.Records(t) == [];
    } else {
      var p, v := O.Emitted(RecPromised(b)), O.Emitted(RecVote(slot, b, val));
      O.Snoc(me, [], p);
      assert [] + [p] == [p];
      O.Snoc(me, [p], v);
      assert [p] + [v] == [p, v];
      O.Snoc(me, [p, v], O.Sent(q));
      assert t == [p, v] + [O.Sent(q)];
      assert O.Records(t)[0] == RecPromised(b);
    }
    forall k: nat | k <= |O.Records(t)| ensures CutCovered(c, me, h0, log0, net, recs0, t, k) {
      assert Covered(O.Records(t), O.Early(me, t), log0, k) || PromiseCut(O.Records(t), O.Early(me, t), log0, k, h0.promised);
    }
  }

  // THEOREM (a crash part-way through a whole step, at any cut): when every cut of the step is
  // covered (EveryCutCovered), which each whole step ensures, the crash with the first k records
  // durable is a system step, as in CrashPartWay, in every state where Prep.Prepared holds
  // (every reachable one: Prep.ImplPrepared), which a PromiseCut reads.
  lemma EveryCutIsCrashStep(c: P.Constants, s: Sy.Sys, i: nat, log0: seq<Packet>, recs0: seq<Record>, moves: seq<RR.Move>,
                            h: P.Host, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts| && i <= UINT64_MAX as nat && (forall p | p in log0 :: p in s.wire)
    requires Prep.Prepared(c, s.abs) && i < c.n
    requires RR.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log0 + O.Sends(t))
    requires Rebuilt(recs0) == s.abs.hosts[i].(leader := P.NotLeader)
    requires Rebuilt(recs0 + O.Records(t)) == h.(leader := P.NotLeader)
    requires k <= |O.Records(t)| && EveryCutCovered(c, i as uint64, s.abs.hosts[i], log0, s.abs.net, recs0, t)
    requires MayHaveLeft(O.Records(t), O.Early(i as uint64, t), O.Sends(t), k, pkts)
    ensures Sy.ImplNext(c, s, s')
    ensures s'.abs.hosts == s.abs.hosts[i := Rebuilt(recs0 + O.Records(t)[..k])]
    ensures s'.wire == s.wire + (set j | 0 <= j < |pkts| :: pkts[j])
  {
    reveal EveryCutCovered();
    var me, h0, rs := i as uint64, s.abs.hosts[i], O.Records(t);
    assert CutCovered(c, me, h0, log0, s.abs.net, recs0, t, k);
    if Covered(rs, O.Early(me, t), log0, k)
       || exists pt :: PointOf(c, i, h0, log0, s.abs.net, recs0, t, pt) && CutAtPoint(me, t, log0, pt, k) {
      s' := CrashPartWay(c, s, i, log0, recs0, moves, h, t, k, pkts);
    } else {
      assert PromiseCut(rs, O.Early(me, t), log0, k, h0.promised) && AcceptIn(s.abs.net, i, rs[0].bal);
      var m :| m in s.abs.net && m.Accept? && m.dst == i && m.bal == rs[0].bal;
      assert S.Prepare(m.src, i, rs[0].bal) in s.abs.net;
      forall p | p in pkts ensures p in s.wire {
        assert p in O.Early(me, t);
      }
      s' := CrashAtPromise(c, s, i, recs0, rs, pkts, m.src);
    }
  }
}
