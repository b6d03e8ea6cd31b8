// Validity: every value chosen or committed is a value some client requested, or the no-op.
// A value enters the protocol only in an Accept, whose value is a client's request, the no-op,
// a vote a promise reports or a value the leader has committed (Protocol.ValueSource); from
// there it travels into votes, Accepted and Promise messages, Commits and committed entries.
// The invariant below follows it along every step: every value any message or host holds came
// from a client or is the no-op.
module ValidityProof {
  import opened Native
  import opened Ballots
  import opened Spec
  import opened Protocol
  import opened ProtocolInvariant
  import opened InvariantProof
  import Quorums
  import QuorumFacts

  // v is the no-op or a client asked for it.
  ghost predicate FromClient(net: set<Message>, v: Value) {
    v == NoOp || Requested(net, v)
  }

  // Every value m carries (an Accept's, Accepted's or Commit's value, a Promise's votes) came from a client.
  ghost predicate MessageFromClients(net: set<Message>, m: Message) {
    && ((m.Accept? || m.Accepted? || m.Commit?) ==> FromClient(net, m.val))
    && (m.Promise? ==> forall slot {:trigger slot in m.votes} | slot in m.votes :: FromClient(net, m.votes[slot].val))
  }

  // Every value host h holds (its votes and its committed entries) came from a client.
  ghost predicate HostFromClients(net: set<Message>, h: Host) {
    && (forall slot {:trigger slot in h.votes} | slot in h.votes :: FromClient(net, h.votes[slot].val))
    && (forall slot {:trigger slot in h.committed} | slot in h.committed :: FromClient(net, h.committed[slot]))
  }

  opaque ghost predicate ValuesFromClients(s: State) {
    && (forall m | m in s.net :: MessageFromClients(s.net, m))
    && (forall i | 0 <= i < |s.hosts| :: HostFromClients(s.net, s.hosts[i]))
  }

  // ---------------------------------------------------------------------------------------
  // The network only grows: what came from a client still does.

