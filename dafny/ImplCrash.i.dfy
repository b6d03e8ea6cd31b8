// A crash part-way through a step of the core: the driver made only a prefix of the step's
// records durable (the first k, the cut), and of its packets only some left (its early ones, or
// all of them once the records that need a sync are durable). Which cuts leave a state the
// protocol reaches: each lemma here shows that the restart (the host rebuilt from the records
// before the step and the first k of the step's, R.ApplyAll), with those packets on the wire,
// is one system step (ImplSystem.ImplCrashStep: a run of the host's protocol steps, then the
// protocol's Crash). Impl.Replica.CrashPartWay applies them to a whole step (its StepOk and
// ReadyIs). The cuts covered: every cut at or after the step's last record that needs a sync
// (the crash comes after the step's whole run: what the cut loses is commit records), and the
// cut before the step's first record when every early packet is one sent before the step.
module ImplCrash {
  import opened Native
  import opened ImplTypes
  import opened ImplBounds
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import O = StepOutput
  import Rep = ImplReplay
  import Sy = ImplSystem

  // The host a restart rebuilds from the durable records recs (Impl's Replays()).
  ghost function Rebuilt(recs: seq<Record>): P.Host {
    R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat)
  }

  // The cut k of a step's records rs comes after every one of them that needs a sync.
  ghost predicate AfterLastSync(rs: seq<Record>, k: nat) {
    k <= |rs| && forall j | k <= j < |rs| :: !NeedsSync(rs[j])
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

  // A packet sent to another member is a packet sent.
  lemma ToOthersIn(me: uint64, ps: seq<Packet>, p: Packet)
    requires p in O.ToOthers(me, ps)
    ensures p in ps
    decreases |ps|
  {
    reveal O.ToOthers();
    if ps != [] {
      var front := ps[..|ps| - 1];
      if p in O.ToOthers(me, front) {
        ToOthersIn(me, front, p);
        assert front <= ps;
      }
    }
  }

  // An early packet is one of the step's packets.
  lemma EarlyIsSent(me: uint64, t: seq<O.Out>, p: Packet)
    requires p in O.Early(me, t)
    ensures p in O.Sends(t)
  {
    O.EarlyThenLate(me, t);
    assert p in O.Early(me, t) + O.Late(me, t);
    ToOthersIn(me, O.Sends(t), p);
  }

  // Cutting after the last record that needs a sync loses only commit records.
  lemma CutLosesCommits(recs0: seq<Record>, rs: seq<Record>, k: nat)
    requires AfterLastSync(rs, k)
    ensures R.LosesCommits(recs0 + rs, recs0 + rs[..k])
  {
    var all, cut := recs0 + rs, recs0 + rs[..k];
    assert all[..|cut|] == cut;
    forall j | |cut| <= j < |all| ensures all[j].RecCommit? {
      assert all[j] == rs[j - |recs0|];
      assert !NeedsSync(rs[j - |recs0|]);
    }
  }

  // A cut after the step's last record that needs a sync: the host took the step's whole run
  // (its trail from s, ending at h with the packet log log0 + Sends(t), which Rebuilt(recs0 +
  // Records(t)) rebuilds), then crashed, losing the commit records after the cut.
  lemma CrashAfterRun(c: P.Constants, s: Sy.Sys, i: nat, log0: seq<Packet>, recs0: seq<Record>, moves: seq<R.Move>,
                      h: P.Host, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts| && (forall p | p in log0 :: p in s.wire)
    requires R.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log0 + O.Sends(t))
    requires Rebuilt(recs0 + O.Records(t)) == h.(leader := P.NotLeader)
    requires AfterLastSync(O.Records(t), k) && forall p | p in pkts :: p in O.Sends(t)
    ensures Sy.ImplNext(c, s, s')
    ensures s'.abs.hosts == s.abs.hosts[i := Rebuilt(recs0 + O.Records(t)[..k])]
    ensures s'.wire == s.wire + (set j | 0 <= j < |pkts| :: pkts[j])
  {
    var log := log0 + O.Sends(t);
    var d := Rebuilt(recs0 + O.Records(t)[..k]);
    R.StepTrailIs(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log);
    forall j | 0 <= j < |pkts|
      ensures (R.PacketRefines(pkts[j], R.SentBy(moves)) && R.LearnBacked(pkts[j], R.SentBy(moves), s.abs.net + R.SentBy(moves)))
              || pkts[j] in s.wire
    {
      assert pkts[j] in pkts;
      assert pkts[j] in O.Sends(t);
      var m :| 0 <= m < |O.Sends(t)| && O.Sends(t)[m] == pkts[j];
      assert log[|log0| + m] == pkts[j];
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
    R.RunNil(c, i, h, s.abs.net);
    R.RunGOf(c, i, h, s.abs.net, s.abs.net, [], h);
    assert R.SentBy([]) == {};
    var mid := Sy.After(s, i, h, [], pkts);
    assert s.abs.hosts[i := h] == s.abs.hosts;
    assert Sy.ImplStep(c, s, mid, i, s.abs.net, [], h, pkts);
    Rep.ApplyAllKeepsNotLeader(recs0);
    assert P.Crash(c, i, h, d, {});
    s' := Sy.Restarted(mid, i, d);
    assert Sy.ImplCrashStep(c, s, s', i, s.abs.net, [], h, pkts, d);
  }

  // THEOREM (a crash part-way through a step, for the cuts Covered): a step of host i from s
  // (its trail: the run moves to h, its packet log log0 + Sends(t); the records before it,
  // recs0, rebuild its host in s, and recs0 + Records(t) the host it reached) cut at k, with
  // the packets pkts that may have left by then on the wire, is a system step to the state
  // whose host i is the one a restart rebuilds from recs0 and the step's first k records.
  lemma CrashPartWay(c: P.Constants, s: Sy.Sys, i: nat, log0: seq<Packet>, recs0: seq<Record>, moves: seq<R.Move>,
                     h: P.Host, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
    requires P.WF(c, s.abs) && i < |s.abs.hosts| && i <= UINT64_MAX as nat && (forall p | p in log0 :: p in s.wire)
    requires R.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h, log0 + O.Sends(t))
    requires Rebuilt(recs0) == s.abs.hosts[i].(leader := P.NotLeader)
    requires Rebuilt(recs0 + O.Records(t)) == h.(leader := P.NotLeader)
    requires k <= |O.Records(t)| && Covered(O.Records(t), O.Early(i as uint64, t), log0, k)
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
    } else {
      s' := CrashBeforeStep(c, s, i, recs0, O.Records(t), pkts);
    }
  }
}
