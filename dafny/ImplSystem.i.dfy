// The system-level composition of the refinement: the hosts of the executable core, each
// handler a run of protocol steps of its host (ImplAbsRuns.Run, proven per handler in
// Impl.i.dfy), make a behavior of the protocol, so Agreement and CommittedWasChosen hold of
// the abstraction of the implementation's state.
//
// The system is modelled as the protocol state its hosts abstract to (`abs`: every host's
// abstract state and the abstract network) together with `wire`, every packet the cores ever
// sent (in flight, lost, duplicated or delivered: the wire only grows, like the protocol's
// network). One step of the system is one host taking a run of protocol steps that receive
// only messages of the abstract network, and putting on the wire packets that are images of
// what those steps sent, or packets already on it (re-sends) (ImplStep). What a per-handler
// theorem of Impl.i.dfy gives (a trail, RR.Trail: its re-sends are packets its host sent before,
// so on the wire) is exactly the premise of ImplStep for that handler; `WireImage` is what a
// handler may rely on of the packet it receives. A host's step may be cut short by a crash
// (ImplCrashStep: the protocol's Crash after its run, with only some of its packets sent).
//
// Everything here is ghost.
module ImplSystem {
  import opened Native
  import opened Ballots
  import S = Spec
  import P = Protocol
  import I = ImplTypes
  import R = ImplAbstraction
  import RM = ImplAbsMessages
  import RR = ImplAbsRuns
  import A = AgreementProof
  import PI = ProtocolInvariant
  import IP = InvariantProof
  import V = ValidityProof

  datatype Sys = Sys(ghost abs: P.State, ghost wire: set<I.Packet>)

  ghost predicate SysInit(c: P.Constants, s: Sys) {
    P.Init(c, s.abs) && s.wire == {}
  }

