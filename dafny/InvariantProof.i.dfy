// Init establishes the invariant and every step preserves it: one lemma per step kind.
module InvariantProof {
  import opened Native
  import opened Ballots
  import opened Spec
  import opened Protocol
  import opened ProtocolInvariant
  import Quorums

  lemma InitEstablishesInv(c: Constants, s: State)
    requires Init(c, s)
    ensures Inv(c, s)
  {
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk(),
           AcceptsSafe(), CommitsChosen(), CommittedChosen();
  }

  // ---------------------------------------------------------------------------------------
  // Frame facts shared by all steps.

  // The facts every step gives about the hosts it does not touch and the network.
  lemma StepFrame(c: Constants, s: State, s': State, i: HostId, step: Step, sent: set<Message>)
    requires NextStep(c, s, s', i, step, sent)
    ensures WF(c, s')
    ensures forall j | 0 <= j < |s.hosts| && j != i :: s'.hosts[j] == s.hosts[j]
    ensures s.net <= s'.net
  {
  }

  // Steps that leave host i's promised as it is and send no Accepted keep Monotone.
  lemma MonotoneIfPromisedKept(c: Constants, s: State, s': State, i: HostId, step: Step, sent: set<Message>)
    requires NextStep(c, s, s', i, step, sent)
    requires s'.hosts[i].promised == s.hosts[i].promised
    requires forall m | m in sent :: !m.Accepted?
    ensures Monotone(s, s')
  {
  }

  // A step that sends no Accept keeps every proposal safe.
  lemma AcceptsSafeKept(c: Constants, s: State, s': State)
    requires AcceptsSafe(c, s)
    requires Monotone(s, s')
    requires forall m | m in s'.net && m !in s.net :: !m.Accept?
    ensures AcceptsSafe(c, s')
  {
    reveal AcceptsSafe();
    forall m | m in s'.net && m.Accept? ensures SafeAt(c, s', m.bal, m.slot, m.val) {
      SafeAtMonotone(c, s, s', m.bal, m.slot, m.val);
    }
  }

  // Old Commits stay chosen as the network grows.
  lemma CommitsChosenKept(c: Constants, s: State, s': State)
    requires CommitsChosen(c, s)
    requires s.net <= s'.net
    requires forall m | m in s'.net && m !in s.net && m.Commit? :: Chosen(c.n, s'.net, m.slot, m.val)
    ensures CommitsChosen(c, s')
  {
    reveal CommitsChosen();
    forall m | m in s'.net && m.Commit? ensures Chosen(c.n, s'.net, m.slot, m.val) {
      if m in s.net {
        ChosenMonotone(c.n, s.net, s'.net, m.slot, m.val);
      }
    }
  }

  // Old committed entries stay chosen as the network grows.
  lemma CommittedChosenKept(c: Constants, s: State, s': State, i: HostId)
    requires CommittedChosen(c, s)
    requires s.net <= s'.net
    requires |s'.hosts| == |s.hosts| && i < |s.hosts|
    requires forall j | 0 <= j < |s.hosts| && j != i :: s'.hosts[j] == s.hosts[j]
    requires forall slot | slot in s'.hosts[i].committed ::
               || (slot in s.hosts[i].committed && s'.hosts[i].committed[slot] == s.hosts[i].committed[slot])
               || Chosen(c.n, s'.net, slot, s'.hosts[i].committed[slot])
    ensures CommittedChosen(c, s')
  {
    reveal CommittedChosen();
    forall j, slot | 0 <= j < |s'.hosts| && slot in s'.hosts[j].committed
      ensures Chosen(c.n, s'.net, slot, s'.hosts[j].committed[slot])
    {
      if j != i || (slot in s.hosts[i].committed && s'.hosts[i].committed[slot] == s.hosts[i].committed[slot]) {
        assert slot in s.hosts[j].committed && s'.hosts[j].committed[slot] == s.hosts[j].committed[slot];
        ChosenMonotone(c.n, s.net, s'.net, slot, s.hosts[j].committed[slot]);
      }
    }
  }

  // The conjuncts about acceptors and leaders, for a step that sends only messages with no
  // role in them (Prepare, Commit, Nack, Heartbeat, CatchUp) and does not change host i's
  // promised or votes; its leader state is kept or dropped.
  lemma QuietStepKeepsAcceptorConjuncts(c: Constants, s: State, s': State, i: HostId, step: Step, sent: set<Message>)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, step, sent)
    requires forall m | m in sent :: m.src == i && !m.Accept? && !m.Accepted? && !m.Promise?
    requires s'.hosts[i].promised == s.hosts[i].promised
    requires s'.hosts[i].votes == s.hosts[i].votes
    requires s'.hosts[i].logStart == s.hosts[i].logStart
    requires s'.hosts[i].leader == s.hosts[i].leader || s'.hosts[i].leader.NotLeader?
    ensures SendersAreMembers(c, s') && AcceptFromLeader(c, s') && AcceptedHasAccept(c, s')
    ensures AcceptUnique(c, s') && AcceptBelowLeaderPromise(c, s') && SentBelowPromise(c, s')
    ensures PromisesOk(c, s') && HostVotesOk(c, s') && LeadersOk(c, s') && AcceptsSafe(c, s')
  {
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, step, sent);
    MonotoneIfPromisedKept(c, s, s', i, step, sent);
    AcceptsSafeKept(c, s, s');
    assert forall j | 0 <= j < |s.hosts| :: s'.hosts[j].promised == s.hosts[j].promised;
    forall p | p in s'.net && p.Promise? ensures PromiseOk(s'.net, p) {
      assert p in s.net;
      assert PromiseOk(s.net, p);
    }
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
  }

  // ---------------------------------------------------------------------------------------
  // The steps with no effect on acceptors and leaders.

  lemma LearnChosenOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>,
                      slot: Slot, val: Value, bal: Ballot, q: set<HostId>)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, LearnChosenStep(slot, val, bal, q), sent)
    ensures Inv(c, s')
  {
    QuietStepKeepsAcceptorConjuncts(c, s, s', i, LearnChosenStep(slot, val, bal, q), sent);
    assert ChosenAt(c.n, s.net, bal, q, slot, val);
    ChosenMonotone(c.n, s.net, s'.net, slot, val);
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma ReceiveCommitOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, m: Message)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, ReceiveCommitStep(m), sent)
    ensures Inv(c, s')
  {
    QuietStepKeepsAcceptorConjuncts(c, s, s', i, ReceiveCommitStep(m), sent);
    CommitsChosenKept(c, s, s');
    reveal CommitsChosen();
    CommittedChosenKept(c, s, s', i);
  }

  lemma SendCommitOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, slot: Slot, dst: HostId)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, SendCommitStep(slot, dst), sent)
    ensures Inv(c, s')
  {
    QuietStepKeepsAcceptorConjuncts(c, s, s', i, SendCommitStep(slot, dst), sent);
    reveal CommittedChosen();
    ChosenMonotone(c.n, s.net, s'.net, slot, s.hosts[i].committed[slot]);
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma StepDownOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, StepDownStep, sent)
    ensures Inv(c, s')
  {
    QuietStepKeepsAcceptorConjuncts(c, s, s', i, StepDownStep, sent);
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma CrashOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, CrashStep, sent)
    ensures Inv(c, s')
  {
    QuietStepKeepsAcceptorConjuncts(c, s, s', i, CrashStep, sent);
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma SendNoSafetyOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, m: Message)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, SendNoSafetyStep(m), sent)
    ensures Inv(c, s')
  {
    QuietStepKeepsAcceptorConjuncts(c, s, s', i, SendNoSafetyStep(m), sent);
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  // ---------------------------------------------------------------------------------------
  // Truncation: drops votes and committed entries below t; a vote in a slot >= t is kept.

  lemma TruncateOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, t: Slot)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, TruncateStep(t), sent)
    ensures Inv(c, s')
  {
    DropBelowOk(c, s, s', i, TruncateStep(t), sent, t);
  }

  // Installing a snapshot: the same change of state as Truncate, without its committed prefix
  // (which no conjunct of the invariant needs).
  lemma InstallSnapshotOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, t: Slot)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, InstallSnapshotStep(t), sent)
    ensures Inv(c, s')
  {
    DropBelowOk(c, s, s', i, InstallSnapshotStep(t), sent, t);
  }

  lemma DropBelowOk(c: Constants, s: State, s': State, i: HostId, step: Step, sent: set<Message>, t: Slot)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, step, sent)
    requires sent == {} && s.hosts[i].logStart <= t
    requires var h := s.hosts[i];
             s'.hosts[i] == h.(logStart := t,
                               votes := map slot | slot in h.votes && slot >= t :: h.votes[slot],
                               committed := map slot | slot in h.committed && slot >= t :: h.committed[slot])
    ensures Inv(c, s')
  {
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, step, sent);
    assert s'.net == s.net;
    MonotoneIfPromisedKept(c, s, s', i, step, sent);
    AcceptsSafeKept(c, s, s');
    assert forall j | 0 <= j < |s.hosts| :: s'.hosts[j].promised == s.hosts[j].promised;
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  // ---------------------------------------------------------------------------------------
  // Phase 1.

  lemma StartPrepareOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, bal: Ballot)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, StartPrepareStep(bal), sent)
    ensures Inv(c, s')
  {
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, StartPrepareStep(bal), sent);
    var h := s.hosts[i];
    assert forall m | m in sent :: m.Prepare? && m.src == i;
    assert Monotone(s, s');
    AcceptsSafeKept(c, s, s');
    forall p | p in s'.net && p.Promise? ensures PromiseOk(s'.net, p) {
      assert PromiseOk(s.net, p);
    }
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      if j == i {
        // No Accept at bal exists yet: its leader (this host) would have promised bal already.
        forall m | m in s'.net && m.Accept? && m.bal == bal ensures false {
          assert m in s.net;
          assert BalLe(bal, h.promised);
        }
      } else {
        assert LeaderOkAt(c, s, j);
      }
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma ReceivePrepareOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, m: Message, from: Slot)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, ReceivePrepareStep(m, from), sent)
    ensures Inv(c, s')
  {
    var h := s.hosts[i];
    if !BalLe(h.promised, m.bal) {
      QuietStepKeepsAcceptorConjuncts(c, s, s', i, ReceivePrepareStep(m, from), sent);
      CommitsChosenKept(c, s, s');
      CommittedChosenKept(c, s, s', i);
      return;
    }
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, ReceivePrepareStep(m, from), sent);
    var ls := if from > h.logStart then from else h.logStart;
    var p := Promise(i, m.src, m.bal, ls, VotesFrom(h.votes, ls));
    assert sent == {p};
    assert Monotone(s, s');
    AcceptsSafeKept(c, s, s');
    forall p' | p' in s'.net && p'.Promise? ensures PromiseOk(s'.net, p') {
      if p' == p {
        assert HostVotesOkAt(s, i);
      } else {
        assert PromiseOk(s.net, p');
      }
    }
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma ReceivePromiseOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, m: Message)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, ReceivePromiseStep(m), sent)
    ensures Inv(c, s')
  {
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, ReceivePromiseStep(m), sent);
    assert s'.net == s.net;
    MonotoneIfPromisedKept(c, s, s', i, ReceivePromiseStep(m), sent);
    AcceptsSafeKept(c, s, s');
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  // ---------------------------------------------------------------------------------------
  // Phase 2b.

  lemma ReceiveAcceptOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, m: Message)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, ReceiveAcceptStep(m), sent)
    ensures Inv(c, s')
  {
    var h := s.hosts[i];
    if sent == {Nack(i, m.src, h.promised)} {
      // Refused: nothing changes but a Nack.
      QuietStepKeepsAcceptorConjuncts(c, s, s', i, ReceiveAcceptStep(m), sent);
      CommitsChosenKept(c, s, s');
      CommittedChosenKept(c, s, s', i);
      return;
    }
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, ReceiveAcceptStep(m), sent);
    // Voted: promised rises to m.bal (the acceptor only votes at or above its promise).
    var a := Accepted(i, m.bal.node as nat, m.bal, m.slot, m.val);
    assert sent == {a};
    assert s'.hosts[i] == h.(promised := m.bal, votes := h.votes[m.slot := Vote(m.bal, m.val)]);
    assert m == Accept(m.bal.node as nat, i, m.bal, m.slot, m.val);
    assert Monotone(s, s');
    AcceptsSafeKept(c, s, s');
    forall p | p in s'.net && p.Promise? ensures PromiseOk(s'.net, p) {
      assert PromiseOk(s.net, p);
      if p.src == i {
        assert BalLe(p.bal, h.promised);
        assert !BalLt(m.bal, p.bal);
      }
    }
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
      if j == i {
        forall a' | a' in s'.net && a'.Accepted? && a'.src == i && a'.slot >= h.logStart
          ensures a'.slot in s'.hosts[i].votes && BalLe(a'.bal, s'.hosts[i].votes[a'.slot].bal)
        {
          if a' != a && a'.slot == m.slot {
            assert BalLe(a'.bal, h.promised);
          }
        }
      }
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  // ---------------------------------------------------------------------------------------
  // Phase 2a: the heart of Paxos. A value the phase-1 rule allows is safe.

  // The conditions SendAccept checks of the leader's state, before the step.
  ghost predicate MayPropose(c: Constants, s: State, i: HostId, slot: Slot, val: Value)
    requires i < |s.hosts|
  {
    var h := s.hosts[i];
    && h.leader.Leading? && h.leader.phase == 2
    && h.promised == h.leader.bal
    && slot !in h.leader.proposed
    && (forall p | p in h.leader.promises :: p.Promise? && slot >= p.logStart)
    && SafeToPropose(h.leader.promises, slot, val)
  }

  // If acceptor a, which sent the promise p for ballot b, voted at cb < b in slot, then p
  // reports a vote for slot at cb or higher.
  lemma PromiseCoversVote(c: Constants, s: State, p: Message, cb: Ballot, slot: Slot, w: Value)
    requires Inv(c, s)
    requires p in s.net && p.Promise?
    requires BalLt(cb, p.bal) && slot >= p.logStart
    requires VotedFor(s.net, p.src, cb, slot, w)
    ensures slot in p.votes && BalLe(cb, p.votes[slot].bal)
  {
    reveal PromisesOk();
    assert PromiseOk(s.net, p);
    var a := Accepted(p.src, cb.node as nat, cb, slot, w);
    assert a in s.net;
  }

  // Every member a promiser of the leader's quorum: it promised above every ballot below b.
  lemma PromiserWontVoteBelow(c: Constants, s: State, p: Message, cb: Ballot)
    requires Inv(c, s)
    requires p in s.net && p.Promise? && BalLt(cb, p.bal)
    ensures p.src < |s.hosts| && BalLt(cb, s.hosts[p.src].promised)
  {
    reveal SentBelowPromise();
  }

  // At a ballot cb below the leader's ballot and at or above every vote the promises report for
  // slot, where every reported vote at cb itself is for val, each member of the leader's quorum
  // voted val at cb or never will vote at cb.
  lemma QuorumVotesAbove(c: Constants, s: State, i: HostId, slot: Slot, val: Value, cb: Ballot)
    requires Inv(c, s)
    requires i < |s.hosts|
    requires MayPropose(c, s, i, slot, val)
    requires BalLt(cb, s.hosts[i].leader.bal)
    requires NoHigherVote(s.hosts[i].leader.promises, slot, cb)
    requires forall p | p in s.hosts[i].leader.promises && p.Promise? && slot in p.votes && p.votes[slot].bal == cb ::
               p.votes[slot].val == val
    ensures SafeAtBal(c, s, cb, slot, val)
  {
    var ps := s.hosts[i].leader.promises;
    var q := Senders(ps);
    reveal LeadersOk();
    assert LeaderOkAt(c, s, i);
    forall a | a in q ensures VotedOrWont(s, a, cb, slot, val) {
      var p :| p in ps && p.src == a;
      PromiserWontVoteBelow(c, s, p, cb);
      if !VotedFor(s.net, a, cb, slot, val) {
        forall w: Value ensures !VotedFor(s.net, a, cb, slot, w) {
          if VotedFor(s.net, a, cb, slot, w) {
            PromiseCoversVote(c, s, p, cb, slot, w);
            assert p.votes[slot].bal == cb;
            reveal PromisesOk();
            assert PromiseOk(s.net, p);
            assert false;
          }
        }
      }
    }
    assert QuorumVotedOrWont(c, s, q, cb, slot, val);
  }

  // Two votes at the same ballot in the same slot are for the same value.
  lemma VotesAgree(c: Constants, s: State, a1: HostId, a2: HostId, b: Ballot, slot: Slot, v1: Value, v2: Value)
    requires Inv(c, s)
    requires VotedFor(s.net, a1, b, slot, v1) && VotedFor(s.net, a2, b, slot, v2)
    ensures v1 == v2
  {
    reveal AcceptedHasAccept(), AcceptUnique();
    var m1 := Accepted(a1, b.node as nat, b, slot, v1);
    var m2 := Accepted(a2, b.node as nat, b, slot, v2);
    assert m1 in s.net && m2 in s.net;
    var x1 := Accept(b.node as nat, a1, b, slot, v1);
    var x2 := Accept(b.node as nat, a2, b, slot, v2);
    assert x1 in s.net && x2 in s.net;
  }

  lemma SendAcceptIsSafe(c: Constants, s: State, i: HostId, slot: Slot, val: Value)
    requires Inv(c, s)
    requires i < |s.hosts|
    requires MayPropose(c, s, i, slot, val)
    ensures SafeAt(c, s, s.hosts[i].leader.bal, slot, val)
  {
    var b := s.hosts[i].leader.bal;
    var ps := s.hosts[i].leader.promises;
    reveal LeadersOk();
    assert LeaderOkAt(c, s, i);
    reveal SafeAt();
    if forall p | p in ps :: p.Promise? && slot !in p.votes {
      forall cb | BalLt(cb, b) ensures SafeAtBal(c, s, cb, slot, val) {
        QuorumVotesAbove(c, s, i, slot, val, cb);
      }
    } else {
      var pStar :| pStar in ps && pStar.Promise? && slot in pStar.votes &&
                   pStar.votes[slot].val == val && NoHigherVote(ps, slot, pStar.votes[slot].bal);
      var hb := pStar.votes[slot].bal;
      reveal PromisesOk();
      assert PromiseOk(s.net, pStar);
      assert VotedFor(s.net, pStar.src, hb, slot, val);
      reveal AcceptedHasAccept();
      var acc := Accepted(pStar.src, hb.node as nat, hb, slot, val);
      assert acc in s.net;
      var hAccept := Accept(hb.node as nat, pStar.src, hb, slot, val);
      assert hAccept in s.net;
      // The highest reported vote is below b: at b this leader has proposed nothing in slot yet.
      assert BalLt(hb, b);
      reveal AcceptsSafe();
      assert SafeAt(c, s, hb, slot, val);
      forall cb | BalLt(cb, b) ensures SafeAtBal(c, s, cb, slot, val) {
        if !BalLt(cb, hb) {
          forall p | p in ps && p.Promise? && slot in p.votes && p.votes[slot].bal == cb
            ensures p.votes[slot].val == val
          {
            assert PromiseOk(s.net, p);
            VotesAgree(c, s, p.src, pStar.src, cb, slot, p.votes[slot].val, val);
          }
          QuorumVotesAbove(c, s, i, slot, val, cb);
        }
      }
    }
  }

  lemma SendAcceptOk(c: Constants, s: State, s': State, i: HostId, sent: set<Message>, slot: Slot, val: Value)
    requires Inv(c, s)
    requires NextStep(c, s, s', i, SendAcceptStep(slot, val), sent)
    ensures Inv(c, s')
  {
    var h := s.hosts[i];
    var b := h.leader.bal;
    assert MayPropose(c, s, i, slot, val);
    SendAcceptIsSafe(c, s, i, slot, val);
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    StepFrame(c, s, s', i, SendAcceptStep(slot, val), sent);
    assert LeaderOkAt(c, s, i);
    assert forall m | m in sent :: m.Accept? && m.src == i && m.bal == b && m.slot == slot && m.val == val;
    // No Accept at (b, slot) was sent before: slot is not in proposed.
    assert forall m | m in s.net && m.Accept? && m.bal == b :: m.slot != slot;
    MonotoneIfPromisedKept(c, s, s', i, SendAcceptStep(slot, val), sent);
    reveal AcceptsSafe();
    forall m | m in s'.net && m.Accept? ensures SafeAt(c, s', m.bal, m.slot, m.val) {
      SafeAtMonotone(c, s, s', m.bal, m.slot, m.val);
    }
    assert AcceptsSafe(c, s');
    forall p | p in s'.net && p.Promise? ensures PromiseOk(s'.net, p) {
      assert PromiseOk(s.net, p);
    }
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  // ---------------------------------------------------------------------------------------
  // Every step preserves the invariant.

  // A client's request enters the network: no Accept, Accepted, Promise or Commit, no host changes.
  lemma ClientRequestOk(c: Constants, s: State, s': State, i: HostId, val: Value)
    requires Inv(c, s)
    requires ClientRequest(c, s, s', i, val)
    ensures Inv(c, s')
  {
    reveal SendersAreMembers(), AcceptFromLeader(), AcceptedHasAccept(), AcceptUnique(),
           AcceptBelowLeaderPromise(), SentBelowPromise(), PromisesOk(), HostVotesOk(), LeadersOk();
    assert Monotone(s, s');
    AcceptsSafeKept(c, s, s');
    forall p | p in s'.net && p.Promise? ensures PromiseOk(s'.net, p) {
      assert PromiseOk(s.net, p);
    }
    forall j | 0 <= j < |s'.hosts| ensures HostVotesOkAt(s', j) {
      assert HostVotesOkAt(s, j);
    }
    forall j | 0 <= j < |s'.hosts| ensures LeaderOkAt(c, s', j) {
      assert LeaderOkAt(c, s, j);
    }
    CommitsChosenKept(c, s, s');
    CommittedChosenKept(c, s, s', i);
  }

  lemma NextPreservesInv(c: Constants, s: State, s': State)
    requires Inv(c, s)
    requires Next(c, s, s')
    ensures Inv(c, s')
  {
    if i: HostId, val: Value :| ClientRequest(c, s, s', i, val) {
      ClientRequestOk(c, s, s', i, val);
      return;
    }
    var i: HostId, step: Step, sent: set<Message> :| NextStep(c, s, s', i, step, sent);
    match step {
      case StartPrepareStep(bal) => StartPrepareOk(c, s, s', i, sent, bal);
      case ReceivePrepareStep(m, from) => ReceivePrepareOk(c, s, s', i, sent, m, from);
      case ReceivePromiseStep(m) => ReceivePromiseOk(c, s, s', i, sent, m);
      case SendAcceptStep(slot, val) => SendAcceptOk(c, s, s', i, sent, slot, val);
      case ReceiveAcceptStep(m) => ReceiveAcceptOk(c, s, s', i, sent, m);
      case LearnChosenStep(slot, val, bal, q) => LearnChosenOk(c, s, s', i, sent, slot, val, bal, q);
      case ReceiveCommitStep(m) => ReceiveCommitOk(c, s, s', i, sent, m);
      case SendCommitStep(slot, dst) => SendCommitOk(c, s, s', i, sent, slot, dst);
      case TruncateStep(t) => TruncateOk(c, s, s', i, sent, t);
      case InstallSnapshotStep(t) => InstallSnapshotOk(c, s, s', i, sent, t);
      case StepDownStep => StepDownOk(c, s, s', i, sent);
      case SendNoSafetyStep(m) => SendNoSafetyOk(c, s, s', i, sent, m);
      case CrashStep => CrashOk(c, s, s', i, sent);
    }
  }
}
