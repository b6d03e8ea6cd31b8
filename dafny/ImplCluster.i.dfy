// The replicas composed: a Cluster owns n Replicas (Impl.i.dfy) and a ghost run of the system
// (ImplSystem). Each of its methods calls one replica's step (Receive, Tick, Propose,
// ConfirmRead) with the abstraction of the run's last state, and extends the run by the system
// step that the step's trail is (ImplSystem.StepTrailIsImplStep; a Propose after the client's
// request, ClientSends); Truncate and InstallSnapshot are steps that send nothing (GrowRun); a
// restart (a fresh replica replays the durable records, less a tail of commit records, then
// FinishRecovery) is the protocol's Crash of the host (Replica.RestartIsCrash, an ImplCrashStep
// of an empty step). So Valid() keeps ImplReachable(run): Replica objects called in any order,
// over a network that delivers only packets sent (and may drop, duplicate or reorder them), make
// a reachable run of the system, whose wire holds every packet the Readies carry. Every Ready a
// step returned holds committed values of its host at a state of that run, so the commits of all
// of them agree per slot and are requested values or the no-op (ClusterAgreement, by
// ImplReadies.ReadiesAgree). A crash part-way through a whole step (DeliverThenCrash,
// TickThenCrash, ProposeThenCrash, ConfirmReadThenCrash: CrashTail) runs the replica's step, then
// replaces the replica by a fresh one that replays its durable records before the step and the
// step's first k records; the run grows by one system step, the crashed step
// (Replica.EveryCutIsCrashStep), with only the packets that may have left by the cut
// (Cr.MayHaveLeft) on the wire; the crashed step's Ready is not returned, only the recovery's.
// A restart from a checkpoint (RestartFromCheckpoint: a fresh replica replays the checkpoint's
// records and the later ones, Replica.TruncatedCheckpointRestartIsCrashStep, whose premises are
// the driver's obligations) is the crash of the host after a Truncate. A crash part-way
// through Truncate or InstallSnapshot (TruncateThenCrash, InstallSnapshotThenCrash:
// QuietCrashTail) is at one of two cuts, their one record durable or not (Cr.AtMostOne,
// Replica.QuietCrashPartWay); one part-way through a recovery is Restart again from the same
// records (a recovery emits none; Restart ensures its precondition holds for them again). A
// crash part-way through a step that also loses a tail of commit records is two calls: the crash
// at the cut (each ...ThenCrash ensures that the replica's record log is then disk + kept, the
// step's records that became durable), then Restart from the records left, which the protocol's
// Crash allows (R.LosesCommits of that log). Main.i.dfy wraps this Cluster as the end-to-end contract of
// Main.s.dfy (module MainSpec), the one a reader checks.
module ImplCluster {
  import opened Native
  import opened ImplTypes
  import opened ImplBounds
  import S = Spec
  import P = Protocol
  import RR = ImplAbsRuns
  import O = StepOutput
  import A = AgreementProof
  import PI = ProtocolInvariant
  import OT = ImplOutTied
  import Sy = ImplSystem
  import Rd = ImplReadies
  import R = ImplAbstraction
  import Rep = ImplReplay
  import Cr = ImplCrash
  import Prep = ImplPrepared
  import Ck = ImplCheckpoint
  import Impl

  // A Ready a step returned, (at, host, r): of host `host`, whose state after the step is that
  // of the run's state `at`. (A tuple, not a datatype: a datatype of nats has no C++ translation.)
  type Returned = (nat, nat, Ready)

  // The commits of any two returned Readies agree per slot, and each is a requested value or the
  // no-op (in the network net).
  ghost predicate AllAgree(rs: seq<Returned>, net: set<S.Message>) {
    forall a, b, x, y | a in rs && b in rs && 0 <= x < |a.2.commits| && 0 <= y < |b.2.commits| ::
      && (a.2.commits[x].slot == b.2.commits[y].slot ==> a.2.commits[x].val == b.2.commits[y].val)
      && (a.2.commits[x].val == S.NoOp || S.Requested(net, a.2.commits[x].val))
  }