  // The system state after host i ran `moves` to h' and sent `pkts`.
  ghost function After(s: Sys, i: nat, h': P.Host, moves: seq<RR.Move>, pkts: seq<I.Packet>): Sys
    requires i < |s.abs.hosts|
  {
    Sys(P.State(s.abs.hosts[i := h'], s.abs.net + RR.SentBy(moves)), s.wire + (set k | 0 <= k < |pkts| :: pkts[k]))
  }

  // One step of the implementation: host i receives only messages of the abstract network
  // (`recv`) or messages it sent itself earlier in the step, takes the run `moves` from its
  // abstract state to h' (RR.RunG), and sends `pkts`, each the image of a message the run sent
  // (a Learn: backed, RM.LearnBacked) or a packet already on the wire (a re-send: a leader's
  // Accept after a heartbeat tick). This is what a step of the core ensures (RR.StepTrail).
  ghost predicate ImplStep(c: P.Constants, s: Sys, s': Sys, i: nat, recv: set<S.Message>, moves: seq<RR.Move>,
                           h': P.Host, pkts: seq<I.Packet>) {
    && P.WF(c, s.abs)
    && i < |s.abs.hosts|
    && recv <= s.abs.net
    && RR.RunG(c, i, s.abs.hosts[i], recv, moves, h')
    && (forall k | 0 <= k < |pkts| ::
          (RM.PacketRefines(pkts[k], RR.SentBy(moves)) && RM.LearnBacked(pkts[k], RR.SentBy(moves), recv + RR.SentBy(moves)))
          || pkts[k] in s.wire)
    && s' == After(s, i, h', moves, pkts)
  }

  // A client asks host i to decide val: its request enters the abstract network (the protocol's
  // ClientRequest); hosts and wire are unchanged. Replica.Propose(val) receives this request.
  ghost predicate ClientSends(c: P.Constants, s: Sys, s': Sys, i: nat, val: S.Value) {
    P.ClientRequest(c, s.abs, s'.abs, i, val) && s'.wire == s.wire
  }

  // A step cut short by a crash: host i takes a step as ImplStep says, of whose packets only
  // `pkts` reach the wire, then crashes and restarts at d: the protocol's Crash of h' (its
  // durable state kept, committed entries perhaps lost). ImplCrash.i.dfy proves which cuts of a
  // core's step (the records that became durable) are such a step.
  ghost predicate ImplCrashStep(c: P.Constants, s: Sys, s': Sys, i: nat, recv: set<S.Message>, moves: seq<RR.Move>,
                                h': P.Host, pkts: seq<I.Packet>, d: P.Host) {
    && i < |s.abs.hosts|
    && ImplStep(c, s, After(s, i, h', moves, pkts), i, recv, moves, h', pkts)
    && P.Crash(c, i, h', d, {})
    && s' == Restarted(After(s, i, h', moves, pkts), i, d)
  }

  // The system state s with host i restarted at d.
  ghost function Restarted(s: Sys, i: nat, d: P.Host): Sys
    requires i < |s.abs.hosts|
  {
    Sys(P.State(s.abs.hosts[i := d], s.abs.net), s.wire)
  }

  ghost predicate ImplNext(c: P.Constants, s: Sys, s': Sys) {
    || (exists i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host, pkts: seq<I.Packet> ::
          ImplStep(c, s, s', i, recv, moves, h', pkts))
    || (exists i: nat, val: S.Value :: ClientSends(c, s, s', i, val))
    || (exists i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host, pkts: seq<I.Packet>, d: P.Host ::
          ImplCrashStep(c, s, s', i, recv, moves, h', pkts, d))
  }

  ghost predicate ImplReachable(c: P.Constants, run: seq<Sys>) {
    && |run| > 0
    && SysInit(c, run[0])
    && forall k {:trigger run[k]} | 0 <= k < |run| - 1 :: ImplNext(c, run[k], run[k + 1])
  }

  // Every packet on the wire is the image of a message of the abstract network (a Learn: one
  // backed by an Accepted of its ballot, RM.LearnBacked).
  ghost predicate WireRefines(s: Sys) {
    forall p | p in s.wire :: RM.PacketRefines(p, s.abs.net) && RM.LearnBacked(p, s.abs.net, s.abs.net)
  }

  // ---------------------------------------------------------------------------------------
  // One run of one host is a sequence of protocol steps of the whole system.

  // The protocol states a run of host i passes through, from s: one per step.
  ghost function Trace(s: P.State, i: nat, moves: seq<RR.Move>): (t: seq<P.State>)
    requires i < |s.hosts|
    ensures |t| == |moves| + 1 && t[0] == s
    decreases |moves|
  {
    if moves == [] then [s]
    else [s] + Trace(P.State(s.hosts[i := moves[0].post], s.net + moves[0].sent), i, moves[1..])
  }

  // A run of host i that receives only messages of the network recv <= s.net, or that it sent
  // earlier in the run, is a sequence of the protocol's Next steps, from s to the state where i
  // is at h' and the network has gained what the run sent.
  lemma RunIsSteps(c: P.Constants, s: P.State, i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host)
    requires P.WF(c, s) && i < |s.hosts| && recv <= s.net
    requires RR.RunG(c, i, s.hosts[i], recv, moves, h')
    ensures var t := Trace(s, i, moves);
            && t[|t| - 1] == P.State(s.hosts[i := h'], s.net + RR.SentBy(moves))
            && forall k {:trigger t[k]} | 0 <= k < |t| - 1 :: P.Next(c, t[k], t[k + 1])
    decreases |moves|
  {
    var t := Trace(s, i, moves);
    reveal RR.RunG();
    if moves == [] {
      assert s.hosts[i := s.hosts[i]] == s.hosts;
      assert s.net + RR.SentBy(moves) == s.net;
    } else {
      var mv := moves[0];
      var s1 := P.State(s.hosts[i := mv.post], s.net + mv.sent);
      // The first step reads from the network recv; it reads as well from the larger s.net.
      RR.HostStepNetMonotone(c, i, s.hosts[i], mv.post, recv, s.net, mv.sent, mv.step);
      assert P.NextStep(c, s, s1, i, mv.step, mv.sent);
      assert P.Next(c, s, s1);
      // The rest of the run, from s1: it reads recv and what mv sent, both in s1.net.
      assert RR.RunG(c, i, mv.post, recv + mv.sent, moves[1..], h');
      RunIsSteps(c, s1, i, recv + mv.sent, moves[1..], h');
      var t1 := Trace(s1, i, moves[1..]);
      assert t == [s] + t1;
      assert s1.hosts[i := h'] == s.hosts[i := h'];
      assert s.net + RR.SentBy(moves) == s1.net + RR.SentBy(moves[1..]);
      forall k | 0 <= k < |t| - 1 ensures P.Next(c, t[k], t[k + 1]) {
        if k > 0 {
          assert t[k] == t1[k - 1] && t[k + 1] == t1[k];
        }
      }
    }
  }

  // A protocol behavior extended by a sequence of Next steps is a behavior.
  lemma ExtendBehavior(c: P.Constants, behavior: seq<P.State>, t: seq<P.State>)
    requires P.Reachable(c, behavior)
    requires |t| > 0 && t[0] == behavior[|behavior| - 1]
    requires forall k {:trigger t[k]} | 0 <= k < |t| - 1 :: P.Next(c, t[k], t[k + 1])
    ensures P.Reachable(c, behavior + t[1..])
  {
    var b := behavior + t[1..];
    var m := |behavior|;
    assert |b| == m + |t| - 1;
    assert forall k | 0 <= k < m :: b[k] == behavior[k];
    assert forall k | m <= k < |b| :: b[k] == t[k - m + 1];
    forall k | 0 <= k < |b| - 1 ensures P.Next(c, b[k], b[k + 1]) {
      if k < m - 1 {
        NextAt(c, behavior, k);
      } else {
        NextAt(c, t, k - m + 1);
      }
    }
  }

  // The k-th step of a sequence of Next steps (one instantiation, by name).
  lemma NextAt(c: P.Constants, t: seq<P.State>, k: nat)
    requires k < |t| - 1
    requires forall j {:trigger t[j]} | 0 <= j < |t| - 1 :: P.Next(c, t[j], t[j + 1])
    ensures P.Next(c, t[k], t[k + 1])
  {
  }

  // ---------------------------------------------------------------------------------------
  // The wire.

  // Packets that refine what a run sent refine the grown network.
  lemma WireStep(c: P.Constants, s: Sys, s': Sys, i: nat, recv: set<S.Message>, moves: seq<RR.Move>,
                 h': P.Host, pkts: seq<I.Packet>)
    requires ImplStep(c, s, s', i, recv, moves, h', pkts) && WireRefines(s)
    ensures WireRefines(s')
  {
    forall p | p in s'.wire ensures RM.PacketRefines(p, s'.abs.net) && RM.LearnBacked(p, s'.abs.net, s'.abs.net) {
      if p in s.wire {
        RR.PacketRefinesMono(p, s.abs.net, s'.abs.net);
        RM.LearnBackedMono(p, s.abs.net, s.abs.net, s'.abs.net, s'.abs.net);
      } else {
        var k :| 0 <= k < |pkts| && pkts[k] == p;
        // not a re-send: p is new on the wire
        assert RM.PacketRefines(pkts[k], RR.SentBy(moves)) && RM.LearnBacked(pkts[k], RR.SentBy(moves), recv + RR.SentBy(moves));
        RR.PacketRefinesMono(p, RR.SentBy(moves), s'.abs.net);
        RM.LearnBackedMono(p, RR.SentBy(moves), recv + RR.SentBy(moves), s'.abs.net, s'.abs.net);
      }
    }
  }

  // What a handler may rely on of a packet it receives from the wire: its image is in the
  // abstract network (Accepted and Learn: some image, the others: the one their fields fix).
  // HeartbeatAck has no image; its handler takes no protocol step.
  lemma WireImage(s: Sys, p: I.Packet)
    requires WireRefines(s) && p in s.wire && !p.msg.HeartbeatAck?
    ensures exists a | a in s.abs.net :: RM.MsgRefines(p.src as nat, p.dst as nat, p.msg, a)
  {
    assert RM.PacketRefines(p, s.abs.net);
    var src, dst := p.src as nat, p.dst as nat;
    match p.msg {
      case Prepare(b, _) =>
        assert RM.MsgRefines(src, dst, p.msg, S.Prepare(src, dst, b));
      case Accept(b, slot, val) =>
        assert RM.MsgRefines(src, dst, p.msg, S.Accept(src, dst, b, slot as nat, val));
      case Commit(slot, val) =>
        assert RM.MsgRefines(src, dst, p.msg, S.Commit(src, dst, slot as nat, val));
      case Nack(pr) =>
        assert RM.MsgRefines(src, dst, p.msg, S.Nack(src, dst, pr));
      case Heartbeat(b, cu, _) =>
        assert RM.MsgRefines(src, dst, p.msg, S.Heartbeat(src, dst, b, cu as nat));
      case CatchUp(from) =>
        assert RM.MsgRefines(src, dst, p.msg, S.CatchUp(src, dst, from as nat));
      case Promise(b, ls, vs) =>
        assert RM.MsgRefines(src, dst, p.msg, S.Promise(src, dst, b, ls as nat, RM.SlotVotesMap(vs)));
      case Accepted(_, _) =>
      case Learn(_, _) =>
    }
  }

  // The protocol's invariant holds after a run of one host from a state where it holds.
  lemma InvAfterRun(c: P.Constants, s: P.State, i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host)
    requires PI.Inv(c, s) && i < |s.hosts| && recv <= s.net
    requires RR.RunG(c, i, s.hosts[i], recv, moves, h')
    ensures PI.Inv(c, P.State(s.hosts[i := h'], s.net + RR.SentBy(moves)))
  {
    RunIsSteps(c, s, i, recv, moves, h');
    var t := Trace(s, i, moves);
    var k := 0;
    while k < |t| - 1
      invariant 0 <= k <= |t| - 1 && PI.Inv(c, t[k])
    {
      NextAt(c, t, k);
      IP.NextPreservesInv(c, t[k], t[k + 1]);
      k := k + 1;
    }
  }

  // What a step of the core ensures (Replica.Receive, Tick, Propose: RR.StepTrail from the
  // host's abstraction in s, reading s's network) is a system step, whose packets are those
  // appended to the host's packet log (the packets before it are on the wire).
  lemma StepTrailIsImplStep(c: P.Constants, s: Sys, i: nat, log0: seq<I.Packet>, moves: seq<RR.Move>,
                            h': P.Host, log: seq<I.Packet>)
    requires P.WF(c, s.abs) && i < |s.abs.hosts|
    requires RR.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h', log)
    requires forall p | p in log0 :: p in s.wire
    ensures RR.StepTrail(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h', log) && log0 <= log
    ensures ImplStep(c, s, After(s, i, h', moves, log[|log0|..]), i, s.abs.net, moves, h', log[|log0|..])
  {
    RR.StepTrailIs(c, i, s.abs.hosts[i], log0, s.abs.net, moves, h', log);
    var pkts := log[|log0|..];
    forall k | 0 <= k < |pkts|
      ensures (RM.PacketRefines(pkts[k], RR.SentBy(moves)) && RM.LearnBacked(pkts[k], RR.SentBy(moves), s.abs.net + RR.SentBy(moves)))
              || pkts[k] in s.wire
    {
      assert pkts[k] == log[|log0| + k];
    }
  }

  // ---------------------------------------------------------------------------------------
  // The theorems.

  // Every reachable state of the implementation abstracts to a reachable state of the
  // protocol, and its wire refines that state's network.
  lemma ImplReachableIsProtocolReachable(c: P.Constants, run: seq<Sys>) returns (behavior: seq<P.State>)
    requires ImplReachable(c, run)
    ensures P.Reachable(c, behavior) && behavior[|behavior| - 1] == run[|run| - 1].abs
    ensures WireRefines(run[|run| - 1])
    decreases |run|
  {
    if |run| == 1 {
      behavior := [run[0].abs];
      return;
    }
    var prefix := run[..|run| - 1];
    assert forall k | 0 <= k < |prefix| :: prefix[k] == run[k];
    assert ImplReachable(c, prefix);
    var b0 := ImplReachableIsProtocolReachable(c, prefix);
    var s, s' := run[|run| - 2], run[|run| - 1];
    assert ImplNext(c, s, s');
    if i: nat, val: S.Value :| ClientSends(c, s, s', i, val) {
      assert P.Next(c, s.abs, s'.abs);
      ExtendBehavior(c, b0, [s.abs, s'.abs]);
      behavior := b0 + [s'.abs];
      assert behavior == b0 + [s.abs, s'.abs][1..];
      forall p | p in s'.wire ensures RM.PacketRefines(p, s'.abs.net) && RM.LearnBacked(p, s'.abs.net, s'.abs.net) {
        RR.PacketRefinesMono(p, s.abs.net, s'.abs.net);
        RM.LearnBackedMono(p, s.abs.net, s.abs.net, s'.abs.net, s'.abs.net);
      }
      return;
    }
    if i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host, pkts: seq<I.Packet>, d: P.Host :|
         ImplCrashStep(c, s, s', i, recv, moves, h', pkts, d) {
      behavior := CrashStepIsSteps(c, b0, s, s', i, recv, moves, h', pkts, d);
      return;
    }
    var i, recv, moves, h', pkts :| ImplStep(c, s, s', i, recv, moves, h', pkts);
    RunIsSteps(c, s.abs, i, recv, moves, h');
    var t := Trace(s.abs, i, moves);
    ExtendBehavior(c, b0, t);
    behavior := b0 + t[1..];
    assert behavior[|behavior| - 1] == t[|t| - 1];
    WireStep(c, s, s', i, recv, moves, h', pkts);
  }

  // A step cut short by a crash is the run's protocol steps followed by the protocol's Crash.
  lemma CrashStepIsSteps(c: P.Constants, b0: seq<P.State>, s: Sys, s': Sys, i: nat, recv: set<S.Message>,
                         moves: seq<RR.Move>, h': P.Host, pkts: seq<I.Packet>, d: P.Host) returns (behavior: seq<P.State>)
    requires P.Reachable(c, b0) && b0[|b0| - 1] == s.abs && WireRefines(s)
    requires ImplCrashStep(c, s, s', i, recv, moves, h', pkts, d)
    ensures P.Reachable(c, behavior) && behavior[|behavior| - 1] == s'.abs
    ensures WireRefines(s')
  {
    var mid := After(s, i, h', moves, pkts);
    RunIsSteps(c, s.abs, i, recv, moves, h');
    var t := Trace(s.abs, i, moves);
    ExtendBehavior(c, b0, t);
    var b1 := b0 + t[1..];
    assert b1[|b1| - 1] == mid.abs;
    CrashIsNext(c, mid, s', i, h', d);
    ExtendBehavior(c, b1, [mid.abs, s'.abs]);
    behavior := b1 + [mid.abs, s'.abs][1..];
    WireStep(c, s, mid, i, recv, moves, h', pkts);
  }

  // The restart of a host at the protocol's Crash of its state is a Next step.
  lemma CrashIsNext(c: P.Constants, mid: Sys, s': Sys, i: nat, h': P.Host, d: P.Host)
    requires P.WF(c, mid.abs) && i < |mid.abs.hosts| && mid.abs.hosts[i] == h'
    requires P.Crash(c, i, h', d, {}) && s' == Restarted(mid, i, d)
    ensures P.Next(c, mid.abs, s'.abs)
  {
    assert mid.abs.net + {} == mid.abs.net;
    assert P.NextStep(c, mid.abs, s'.abs, i, P.CrashStep, {});
  }

  // OnAccepted's premise holds in every reachable state, of the Accepted messages a leader
  // received (each is in the network, WireImage): an Accepted answers the Accept of its ballot
  // and slot (AcceptedHasAccept), and a leader's proposed map holds the value of every Accept
  // at its ballot (LeadersOk).
  lemma AckedValuesHold(c: P.Constants, run: seq<Sys>, i: nat, acked: set<S.Message>)
    requires ImplReachable(c, run)
    requires var s := run[|run| - 1].abs; i < |s.hosts| && acked <= s.net
    ensures R.AckedValues(acked, run[|run| - 1].abs.hosts[i].leader)
  {
    var behavior := ImplReachableIsProtocolReachable(c, run);
    A.ReachableInv(c, behavior);
    AckedValuesFromInv(c, run[|run| - 1].abs, i, acked);
  }

  // The same, of any state where the protocol's invariant holds.
  lemma AckedValuesFromInv(c: P.Constants, s: P.State, i: nat, acked: set<S.Message>)
    requires PI.Inv(c, s) && i < |s.hosts| && acked <= s.net
    ensures R.AckedValues(acked, s.hosts[i].leader)
  {
    var l := s.hosts[i].leader;
    forall x | x in acked && x.Accepted? && l.Leading? && x.bal == l.bal && x.slot in l.proposed
      ensures x.val == l.proposed[x.slot]
    {
      reveal PI.AcceptedHasAccept();
      reveal PI.LeadersOk();
      var a := S.Accept(x.bal.node as nat, x.src, x.bal, x.slot, x.val);
      assert a in s.net;
      assert PI.LeaderOkAt(c, s, i);
    }
  }

  // OnLearn's premise holds in every reachable state: a Learn(b, slot) on the wire to a host
  // that holds a vote at b in slot stands for a Commit of that vote's value, in the network.
  // The Learn is backed by an Accepted at b of the value in its Commit image (WireRefines); the
  // vote is the host's Accepted at b (HostVotesOk); each answers the Accept at b in slot
  // (AcceptedHasAccept), and there is one (AcceptUnique).
  lemma LearnValueHolds(c: P.Constants, run: seq<Sys>, p: I.Packet)
    requires ImplReachable(c, run)
    requires var s := run[|run| - 1];
             && p in s.wire && p.msg.Learn? && p.dst as nat < |s.abs.hosts|
             && var h := s.abs.hosts[p.dst];
                p.msg.slot as nat in h.votes && h.votes[p.msg.slot as nat].bal == p.msg.bal
    ensures var s := run[|run| - 1].abs;
            S.Commit(p.src as nat, p.dst as nat, p.msg.slot as nat, s.hosts[p.dst].votes[p.msg.slot as nat].val) in s.net
  {
    var behavior := ImplReachableIsProtocolReachable(c, run);
    A.ReachableInv(c, behavior);
    assert WireRefines(run[|run| - 1]);
    LearnValueFromInv(c, run[|run| - 1].abs, p);
  }

  // The same, of any state where the protocol's invariant holds, for a backed Learn.
  lemma LearnValueFromInv(c: P.Constants, s: P.State, p: I.Packet)
    requires PI.Inv(c, s) && RM.LearnBacked(p, s.net, s.net)
    requires && p.msg.Learn? && p.dst as nat < |s.hosts|
             && var h := s.hosts[p.dst];
                p.msg.slot as nat in h.votes && h.votes[p.msg.slot as nat].bal == p.msg.bal
    ensures S.Commit(p.src as nat, p.dst as nat, p.msg.slot as nat, s.hosts[p.dst].votes[p.msg.slot as nat].val) in s.net
  {
    var b, slot, dst := p.msg.bal, p.msg.slot as nat, p.dst as nat;
    var w := s.hosts[dst].votes[slot].val;
    assert RM.LearnBacked(p, s.net, s.net);
    var v :| S.Commit(p.src as nat, dst, slot, v) in s.net && RM.AcceptedAt(s.net, b, slot, v);
    var x :| x in s.net && x.Accepted? && x.bal == b && x.slot == slot && x.val == v;
    reveal PI.AcceptedHasAccept();
    reveal PI.HostVotesOk();
    reveal PI.AcceptUnique();
    assert PI.HostVotesOkAt(s, dst);
    assert PI.VotedFor(s.net, dst, b, slot, w);
    var mine := S.Accepted(dst, b.node as nat, b, slot, w);
    assert S.Accept(b.node as nat, dst, b, slot, w) in s.net;
    assert S.Accept(b.node as nat, x.src, b, slot, v) in s.net;
    assert v == w;
  }

  // THEOREM: in every reachable state of the implementation, the hosts' committed values
  // were chosen and agree, and at most one value is chosen per slot.
  lemma ImplAgreement(c: P.Constants, run: seq<Sys>, i: S.HostId, j: S.HostId, slot: S.Slot)
    requires ImplReachable(c, run)
    requires var s := run[|run| - 1].abs;
             i < |s.hosts| && j < |s.hosts| && slot in s.hosts[i].committed && slot in s.hosts[j].committed
    ensures var s := run[|run| - 1].abs;
            && S.Agreement(c.n, s.net)
            && S.Chosen(c.n, s.net, slot, s.hosts[i].committed[slot])
            && s.hosts[i].committed[slot] == s.hosts[j].committed[slot]
  {
    var behavior := ImplReachableIsProtocolReachable(c, run);
    A.AgreementInEveryReachableState(c, behavior);
    A.CommittedWasChosen(c, behavior, i, slot);
    A.CommittedAgree(c, behavior, i, j, slot);
  }

  // THEOREM (Validity): in every reachable state of the implementation, every chosen value is a
  // value some client requested (that a host's Propose received), or the no-op; so is every
  // value a host has committed.
  lemma ImplValidity(c: P.Constants, run: seq<Sys>, i: S.HostId, slot: S.Slot)
    requires ImplReachable(c, run)
    ensures S.Validity(c.n, run[|run| - 1].abs.net)
    ensures var s := run[|run| - 1].abs;
            i < |s.hosts| && slot in s.hosts[i].committed ==>
              s.hosts[i].committed[slot] == S.NoOp || S.Requested(s.net, s.hosts[i].committed[slot])
  {
    var behavior := ImplReachableIsProtocolReachable(c, run);
    V.Validity(c, behavior);
    var s := run[|run| - 1].abs;
    if i < |s.hosts| && slot in s.hosts[i].committed {
      V.CommittedFromClient(c, behavior, i, slot);
    }
  }
}