  lemma FromClientMono(net: set<Message>, net': set<Message>, v: Value)
    requires net <= net' && FromClient(net, v)
    ensures FromClient(net', v)
  {
    if v != NoOp {
      var m :| m in net && m.Request? && m.val == v;
      assert m in net';
    }
  }

  lemma MessageMono(net: set<Message>, net': set<Message>, m: Message)
    requires net <= net' && MessageFromClients(net, m)
    ensures MessageFromClients(net', m)
  {
    if m.Accept? || m.Accepted? || m.Commit? {
      FromClientMono(net, net', m.val);
    }
    if m.Promise? {
      forall slot | slot in m.votes ensures FromClient(net', m.votes[slot].val) {
        FromClientMono(net, net', m.votes[slot].val);
      }
    }
  }

  lemma HostMono(net: set<Message>, net': set<Message>, h: Host)
    requires net <= net' && HostFromClients(net, h)
    ensures HostFromClients(net', h)
  {
    forall slot | slot in h.votes ensures FromClient(net', h.votes[slot].val) {
      FromClientMono(net, net', h.votes[slot].val);
    }
    forall slot | slot in h.committed ensures FromClient(net', h.committed[slot]) {
      FromClientMono(net, net', h.committed[slot]);
    }
  }

  // A step of host i: if what it sent and its new state hold only values from clients (as of
  // the network before the step), the invariant holds after it.
  lemma StepKeeps(c: Constants, s: State, s': State, i: HostId, sent: set<Message>)
    requires ValuesFromClients(s)
    requires WF(c, s) && i < |s.hosts| && |s'.hosts| == |s.hosts| && s'.hosts == s.hosts[i := s'.hosts[i]]
    requires s'.net == s.net + sent
    requires forall m | m in sent :: MessageFromClients(s.net, m)
    requires HostFromClients(s.net, s'.hosts[i])
    ensures ValuesFromClients(s')
  {
    reveal ValuesFromClients();
    forall m | m in s'.net ensures MessageFromClients(s'.net, m) {
      MessageMono(s.net, s'.net, m);
    }
    forall j | 0 <= j < |s'.hosts| ensures HostFromClients(s'.net, s'.hosts[j]) {
      HostMono(s.net, s'.net, s'.hosts[j]);
    }
  }

  // What a host keeps of its values (a sub-map of its votes and of its committed entries) came from clients.
  lemma HostSub(net: set<Message>, h: Host, h': Host)
    requires HostFromClients(net, h)
    requires forall slot | slot in h'.votes :: slot in h.votes && h'.votes[slot] == h.votes[slot]
    requires forall slot | slot in h'.committed :: slot in h.committed && h'.committed[slot] == h.committed[slot]
    ensures HostFromClients(net, h')
  {
  }

  // The value of a chosen slot came from a client: some member of the quorum sent an Accepted of it.
  lemma ChosenFromClient(c: Constants, s: State, slot: Slot, v: Value)
    requires ValuesFromClients(s)
    requires Chosen(c.n, s.net, slot, v)
    ensures FromClient(s.net, v)
  {
    reveal ValuesFromClients();
    var b, q :| ChosenAt(c.n, s.net, b, q, slot, v);
    var a := QuorumFacts.QuorumsIntersect(Members(c.n), q, q);
    assert SentAccepted(s.net, a, b, slot, v);
    var m :| m in s.net && m.Accepted? && m.src == a && m.bal == b && m.slot == slot && m.val == v;
    assert MessageFromClients(s.net, m);
  }

  // The value of a proposal came from a client: see Protocol.ValueSource.
  lemma SendAcceptFromClient(c: Constants, s: State, i: HostId, h': Host, sent: set<Message>, slot: Slot, val: Value)
    requires Inv(c, s) && ValuesFromClients(s) && i < |s.hosts|
    requires SendAccept(c, i, s.hosts[i], h', s.net, sent, slot, val)
    ensures FromClient(s.net, val)
  {
    reveal ValuesFromClients();
    var h := s.hosts[i];
    assert HostFromClients(s.net, h);
    if !(val == NoOp || Requested(s.net, val) || (slot in h.committed && h.committed[slot] == val)) {
      var p :| p in h.leader.promises && p.Promise? && slot in p.votes && p.votes[slot].val == val;
      reveal LeadersOk();
      assert LeaderOkAt(c, s, i);
      assert p in s.net;
      assert MessageFromClients(s.net, p);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Every step keeps the invariant.

  lemma NextKeepsValues(c: Constants, s: State, s': State)
    requires Inv(c, s) && ValuesFromClients(s)
    requires Next(c, s, s')
    ensures ValuesFromClients(s')
  {
    if i: HostId, val: Value :| ClientRequest(c, s, s', i, val) {
      assert HostFromClients(s.net, s.hosts[i]) by { reveal ValuesFromClients(); }
      StepKeeps(c, s, s', i, {Request(i, i, val)});
      return;
    }
    var i: HostId, step: Step, sent: set<Message> :| NextStep(c, s, s', i, step, sent);
    var h, h' := s.hosts[i], s'.hosts[i];
    assert HostFromClients(s.net, h) by { reveal ValuesFromClients(); }
    match step {
      case StartPrepareStep(bal) =>
        StepKeeps(c, s, s', i, sent);
      case ReceivePrepareStep(m, from) =>
        StepKeeps(c, s, s', i, sent);
      case ReceivePromiseStep(m) =>
        StepKeeps(c, s, s', i, sent);
      case SendAcceptStep(slot, val) =>
        SendAcceptFromClient(c, s, i, h', sent, slot, val);
        StepKeeps(c, s, s', i, sent);
      case ReceiveAcceptStep(m) =>
        assert MessageFromClients(s.net, m) by { reveal ValuesFromClients(); }
        StepKeeps(c, s, s', i, sent);
      case LearnChosenStep(slot, val, bal, q) =>
        assert Chosen(c.n, s.net, slot, val);
        ChosenFromClient(c, s, slot, val);
        StepKeeps(c, s, s', i, sent);
      case ReceiveCommitStep(m) =>
        assert MessageFromClients(s.net, m) by { reveal ValuesFromClients(); }
        StepKeeps(c, s, s', i, sent);
      case SendCommitStep(slot, dst) =>
        StepKeeps(c, s, s', i, sent);
      case TruncateStep(t) =>
        HostSub(s.net, h, h');
        StepKeeps(c, s, s', i, sent);
      case InstallSnapshotStep(t) =>
        HostSub(s.net, h, h');
        StepKeeps(c, s, s', i, sent);
      case StepDownStep =>
        StepKeeps(c, s, s', i, sent);
      case SendNoSafetyStep(m) =>
        StepKeeps(c, s, s', i, sent);
      case CrashStep =>
        HostSub(s.net, h, h');
        StepKeeps(c, s, s', i, sent);
    }
  }

  // Every state of a behavior satisfies the invariant and ValuesFromClients.
  lemma ReachableValues(c: Constants, behavior: seq<State>)
    requires Reachable(c, behavior)
    ensures Inv(c, behavior[|behavior| - 1]) && ValuesFromClients(behavior[|behavior| - 1])
    decreases |behavior|
  {
    if |behavior| == 1 {
      InitEstablishesInv(c, behavior[0]);
      reveal ValuesFromClients();
    } else {
      var prefix := behavior[..|behavior| - 1];
      assert forall k | 0 <= k < |prefix| :: prefix[k] == behavior[k];
      assert Reachable(c, prefix);
      ReachableValues(c, prefix);
      assert Next(c, behavior[|behavior| - 2], behavior[|behavior| - 1]);
      NextPreservesInv(c, behavior[|behavior| - 2], behavior[|behavior| - 1]);
      NextKeepsValues(c, behavior[|behavior| - 2], behavior[|behavior| - 1]);
    }
  }

  // THEOREM (Validity): in every reachable state, every chosen value is a client's request or the no-op.
  lemma Validity(c: Constants, behavior: seq<State>)
    requires Reachable(c, behavior)
    ensures Spec.Validity(c.n, behavior[|behavior| - 1].net)
  {
    var s := behavior[|behavior| - 1];
    ReachableValues(c, behavior);
    forall slot: Slot, v: Value | Chosen(c.n, s.net, slot, v) ensures v == NoOp || Requested(s.net, v) {
      ChosenFromClient(c, s, slot, v);
    }
  }

  // THEOREM: in every reachable state, every host's committed value is a client's request or the no-op.
  lemma CommittedFromClient(c: Constants, behavior: seq<State>, i: HostId, slot: Slot)
    requires Reachable(c, behavior)
    requires i < |behavior[|behavior| - 1].hosts| && slot in behavior[|behavior| - 1].hosts[i].committed
    ensures var s := behavior[|behavior| - 1];
            s.hosts[i].committed[slot] == NoOp || Requested(s.net, s.hosts[i].committed[slot])
  {
    var s := behavior[|behavior| - 1];
    ReachableValues(c, behavior);
    reveal ValuesFromClients();
    assert HostFromClients(s.net, s.hosts[i]);
  }
}