  // No host step sends a client's request (only ClientSends puts one in the network).
  lemma HostSendsNoRequest(c: P.Constants, i: nat, h: P.Host, h': P.Host, net: set<S.Message>,
                           sent: set<S.Message>, step: P.Step)
    requires P.HostStep(c, i, h, h', net, sent, step)
    ensures forall m | m in sent :: !m.Request?
  {
  }

  // Nor does a run of host steps.
  lemma RunSendsNoRequest(c: P.Constants, i: nat, h: P.Host, net: set<S.Message>, moves: seq<RR.Move>, h': P.Host)
    requires RR.RunG(c, i, h, net, moves, h')
    ensures forall m | m in RR.SentBy(moves) :: !m.Request?
    decreases |moves|
  {
    reveal RR.RunG();
    if moves != [] {
      HostSendsNoRequest(c, i, h, moves[0].post, net, moves[0].sent, moves[0].step);
      RunSendsNoRequest(c, i, moves[0].post, net + moves[0].sent, moves[1..], h');
    }
  }

  // From s to s' the wire only grew and no client's request entered the network.
  opaque ghost predicate Grew(s: Sy.Sys, s': Sy.Sys) {
    && s.wire <= s'.wire
    && forall m | m in s'.abs.net && m.Request? :: m in s.abs.net
  }

  // The last state of a reachable run: the protocol's invariant holds, and its wire refines
  // its network.
  lemma LastFacts(c: P.Constants, run: seq<Sy.Sys>)
    requires Sy.ImplReachable(c, run)
    ensures PI.Inv(c, run[|run| - 1].abs) && Sy.WireRefines(run[|run| - 1])
  {
    var behavior := Sy.ImplReachableIsProtocolReachable(c, run);
    A.ReachableInv(c, behavior);
  }

  // A reachable run extended by one system step is reachable.
  lemma Extend(c: P.Constants, run: seq<Sy.Sys>, s': Sy.Sys)
    requires Sy.ImplReachable(c, run) && Sy.ImplNext(c, run[|run| - 1], s')
    ensures Sy.ImplReachable(c, run + [s'])
  {
    var run' := run + [s'];
    assert run'[0] == run[0];
    forall k | 0 <= k < |run'| - 1 ensures Sy.ImplNext(c, run'[k], run'[k + 1]) {
      assert run'[k] == run[k];
      if k < |run| - 1 {
        assert run'[k + 1] == run[k + 1];
      }
    }
  }

  // The packets a Ready carries (early and late) are among those its step sent.
  lemma ReadySent(me: uint64, t: seq<O.Out>, q: Packet)
    requires q in O.Early(me, t) || q in O.Late(me, t)
    ensures q in O.Sends(t)
  {
    O.EarlyThenLate(me, t);
    assert q in O.Early(me, t) + O.Late(me, t);
    O.ToOthersSub(me, O.Sends(t), q);
  }

  // Replica rep is host i of the system state s: it is at s's host i, every packet it sent is on
  // s's wire, and the Accepted messages it counted are in s's network.
  ghost predicate Tied(rep: Impl.Replica, i: nat, s: Sy.Sys)
    reads rep, rep.votes, rep.committed
  {
    && i < |s.abs.hosts|
    && rep.AbsHost() == s.abs.hosts[i]
    && (forall q | q in rep.sentLog :: q in s.wire)
    && rep.acked <= s.abs.net
  }

  // Every returned Ready holds committed values of its host at its state of the run.
  ghost predicate ReadiesHeld(run: seq<Sy.Sys>, readies: seq<Returned>) {
    forall e | e in readies ::
      e.0 < |run| && e.1 < |run[e.0].abs.hosts| && Rd.ReadyCommitted(e.2, run[e.0].abs.hosts[e.1])
  }

  // THEOREM: the commits of the Readies returned along a reachable run agree per slot, and each
  // is a requested value or the no-op (ImplReadies.ReadiesAgree).
  lemma ReadiesAllAgree(c: P.Constants, run: seq<Sy.Sys>, readies: seq<Returned>)
    requires Sy.ImplReachable(c, run) && ReadiesHeld(run, readies)
    ensures AllAgree(readies, run[|run| - 1].abs.net)
  {
    forall a, b, x, y | a in readies && b in readies && 0 <= x < |a.2.commits| && 0 <= y < |b.2.commits|
      ensures && (a.2.commits[x].slot == b.2.commits[y].slot ==> a.2.commits[x].val == b.2.commits[y].val)
              && (a.2.commits[x].val == S.NoOp || S.Requested(run[|run| - 1].abs.net, a.2.commits[x].val))
    {
      Rd.ReadiesAgree(c, run, a.0, a.1, a.2, x, b.0, b.1, b.2, y);
    }
  }

  // A restarted replica: member i of n, fresh from the constructor, that replayed recs, then
  // reported its committed slots (FinishRecovery): its host is what recs rebuild, it sent
  // nothing and counted no Accepted message.
  method Recovered(i: uint64, n: uint64, electionTicks: uint64, heartbeatTicks: uint64, recs: seq<Record>)
    returns (rep: Impl.Replica, r: Ready, ghost from: uint64)
    requires 1 <= n <= MAX_MEMBERS && i < n && |recs| < 0x1_0000_0000_0000_0000
    requires 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
    ensures fresh(rep.Repr) && rep.Shape() && rep.Valid() && rep.me == i && rep.n == n
    ensures rep.sentLog == [] && rep.acked == {} && rep.CommitsAre(r, from)
    ensures rep.AbsHost() == R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat)
    ensures rep.recLog == recs  // its durable records: what it replayed, and nothing of its own
  {
    rep := new Impl.Replica(i, n, electionTicks, heartbeatTicks);
    assert recs[..0] == [];
    var k: uint64 := 0;
    while k < |recs| as uint64
      invariant k as nat <= |recs|
      invariant rep.Valid() && fresh(rep.Repr) && rep.me == i && rep.n == n && rep.sentLog == [] && rep.acked == {}
      invariant rep.AbsHost() == R.ApplyAll(Rep.InitHost(), recs[..k], WINDOW as nat, SLOT_LIMIT as nat)
      invariant rep.recLog == recs[..k]
      modifies rep.Repr
    {
      rep.Replay(recs[k]);
      assert recs[..k + 1][..k] == recs[..k];
      k := k + 1;
    }
    assert recs[..k] == recs;
    from := rep.logStart;
    ghost var t;
    r, t := rep.FinishRecovery();
  }

  class Cluster {
    const n: uint64
    const electionTicks: uint64
    const heartbeatTicks: uint64
    var reps: seq<Impl.Replica>  // replica i is reps[i]; a restart replaces it
    ghost const c: P.Constants
    ghost var run: seq<Sy.Sys>
    ghost var readies: seq<Returned>
    ghost var Repr: set<object>

    ghost function Last(): Sy.Sys
      reads this
      requires |run| > 0
    {
      run[|run| - 1]
    }

    // The replicas: each valid, replica i is member i of n, their Reprs disjoint and in Repr.
    ghost predicate Owns()
      reads this, Repr
    {
      && this in Repr
      && |reps| == n as int && 1 <= n <= MAX_MEMBERS && c == P.Constants(n as nat)
      && 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      && (forall i | 0 <= i < |reps| ::
            && reps[i] in Repr && reps[i].Repr <= Repr && this !in reps[i].Repr
            && reps[i].Shape() && reps[i].Valid() && reps[i].me == i as uint64 && reps[i].n == n)
      && (forall i, j | 0 <= i < |reps| && 0 <= j < |reps| && i != j :: reps[i].Repr !! reps[j].Repr)
    }

    ghost predicate Valid()
      reads this, Repr
    {
      this in Repr && |reps| == n as int && |run| > 0 && Inner()
    }

    // Opaque: a method reads it through the lemmas below (Parts, StepFromLast, OthersKept, Grow).
    opaque ghost predicate Inner()
      reads this, Repr
    {
      && |run| > 0
      && Owns()
      && Sy.ImplReachable(c, run)
      && |Last().abs.hosts| == n as int
      && (forall i | 0 <= i < |reps| :: Tied(reps[i], i, Last()))
      && ReadiesHeld(run, readies)
    }

    constructor (n: uint64, electionTicks: uint64, heartbeatTicks: uint64)
      requires 1 <= n <= MAX_MEMBERS
      requires 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      ensures Valid() && fresh(Repr) && |run| == 1 && readies == []
      ensures this.n == n && Last().wire == {} && Last().abs.net == {}
    {
      var rs: seq<Impl.Replica> := [];
      ghost var objs: set<object> := {};
      ghost var hosts: seq<P.Host> := [];
      var k: uint64 := 0;
      while k < n
        invariant k <= n && |rs| == k as int && |hosts| == k as int && fresh(objs)
        invariant forall i | 0 <= i < |rs| :: rs[i].Repr <= objs && rs[i].Shape() && rs[i].Valid()
        invariant forall i | 0 <= i < |rs| :: rs[i].me == i as uint64 && rs[i].n == n
        invariant forall i | 0 <= i < |rs| :: rs[i].AbsHost() == hosts[i] && P.HostInit(hosts[i])
        invariant forall i | 0 <= i < |rs| :: rs[i].sentLog == [] && rs[i].acked == {}
        invariant forall i, j | 0 <= i < |rs| && 0 <= j < |rs| && i != j :: rs[i].Repr !! rs[j].Repr
      {
        ghost var rs0, objs0, hosts0 := rs, objs, hosts;
        var rep := new Impl.Replica(k, n, electionTicks, heartbeatTicks);
        assert rep.Repr !! objs0;
        forall i | 0 <= i < |rs0|
          ensures rs0[i].Valid() && rs0[i].AbsHost() == hosts0[i] && rs0[i].Shape()
        {
        }
        rs := rs + [rep];
        objs := objs + rep.Repr;
        hosts := hosts + [rep.AbsHost()];
        k := k + 1;
      }
      this.n := n;
      this.electionTicks := electionTicks;
      this.heartbeatTicks := heartbeatTicks;
      reps := rs;
      c := P.Constants(n as nat);
      run := [Sy.Sys(P.State(hosts, {}), {})];
      readies := [];
      new;
      Repr := objs + {this};
      assert Sy.SysInit(c, run[0]);
      reveal Inner();
    }

    // ---- the proof's steps ------------------------------------------------------------------

    // What a method needs of Valid() to call replica i's step: the replica valid, its objects
    // in Repr and disjoint from the other replicas' and from this object.
    lemma Parts(i: nat)
      requires Valid() && i < n as int
      ensures |reps| == n as int && reps[i].Valid() && reps[i].Repr <= Repr && this !in reps[i].Repr
      ensures reps[i].me == i as uint64 && reps[i].n == n
      ensures 1 <= n <= MAX_MEMBERS && 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      ensures forall j | 0 <= j < |reps| && j != i :: reps[j].Repr !! reps[i].Repr && this !in reps[j].Repr
    {
      reveal Inner();
    }

    // The last state is one a step of replica i may start from (Replica.StepFrom): the
    // protocol's invariant holds there (the run is reachable), and every packet the replica
    // sent is on its wire, so refines its network (WireRefines).
    lemma StepFromLast(i: nat)
      requires Valid() && i < |reps|
      ensures reps[i].StepFrom(Last().abs) && Sy.WireRefines(Last())
      ensures forall q | q in reps[i].sentLog :: q in Last().wire
    {
      reveal Inner();
      LastFacts(c, run);
      var s, rep := Last(), reps[i];
      assert Tied(reps[i], i, s);
      forall q | q in rep.sentLog ensures OT.OnWire(q, s.abs.net) {
        assert q in s.wire;
      }
    }

    // A step of replica i changed none of the other replicas nor this object: all but replica
    // i's state, and the replicas' structure, are as before.
    twostate lemma OthersKept(i: nat)
      requires old(Valid()) && i < |reps| && unchanged(this)
      requires forall j | 0 <= j < |reps| && j != i :: unchanged(reps[j].Repr)
      requires reps[i].Shape() && reps[i].Valid() && reps[i].me == i as uint64 && reps[i].n == n
      ensures Owns() && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      ensures forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
    {
      reveal Inner();
      forall j | 0 <= j < |reps| && j != i
        ensures reps[j].Shape() && reps[j].Valid() && reps[j].me == j as uint64 && reps[j].n == n
        ensures Tied(reps[j], j, Last())
      {
        assert old(reps[j].Shape());
        assert old(Tied(reps[j], j, Last()));
      }
    }

    // Replica i took a step from the last state s (its trail: StepOk), the others unchanged:
    // the run grows by the system step it is (ImplStep, its packets those the replica sent),
    // and its Ready joins the returned ones, its commits committed at the new last state.
    ghost method Grow(i: nat, h0: P.Host, log0: seq<Packet>, moves: seq<RR.Move>, r: Ready, from: uint64)
      requires Owns() && i < |reps| && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
      requires reps[i].StepOk(Last().abs, h0, log0, moves) && reps[i].CommitsAre(r, from)
      requires forall q | q in log0 :: q in Last().wire
      modifies this
      ensures Valid() && Repr == old(Repr) && reps == old(reps)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i, r)]
      ensures Sy.ImplNext(c, old(Last()), Last()) && Grew(old(Last()), Last())
    {
      reveal Inner();
      var s, rep := Last(), reps[i];
      Sy.StepTrailIsImplStep(c, s, i, log0, moves, rep.AbsHost(), rep.sentLog);
      var pkts := rep.sentLog[|log0|..];
      var s' := Sy.After(s, i, rep.AbsHost(), moves, pkts);
      assert Sy.ImplStep(c, s, s', i, s.abs.net, moves, rep.AbsHost(), pkts);
      RunSendsNoRequest(c, i, s.abs.hosts[i], s.abs.net, moves, rep.AbsHost());
      reveal Grew();
      assert Sy.ImplNext(c, s, s');
      forall q | q in rep.sentLog ensures q in s'.wire {
        if q !in log0 {
          var k :| 0 <= k < |rep.sentLog| && rep.sentLog[k] == q;
          assert pkts[k - |log0|] == q;
        }
      }
      Append(i, s', r, from);
    }

    // Replica i ran the protocol steps `moves` from the last state s, receiving nothing and
    // sending nothing (Truncate, InstallSnapshot: RR.Run), the others unchanged: the run grows
    // by the system step it is (an ImplStep that puts no packet on the wire).
    ghost method GrowRun(i: nat, h0: P.Host, moves: seq<RR.Move>, r: Ready, from: uint64)
      requires Owns() && i < |reps| && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
      requires h0 == Last().abs.hosts[i] && RR.Run(c, i, h0, {}, moves, reps[i].AbsHost()) && reps[i].CommitsAre(r, from)
      requires (forall q | q in reps[i].sentLog :: q in Last().wire) && reps[i].acked <= Last().abs.net
      modifies this
      ensures Valid() && Repr == old(Repr) && reps == old(reps)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i, r)]
      ensures Sy.ImplNext(c, old(Last()), Last()) && Grew(old(Last()), Last())
    {
      reveal Inner();
      var s, rep := Last(), reps[i];
      RR.RunGOf(c, i, h0, {}, s.abs.net, moves, rep.AbsHost());
      RunSendsNoRequest(c, i, h0, s.abs.net, moves, rep.AbsHost());
      reveal Grew();
      var s' := Sy.After(s, i, rep.AbsHost(), moves, []);
      assert Sy.ImplStep(c, s, s', i, s.abs.net, moves, rep.AbsHost(), []);
      assert Sy.ImplNext(c, s, s');
      Append(i, s', r, from);
    }

    // Replica i was replaced by a fresh one, the others unchanged: the replicas' structure
    // holds, the others are as before.
    twostate lemma Swapped(i: nat)
      requires old(Valid()) && i < |old(reps)| && i < |reps| && reps == old(reps)[i := reps[i]]
      requires run == old(run) && readies == old(readies) && Repr == old(Repr) + reps[i].Repr && this in old(Repr)
      requires fresh(reps[i].Repr) && reps[i].Repr !! old(Repr)
      requires forall j | 0 <= j < |reps| && j != i :: unchanged(reps[j].Repr)
      requires reps[i].Shape() && reps[i].Valid() && reps[i].me == i as uint64 && reps[i].n == n
      ensures Owns() && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      ensures forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
    {
      reveal Inner();
      forall j | 0 <= j < |reps| && j != i
        ensures reps[j].Shape() && reps[j].Valid() && reps[j].me == j as uint64 && reps[j].n == n
        ensures Tied(reps[j], j, Last()) && reps[j].Repr <= Repr && this !in reps[j].Repr
      {
        assert reps[j] == old(reps[j]);
        assert old(reps[j].Shape());
        assert old(Tied(reps[j], j, Last()));
      }
    }

    // Replica i restarted at d, the protocol's Crash of its host in the last state s, with no
    // packet sent and no Accepted message counted, the others unchanged: the run grows by the
    // system step it is (an ImplCrashStep of an empty step), and the Ready of its recovery joins
    // the returned ones.
    ghost method GrowCrash(i: nat, d: P.Host, r: Ready, from: uint64)
      requires Owns() && i < |reps| && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
      requires P.Crash(c, i, Last().abs.hosts[i], d, {}) && reps[i].AbsHost() == d && reps[i].CommitsAre(r, from)
      requires reps[i].sentLog == [] && reps[i].acked == {}
      modifies this
      ensures Valid() && Repr == old(Repr) && reps == old(reps)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i, r)]
      ensures Sy.ImplNext(c, old(Last()), Last())
    {
      reveal Inner();
      var s, rep := Last(), reps[i];
      var h := s.abs.hosts[i];
      var mid := Sy.After(s, i, h, [], []);
      var s' := Sy.Restarted(mid, i, d);
      reveal RR.RunG();
      assert RR.RunG(c, i, h, {}, [], h);
      assert Sy.ImplStep(c, s, mid, i, {}, [], h, []);
      assert mid.abs.hosts[i] == h;
      assert Sy.ImplCrashStep(c, s, s', i, {}, [], h, [], d);
      assert Sy.ImplNext(c, s, s');
      Append(i, s', r, from);
    }

    // Replica i was replaced by a fresh one, after a step of the old one that left the others
    // unchanged (the Cluster no longer Valid: the old replica is ahead of the run): the
    // replicas' structure holds, the others are as before.
    twostate lemma Replaced(i: nat)
      requires old(Owns()) && i < |old(reps)| && i < |reps| && reps == old(reps)[i := reps[i]]
      requires run == old(run) && |run| > 0 && Repr == old(Repr) + reps[i].Repr
      requires fresh(reps[i].Repr)
      requires forall j | 0 <= j < |reps| && j != i :: unchanged(reps[j].Repr)
      requires reps[i].Shape() && reps[i].Valid() && reps[i].me == i as uint64 && reps[i].n == n
      requires old(forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last()))
      ensures Owns() && forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
    {
      forall j | 0 <= j < |reps| && j != i
        ensures reps[j].Shape() && reps[j].Valid() && reps[j].me == j as uint64 && reps[j].n == n
        ensures Tied(reps[j], j, Last()) && reps[j].Repr <= Repr && this !in reps[j].Repr
      {
        assert reps[j] == old(reps[j]);
        assert old(reps[j].Shape());
        assert old(Tied(reps[j], j, Last()));
      }
    }

    // Replica i restarted (a fresh replica that sent nothing and counted no Accepted message),
    // the others unchanged, and s' is a system step from the last state s whose host i is the
    // restarted replica's, the others' as in s, its wire holding s's: the run grows by s', and
    // the Ready of the recovery joins the returned ones.
    ghost method GrowCut(i: nat, s': Sy.Sys, r: Ready, from: uint64)
      requires Owns() && i < |reps| && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
      requires Sy.ImplNext(c, Last(), s') && s'.abs.hosts == Last().abs.hosts[i := reps[i].AbsHost()]
      requires Last().wire <= s'.wire
      requires reps[i].sentLog == [] && reps[i].acked == {} && reps[i].CommitsAre(r, from)
      modifies this
      ensures Valid() && Repr == old(Repr) && reps == old(reps)
      ensures run == old(run) + [s'] && readies == old(readies) + [(|run| - 1, i, r)]
    {
      Append(i, s', r, from);
    }

    // The tail of Grow, GrowRun, GrowCrash and GrowCut: the run grows by s', a system step from
    // its last state s whose hosts are s's but replica i's, which is reps[i]'s (Tied to s'), its
    // wire holding s's; the others unchanged. Valid() holds again, and r, the Ready of replica
    // i's step (its commits from `from`), joins the returned ones.
    ghost method Append(i: nat, s': Sy.Sys, r: Ready, from: uint64)
      requires Owns() && i < |reps| && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i :: Tied(reps[j], j, Last())
      requires Sy.ImplNext(c, Last(), s') && s'.abs.hosts == Last().abs.hosts[i := reps[i].AbsHost()]
      requires Last().wire <= s'.wire && Tied(reps[i], i, s') && reps[i].CommitsAre(r, from)
      modifies this
      ensures Valid() && Repr == old(Repr) && reps == old(reps)
      ensures run == old(run) + [s'] && readies == old(readies) + [(|run| - 1, i, r)]
    {
      reveal Inner();
      var s, rep := Last(), reps[i];
      Extend(c, run, s');
      Rd.NextNetGrows(c, s, s');
      rep.CommitsAreCommitted(r, from);
      run := run + [s'];
      readies := readies + [(|run| - 1, i, r)];
      assert Owns();
      forall j | 0 <= j < |reps| ensures Tied(reps[j], j, s') {
        if j != i {
          assert Tied(reps[j], j, s);
        }
      }
      forall e | e in readies
        ensures e.0 < |run| && e.1 < |run[e.0].abs.hosts| && Rd.ReadyCommitted(e.2, run[e.0].abs.hosts[e.1])
      {
        if e in old(readies) {
          assert run[e.0] == old(run)[e.0];
        }
      }
    }

    // A client's request for val, to replica i, enters the network (ClientSends).
    ghost method Request(i: nat, val: S.Value)
      requires Valid() && i < |reps|
      modifies this
      ensures Valid() && Repr == old(Repr) && reps == old(reps) && readies == old(readies)
      ensures run == old(run) + [Last()] && Sy.ClientSends(c, old(Last()), Last(), i, val)
      ensures S.Request(i, i, val) in Last().abs.net
      ensures Last().wire == old(Last().wire) && Last().abs.net == old(Last().abs.net) + {S.Request(i, i, val)}
    {
      reveal Inner();
      var s := Last();
      var s' := Sy.Sys(P.State(s.abs.hosts, s.abs.net + {S.Request(i, i, val)}), s.wire);
      assert Sy.ClientSends(c, s, s', i, val);
      Extend(c, run, s');
      run := run + [s'];
      assert Owns();
      forall j | 0 <= j < |reps| ensures Tied(reps[j], j, s') {
        assert Tied(reps[j], j, s);
      }
      forall e | e in readies
        ensures e.0 < |run| && e.1 < |run[e.0].abs.hosts| && Rd.ReadyCommitted(e.2, run[e.0].abs.hosts[e.1])
      {
        assert run[e.0] == old(run)[e.0];
      }
    }

    // The packets the Ready of replica i's last step carries are on the wire.
    lemma CarriedOnWire(i: nat, r: Ready, t: seq<O.Out>, log0: seq<Packet>, recs0: seq<Record>)
      requires Valid() && i < |reps| && reps[i].ReadyIs(r, t, log0, recs0)
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
    {
      reveal Inner();
      forall q | q in r.early || q in r.packets ensures q in Last().wire {
        ReadySent(reps[i].me, t, q);
        assert q in reps[i].sentLog;
        assert Tied(reps[i], i, Last());
      }
    }

    // THEOREM: the commits of all Readies the replicas returned agree per slot, and each is a
    // requested value or the no-op.
    lemma ClusterAgreement()
      requires Valid()
      ensures AllAgree(readies, Last().abs.net)
    {
      reveal Inner();
      ReadiesAllAgree(c, run, readies);
    }

    // ---- the driver's calls -------------------------------------------------------------------

    // The network delivers p, a packet sent before, to replica i.
    method Deliver(i: uint64, p: Packet) returns (r: Ready)
      requires Valid() && i < n && p in Last().wire
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures Grew(old(Last()), Last())
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      assert OT.OnWire(p, s.abs.net);
      ghost var h0, log0, recs0, from := rep.AbsHost(), rep.sentLog, rep.recLog, rep.commitUpto;
      ghost var moves, t;
      r, moves, t := rep.Receive(p, s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      Grow(i as nat, h0, log0, moves, r, from);
      CarriedOnWire(i as nat, r, t, log0, recs0);
      ClusterAgreement();
    }

    // A tick of replica i's clock.
    method Tick(i: uint64) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures Grew(old(Last()), Last())
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0, recs0, from := rep.AbsHost(), rep.sentLog, rep.recLog, rep.commitUpto;
      ghost var moves, t;
      r, moves, t := rep.Tick(s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      Grow(i as nat, h0, log0, moves, r, from);
      CarriedOnWire(i as nat, r, t, log0, recs0);
      ClusterAgreement();
    }

    // A client asks replica i to decide val: its request enters the network (ClientSends),
    // then replica i's Propose receives it.
    method Propose(i: uint64, val: Value) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures |run| == |old(run)| + 2 && run[..|old(run)|] == old(run)
      ensures readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures AllAgree(readies, Last().abs.net)
    {
      Request(i as nat, val);
      ghost var run1 := run;
      r := ProposeRequested(i, val);
      assert run[..|old(run)|] == run1[..|old(run)|] == old(run);
    }

    // Replica i's Propose of val, whose request is in the network.
    method ProposeRequested(i: uint64, val: Value) returns (r: Ready)
      requires Valid() && i < n && S.Request(i as nat, i as nat, val) in Last().abs.net
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures Grew(old(Last()), Last())
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0, recs0, from := rep.AbsHost(), rep.sentLog, rep.recLog, rep.commitUpto;
      ghost var moves, t;
      r, moves, t := rep.Propose(val, s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      Grow(i as nat, h0, log0, moves, r, from);
      CarriedOnWire(i as nat, r, t, log0, recs0);
      ClusterAgreement();
    }

    // Leader i starts confirming that it still leads (a read's confirmation).
    method ConfirmRead(i: uint64) returns (r: Ready, seqNo: uint64, readSlot: uint64)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures Grew(old(Last()), Last())
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0, recs0, from := rep.AbsHost(), rep.sentLog, rep.recLog, rep.commitUpto;
      ghost var moves, t;
      r, seqNo, readSlot, moves, t := rep.ConfirmRead(s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      Grow(i as nat, h0, log0, moves, r, from);
      CarriedOnWire(i as nat, r, t, log0, recs0);
      ClusterAgreement();
    }

    // Replica i drops the slots below upto (its state machine holds a snapshot of them).
    method Truncate(i: uint64, upto: uint64) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures Grew(old(Last()), Last())
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0, recs0, from := rep.AbsHost(), rep.sentLog, rep.recLog, rep.commitUpto;
      ghost var ok := rep.logStart < upto <= rep.commitUpto && upto <= SLOT_LIMIT;
      ghost var acked0 := rep.acked;
      assert acked0 <= s.abs.net && forall q | q in log0 :: q in s.wire;
      ghost var t;
      r, t := rep.Truncate(upto);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      GrowRun(i as nat, h0, R.TruncateMoves(h0, upto as nat, ok), r, from);
      CarriedOnWire(i as nat, r, t, log0, recs0);
      ClusterAgreement();
    }

    // Replica i installs a snapshot of the slots below upto (from another member).
    method InstallSnapshot(i: uint64, upto: uint64) returns (r: Ready)
      requires Valid() && i < n
      modifies Repr
      ensures Valid() && Repr == old(Repr)
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures forall q | q in r.early || q in r.packets :: q in Last().wire
      ensures Grew(old(Last()), Last())
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0, recs0, cu0 := rep.AbsHost(), rep.sentLog, rep.recLog, rep.commitUpto;
      ghost var ok := cu0 < upto <= SLOT_LIMIT;
      ghost var acked0 := rep.acked;
      assert acked0 <= s.abs.net && forall q | q in log0 :: q in s.wire;
      ghost var t;
      r, t := rep.InstallSnapshot(upto);
      ghost var from := if ok then upto else cu0;
      assert rep.CommitsAre(r, from) && rep.sentLog == log0 && rep.acked <= acked0;
      assert RR.Run(rep.Consts(), rep.me as nat, h0, {}, R.SnapshotMoves(h0, upto as nat, ok), rep.AbsHost());
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      assert rep.Consts() == c && rep.me as nat == i as nat;
      GrowRun(i as nat, h0, R.SnapshotMoves(h0, upto as nat, ok), r, from);
      CarriedOnWire(i as nat, r, t, log0, recs0);
      ClusterAgreement();
    }

    // Replica i crashes and restarts: a fresh replica (the constructor) replays recs, the records
    // the old one emitted but for a tail of commit records that did not become durable
    // (R.LosesCommits), then FinishRecovery reports its committed slots. The system takes the
    // protocol's Crash of host i (Replica.RestartIsCrash).
    method Restart(i: uint64, recs: seq<Record>) returns (r: Ready)
      requires Valid() && i < n && R.LosesCommits(reps[i].recLog, recs) && |recs| < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures AllAgree(readies, Last().abs.net)
      // a crash part-way through the recovery (which emits no record) is this restart again,
      // from the same records
      ensures reps[i].recLog == recs && R.LosesCommits(reps[i].recLog, recs)
    {
      ghost var s := Last();
      Parts(i as nat);
      StepFromLast(i as nat);
      ghost var rep0 := reps[i];
      rep0.RestartIsCrash(recs);
      ghost var d := R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat);
      assert P.Crash(c, i as nat, s.abs.hosts[i], d, {});
      ghost var from;
      var rep;
      rep, r, from := Recovered(i, n, electionTicks, heartbeatTicks, recs);
      assert rep.Repr !! old(Repr);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      reps := reps[i := rep];
      Repr := Repr + rep.Repr;
      Swapped(i as nat);
      GrowCrash(i as nat, d, r, from);
      ClusterAgreement();
    }

    // The crash that ends replica i's whole step (r0: its Ready; t: its trail from the last
    // state s, where its host was at h0, its packet log at log0, its durable records disk), the
    // others unchanged: only the step's first kk records became durable (kk: k, at most all of
    // them), and only the packets left (when they may have left by then, Cr.MayHaveLeft; else
    // none) reached the wire. A fresh replica replays disk + r0.records[..kk] (Recovered). The
    // run grows by one system step, the crashed step (Replica.EveryCutIsCrashStep), to the state
    // whose host i is the fresh replica's; the step's Ready is not returned (it was never
    // honoured), only the recovery's.
    method CrashTail(i: uint64, disk: seq<Record>, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves: seq<RR.Move>,
                     r0: Ready, ghost t: seq<O.Out>, k: uint64, ghost left: seq<Packet>)
      returns (r: Ready, ghost pkts: seq<Packet>, ghost kept: seq<Record>)
      requires Owns() && i < n && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i as nat :: Tied(reps[j], j, Last())
      requires reps[i].StepOk(Last().abs, h0, log0, moves) && reps[i].ReadyIs(r0, t, log0, disk)
      requires Cr.Rebuilt(disk) == h0.(leader := P.NotLeader) && forall q | q in log0 :: q in Last().wire
      requires Cr.EveryCutCovered(c, i, h0, log0, Last().abs.net, disk, t)
      requires |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies this
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Sy.ImplNext(c, old(Last()), Last())
      ensures Last().wire == old(Last().wire) + (set j | 0 <= j < |pkts| :: pkts[j])
      ensures pkts == left || pkts == []
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      var kk := k;
      if |r0.records| < k as int {
        kk := |r0.records| as uint64;
      }
      pkts := if Cr.MayHaveLeft(r0.records, r0.early, r0.early + r0.packets, kk as nat, left) then left else [];
      ghost var s' := CutStep(i as nat, disk, h0, log0, moves, r0, t, kk as nat, pkts);
      kept := r0.records[..kk];
      r := ReplaceAt(i, disk + r0.records[..kk], s');
    }

    // What a crash part-way through a step ends with (CrashTail, QuietCrashTail): replica i is
    // replaced by a fresh one that replays recs (Recovered), the others unchanged, and the run
    // grows by s', the crashed step (a system step from the last state to one whose host i is
    // what recs rebuild). Returned: the recovery's Ready.
    method ReplaceAt(i: uint64, recs: seq<Record>, ghost s': Sy.Sys) returns (r: Ready)
      requires Owns() && i < n && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i as nat :: Tied(reps[j], j, Last())
      requires |recs| < 0x1_0000_0000_0000_0000
      requires Sy.ImplNext(c, Last(), s') && s'.abs.hosts == Last().abs.hosts[i := Cr.Rebuilt(recs)]
      requires Last().wire <= s'.wire
      modifies this
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [s'] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == recs
    {
      ghost var from;
      var rep;
      rep, r, from := Recovered(i, n, electionTicks, heartbeatTicks, recs);
      assert rep.AbsHost() == Cr.Rebuilt(recs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      reps := reps[i := rep];
      Repr := Repr + rep.Repr;
      Replaced(i as nat);
      GrowCut(i as nat, s', r, from);
      ClusterAgreement();
    }

    // The crash that ends replica i's step that sends nothing and is a run of its host's steps
    // (Truncate, InstallSnapshot: moves from h0; r0: its Ready, at most one record,
    // Cr.AtMostOne; t: its trail), the others unchanged: the step's first kk records (k, at most
    // all) became durable, so none or its one record. As CrashTail, with no packet to leave.
    method QuietCrashTail(i: uint64, disk: seq<Record>, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves: seq<RR.Move>,
                          r0: Ready, ghost t: seq<O.Out>, k: uint64)
      returns (r: Ready, ghost kept: seq<Record>)
      requires Owns() && i < n && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int && ReadiesHeld(run, readies)
      requires forall j | 0 <= j < |reps| && j != i as nat :: Tied(reps[j], j, Last())
      requires reps[i].ReadyIs(r0, t, log0, disk) && reps[i].sentLog == log0 && Last().abs.hosts[i] == h0
      requires RR.Run(c, i as nat, h0, {}, moves, reps[i].AbsHost()) && Cr.AtMostOne(r0.records)
      requires Cr.Rebuilt(disk) == h0.(leader := P.NotLeader) && forall q | q in log0 :: q in Last().wire
      requires |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies this
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Sy.ImplNext(c, old(Last()), Last()) && Last().wire == old(Last().wire)
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      var kk := k;
      if |r0.records| < k as int {
        kk := |r0.records| as uint64;
      }
      ghost var s' := QuietCutStep(i as nat, disk, h0, log0, moves, r0, t, kk as nat);
      kept := r0.records[..kk];
      r := ReplaceAt(i, disk + r0.records[..kk], s');
    }

    // The crash of replica i at cut k of its step that sends nothing (Truncate,
    // InstallSnapshot): a system step from the last state (Cr.EveryQuietCut: the cut is before
    // or after the step's one record; Replica.QuietCrashPartWay), with nothing new on the wire.
    lemma QuietCutStep(i: nat, disk: seq<Record>, h0: P.Host, log0: seq<Packet>, moves: seq<RR.Move>,
                       r0: Ready, t: seq<O.Out>, k: nat) returns (s': Sy.Sys)
      requires Owns() && i < n as nat && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int
      requires reps[i].ReadyIs(r0, t, log0, disk) && reps[i].sentLog == log0 && Last().abs.hosts[i] == h0
      requires RR.Run(c, i, h0, {}, moves, reps[i].AbsHost()) && Cr.AtMostOne(r0.records)
      requires Cr.Rebuilt(disk) == h0.(leader := P.NotLeader) && forall q | q in log0 :: q in Last().wire
      requires k <= |r0.records|
      ensures Sy.ImplNext(c, Last(), s')
      ensures s'.abs.hosts == Last().abs.hosts[i := Cr.Rebuilt(disk + r0.records[..k])]
      ensures s'.wire == Last().wire
    {
      var s, rep0 := Last(), reps[i];
      LastFacts(c, run);
      Cr.EveryQuietCut(r0.records, k);
      var none: seq<Packet> := [];
      s' := rep0.QuietCrashPartWay(s.abs, s.wire, h0, log0, disk, moves, r0, t, k, none);
      assert (set j | 0 <= j < |none| :: none[j]) == {};
    }

    // The crash of replica i at cut k of its whole step, with pkts on the wire: a system step
    // from the last state (Replica.EveryCutIsCrashStep; the last state is Prepared, being
    // reachable: Prep.ImplPrepared).
    lemma CutStep(i: nat, disk: seq<Record>, h0: P.Host, log0: seq<Packet>, moves: seq<RR.Move>,
                  r0: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Owns() && i < n as nat && Sy.ImplReachable(c, run) && |Last().abs.hosts| == n as int
      requires reps[i].StepOk(Last().abs, h0, log0, moves) && reps[i].ReadyIs(r0, t, log0, disk)
      requires Cr.Rebuilt(disk) == h0.(leader := P.NotLeader) && forall q | q in log0 :: q in Last().wire
      requires Cr.EveryCutCovered(c, i as uint64, h0, log0, Last().abs.net, disk, t)
      requires k <= |r0.records| && Cr.MayHaveLeft(r0.records, r0.early, r0.early + r0.packets, k, pkts)
      ensures Sy.ImplNext(c, Last(), s')
      ensures s'.abs.hosts == Last().abs.hosts[i := Cr.Rebuilt(disk + r0.records[..k])]
      ensures s'.wire == Last().wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      var s, rep0 := Last(), reps[i];
      Prep.ImplPrepared(c, run);
      s' := rep0.EveryCutIsCrashStep(s.abs, s.wire, h0, log0, disk, moves, r0, t, k, pkts);
    }

    // The network delivers p to replica i, whose durable records are disk, and replica i
    // crashes part-way through the step (CrashTail): its first k records durable (at most all),
    // the packets left on the wire if they may have left by then. Returned: the recovery's Ready.
    method DeliverThenCrash(i: uint64, p: Packet, disk: seq<Record>, k: uint64, ghost left: seq<Packet>)
      returns (r: Ready, ghost pkts: seq<Packet>, ghost kept: seq<Record>)
      requires Valid() && i < n && p in Last().wire
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire) + (set j | 0 <= j < |pkts| :: pkts[j])
      ensures pkts == left || pkts == []
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      assert OT.OnWire(p, s.abs.net);
      ghost var h0, log0 := rep.AbsHost(), rep.sentLog;
      ghost var moves, t;
      var r0;
      r0, moves, t := rep.Receive(p, s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      r, pkts, kept := CrashTail(i, disk, h0, log0, moves, r0, t, k, left);
    }

    // A tick of replica i's clock, and a crash part-way through it (as DeliverThenCrash).
    method TickThenCrash(i: uint64, disk: seq<Record>, k: uint64, ghost left: seq<Packet>)
      returns (r: Ready, ghost pkts: seq<Packet>, ghost kept: seq<Record>)
      requires Valid() && i < n
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire) + (set j | 0 <= j < |pkts| :: pkts[j])
      ensures pkts == left || pkts == []
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0 := rep.AbsHost(), rep.sentLog;
      ghost var moves, t;
      var r0;
      r0, moves, t := rep.Tick(s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      r, pkts, kept := CrashTail(i, disk, h0, log0, moves, r0, t, k, left);
    }

    // A client asks replica i to decide val (its request enters the network, ClientSends), and
    // replica i crashes part-way through its Propose (as DeliverThenCrash).
    method ProposeThenCrash(i: uint64, val: Value, disk: seq<Record>, k: uint64, ghost left: seq<Packet>)
      returns (r: Ready, ghost pkts: seq<Packet>, ghost kept: seq<Record>)
      requires Valid() && i < n
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures |run| == |old(run)| + 2 && run[..|old(run)|] == old(run)
      ensures readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire) + (set j | 0 <= j < |pkts| :: pkts[j])
      ensures pkts == left || pkts == []
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      Request(i as nat, val);
      ghost var run1 := run;
      r, pkts, kept := ProposeRequestedThenCrash(i, val, disk, k, left);
      assert run[..|old(run)|] == run1[..|old(run)|] == old(run);
    }

    // Replica i's Propose of val, whose request is in the network, and a crash part-way
    // through it (as DeliverThenCrash).
    method ProposeRequestedThenCrash(i: uint64, val: Value, disk: seq<Record>, k: uint64, ghost left: seq<Packet>)
      returns (r: Ready, ghost pkts: seq<Packet>, ghost kept: seq<Record>)
      requires Valid() && i < n && S.Request(i as nat, i as nat, val) in Last().abs.net
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire) + (set j | 0 <= j < |pkts| :: pkts[j])
      ensures pkts == left || pkts == []
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0 := rep.AbsHost(), rep.sentLog;
      ghost var moves, t;
      var r0;
      r0, moves, t := rep.Propose(val, s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      r, pkts, kept := CrashTail(i, disk, h0, log0, moves, r0, t, k, left);
    }

    // Leader i starts confirming a read, and crashes part-way through (as DeliverThenCrash).
    method ConfirmReadThenCrash(i: uint64, disk: seq<Record>, k: uint64, ghost left: seq<Packet>)
      returns (r: Ready, ghost pkts: seq<Packet>, ghost kept: seq<Record>)
      requires Valid() && i < n
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire) + (set j | 0 <= j < |pkts| :: pkts[j])
      ensures pkts == left || pkts == []
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0 := rep.AbsHost(), rep.sentLog;
      ghost var moves, t;
      var r0, seqNo, readSlot;
      r0, seqNo, readSlot, moves, t := rep.ConfirmRead(s.abs);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      r, pkts, kept := CrashTail(i, disk, h0, log0, moves, r0, t, k, left);
    }

    // Replica i truncates its log below upto (as Truncate) and crashes part-way through it
    // (QuietCrashTail): its one record durable (k > 0) or not. Returned: the recovery's Ready.
    method TruncateThenCrash(i: uint64, upto: uint64, disk: seq<Record>, k: uint64)
      returns (r: Ready, ghost kept: seq<Record>)
      requires Valid() && i < n
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire)
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0 := rep.AbsHost(), rep.sentLog;
      ghost var ok := rep.logStart < upto <= rep.commitUpto && upto <= SLOT_LIMIT;
      ghost var t;
      var r0;
      r0, t := rep.Truncate(upto);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      r, kept := QuietCrashTail(i, disk, h0, log0, R.TruncateMoves(h0, upto as nat, ok), r0, t, k);
    }

    // Replica i installs a snapshot of the slots below upto (as InstallSnapshot) and crashes
    // part-way through it (QuietCrashTail). Returned: the recovery's Ready.
    method InstallSnapshotThenCrash(i: uint64, upto: uint64, disk: seq<Record>, k: uint64)
      returns (r: Ready, ghost kept: seq<Record>)
      requires Valid() && i < n
      requires disk == reps[i].recLog && |disk| + k as int < 0x1_0000_0000_0000_0000
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures Last().wire == old(Last().wire)
      ensures AllAgree(readies, Last().abs.net)
      ensures reps[i].recLog == disk + kept && |kept| <= k as int  // the step's records kept
    {
      ghost var s := Last();
      Parts(i as nat);
      var rep := reps[i];
      StepFromLast(i as nat);
      ghost var h0, log0, cu0 := rep.AbsHost(), rep.sentLog, rep.commitUpto;
      ghost var ok := cu0 < upto <= SLOT_LIMIT;
      ghost var t;
      var r0;
      r0, t := rep.InstallSnapshot(upto);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      OthersKept(i as nat);
      r, kept := QuietCrashTail(i, disk, h0, log0, R.SnapshotMoves(h0, upto as nat, ok), r0, t, k);
    }

    // Replica i restarts from a checkpoint: a fresh replica replays cp + later', where cp is a
    // checkpoint's records (they rebuild the host that the durable prefix pre rebuilds, truncated
    // at t, below which that host committed every slot), later' the records after pre less a
    // tail of commit records (Replica.TruncatedCheckpointRestartIsCrashStep's premises, the
    // driver's obligations). The system takes the crash of host i after a Truncate(t) of its
    // host.
    method RestartFromCheckpoint(i: uint64, cp: seq<Record>, ghost pre: seq<Record>, later': seq<Record>, ghost t: nat)
      returns (r: Ready)
      requires Valid() && i < n && |cp + later'| < 0x1_0000_0000_0000_0000
      requires R.LosesCommits(reps[i].recLog, pre + later')
      requires var x := R.ApplyAll(Rep.InitHost(), pre, WINDOW as nat, SLOT_LIMIT as nat);
               && (forall s | x.logStart <= s < t :: s in x.committed)
               && R.ApplyAll(Rep.InitHost(), cp, WINDOW as nat, SLOT_LIMIT as nat) == Ck.TruncatedTo(x, t)
      requires reps[i].emitFrom <= |pre|
      modifies Repr
      ensures Valid() && old(Repr) <= Repr && fresh(Repr - old(Repr))
      ensures run == old(run) + [Last()] && readies == old(readies) + [(|run| - 1, i as nat, r)]
      ensures AllAgree(readies, Last().abs.net)
    {
      ghost var s := Last();
      Parts(i as nat);
      StepFromLast(i as nat);
      ghost var rep0 := reps[i];
      reveal Inner();
      assert Tied(rep0, i as nat, s);
      ghost var s' := rep0.TruncatedCheckpointRestartIsCrashStep(s, cp, pre, later', t);
      ghost var from;
      var rep;
      rep, r, from := Recovered(i, n, electionTicks, heartbeatTicks, cp + later');
      assert rep.Repr !! old(Repr);
      assert forall j | 0 <= j < |reps| && j != i as nat :: unchanged(reps[j].Repr);
      reps := reps[i := rep];
      Repr := Repr + rep.Repr;
      Swapped(i as nat);
      GrowCut(i as nat, s', r, from);
      ClusterAgreement();
    }
  }
}
