// The Prepare a PromiseCut reads (ImplCrash.CrashAtPromise): in every reachable protocol state,
// a leader of bal sent Prepare(bal) to every member (StartPrepare, before it leads), so the
// sender of an Accept at b sent its destination a Prepare(b) (Prepared). Proven of every
// reachable protocol state (ReachablePrepared, by PreparedNext and PreparedStep) and so of every
// reachable state of the implementation (ImplPrepared); AcceptHasPrepare reads it for an Accept
// on the wire.
module ImplPrepared {
  import opened ImplTypes
  import S = Spec
  import P = Protocol
  import RM = ImplAbsMessages
  import Sy = ImplSystem

  // A leader of bal sent Prepare(bal) to every member; the sender of an Accept sent its
  // destination a Prepare at its ballot.
  ghost predicate Prepared(c: P.Constants, s: P.State) {
    && (forall i | 0 <= i < |s.hosts| && s.hosts[i].leader.Leading? ::
          forall j: nat | j < c.n :: S.Prepare(i, j, s.hosts[i].leader.bal) in s.net)
    && (forall m | m in s.net && m.Accept? && m.dst < c.n :: S.Prepare(m.src, m.dst, m.bal) in s.net)
  }

  // Prepared holds in every reachable protocol state.
  lemma ReachablePrepared(c: P.Constants, behavior: seq<P.State>)
    requires P.Reachable(c, behavior)
    ensures Prepared(c, behavior[|behavior| - 1])
  {
    var k := 0;
    while k < |behavior| - 1
      invariant 0 <= k <= |behavior| - 1 && Prepared(c, behavior[k])
    {
      Sy.NextAt(c, behavior, k);
      PreparedNext(c, behavior[k], behavior[k + 1]);
      k := k + 1;
    }
  }

  lemma PreparedNext(c: P.Constants, s: P.State, s': P.State)
    requires Prepared(c, s) && P.Next(c, s, s')
    ensures Prepared(c, s')
  {
    if i: S.HostId, val: S.Value :| P.ClientRequest(c, s, s', i, val) {
    } else {
      var i: S.HostId, step: P.Step, sent: set<S.Message> :| P.NextStep(c, s, s', i, step, sent);
      PreparedStep(c, s, s', i, step, sent);
    }
  }

  lemma PreparedStep(c: P.Constants, s: P.State, s': P.State, i: S.HostId, step: P.Step, sent: set<S.Message>)
    requires Prepared(c, s) && P.NextStep(c, s, s', i, step, sent)
    ensures Prepared(c, s')
  {
    var h, h' := s.hosts[i], s'.hosts[i];
    // Host i leads bal afterwards only if it led bal before, or it just sent Prepare(bal) to all.
    assert h'.leader.Leading? ==> (h.leader.Leading? && h'.leader.bal == h.leader.bal)
                                  || (forall j: nat | j < c.n :: S.Prepare(i, j, h'.leader.bal) in sent) by {
      match step {
        case StartPrepareStep(bal) =>
          forall j: nat | j < c.n ensures S.Prepare(i, j, bal) in sent {}
        case _ =>
      }
    }
    // An Accept it sends is at the ballot it leads.
    assert forall m | m in sent && m.Accept? :: h.leader.Leading? && m.src == i && m.bal == h.leader.bal;
    forall k | 0 <= k < |s'.hosts| && s'.hosts[k].leader.Leading?
      ensures forall j: nat | j < c.n :: S.Prepare(k, j, s'.hosts[k].leader.bal) in s'.net
    {
      if k != i {
        assert s'.hosts[k] == s.hosts[k];
      }
    }
  }

  // The Prepare of an Accept on the wire of a state where Prepared holds.
  lemma AcceptHasPrepare(c: P.Constants, s: P.State, p: Packet)
    requires Prepared(c, s) && RM.PacketRefines(p, s.net) && p.msg.Accept? && p.dst as nat < c.n
    ensures S.Prepare(p.src as nat, p.dst as nat, p.msg.bal) in s.net
  {
    assert S.Accept(p.src as nat, p.dst as nat, p.msg.bal, p.msg.slot as nat, p.msg.val) in s.net;
  }

  // Prepared holds in every reachable state of the implementation.
  lemma ImplPrepared(c: P.Constants, run: seq<Sy.Sys>)
    requires Sy.ImplReachable(c, run)
    ensures Prepared(c, run[|run| - 1].abs)
  {
    var behavior := Sy.ImplReachableIsProtocolReachable(c, run);
    ReachablePrepared(c, behavior);
  }
}
