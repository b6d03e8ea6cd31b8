// The inductive invariant of the verikv Multi-Paxos protocol, split into named conjuncts.
// Each conjunct is opaque: a proof reveals only what it uses, which keeps Z3's work small.
module ProtocolInvariant {
  import opened Native
  import opened Ballots
  import opened Spec
  import opened Protocol
  import Quorums
  import QuorumFacts

  // ---------------------------------------------------------------------------------------
  // Safety of a proposal: the classic SafeAt, per slot.

  // Acceptor a voted v in slot at ballot b. (Its Accepted goes to the ballot's leader,
  // b.node, so the message is fixed by these arguments: see AcceptedHasAccept.)
  ghost predicate VotedFor(net: set<Message>, a: HostId, b: Ballot, slot: Slot, v: Value) {
    Accepted(a, b.node as nat, b, slot, v) in net
  }

  // Acceptor a has promised above b and never voted at b in slot, so it never will.
  ghost predicate WontVoteIn(s: State, a: HostId, b: Ballot, slot: Slot) {
    && a < |s.hosts|
    && BalLt(b, s.hosts[a].promised)
    && forall w: Value {:trigger VotedFor(s.net, a, b, slot, w)} :: !VotedFor(s.net, a, b, slot, w)
  }

  // Acceptor a voted v at b in slot, or never will vote at b in slot.
  ghost predicate VotedOrWont(s: State, a: HostId, b: Ballot, slot: Slot, v: Value) {
    VotedFor(s.net, a, b, slot, v) || WontVoteIn(s, a, b, slot)
  }

  ghost predicate QuorumVotedOrWont(c: Constants, s: State, q: set<HostId>, b: Ballot, slot: Slot, v: Value) {
    && Quorums.IsQuorum(Members(c.n), q)
    && forall a {:trigger a in q} | a in q :: VotedOrWont(s, a, b, slot, v)
  }

  // At ballot b no value but v can be chosen in slot.
  ghost predicate SafeAtBal(c: Constants, s: State, b: Ballot, slot: Slot, v: Value) {
    exists q: set<HostId> :: QuorumVotedOrWont(c, s, q, b, slot, v)
  }

  // At every ballot below b no value but v can be chosen in slot.
  opaque ghost predicate SafeAt(c: Constants, s: State, b: Ballot, slot: Slot, v: Value) {
    forall b' {:trigger BalLt(b', b)} | BalLt(b', b) :: SafeAtBal(c, s, b', slot, v)
  }

  // ---------------------------------------------------------------------------------------
  // The conjuncts.

  // Every message was sent by a member.
  opaque ghost predicate SendersAreMembers(c: Constants, s: State) {
    forall m | m in s.net :: m.src < c.n
  }

  // An Accept at ballot b was sent by b's leader, b.node.
  opaque ghost predicate AcceptFromLeader(c: Constants, s: State) {
    forall m | m in s.net && m.Accept? :: m.src == m.bal.node as nat
  }

  // An Accepted went to its ballot's leader and answers an Accept its sender received.
  opaque ghost predicate AcceptedHasAccept(c: Constants, s: State) {
    forall m | m in s.net && m.Accepted? ::
      && m.dst == m.bal.node as nat
      && Accept(m.bal.node as nat, m.src, m.bal, m.slot, m.val) in s.net
  }

  // At most one value is proposed per (ballot, slot).
  opaque ghost predicate AcceptUnique(c: Constants, s: State) {
    forall m1, m2 {:trigger m1 in s.net, m2 in s.net} |
      m1 in s.net && m2 in s.net && m1.Accept? && m2.Accept? && m1.bal == m2.bal && m1.slot == m2.slot ::
      m1.val == m2.val
  }

  // The leader of an Accept's ballot has promised at least that ballot: it never leads it again.
  opaque ghost predicate AcceptBelowLeaderPromise(c: Constants, s: State) {
    forall m | m in s.net && m.Accept? ::
      m.bal.node as nat < |s.hosts| && BalLe(m.bal, s.hosts[m.bal.node as nat].promised)
  }

  // An acceptor's promised is at least the ballot of every Promise and Accepted it sent.
  opaque ghost predicate SentBelowPromise(c: Constants, s: State) {
    forall m | m in s.net && (m.Promise? || m.Accepted?) ::
      m.src < |s.hosts| && BalLe(m.bal, s.hosts[m.src].promised)
  }

  // A Promise tells the truth: each vote it reports was cast, at a ballot <= the promise's;
  // and every vote its sender cast below the promise's ballot in a slot >= its logStart is
  // covered by a reported vote at least as high.
  ghost predicate PromiseOk(net: set<Message>, p: Message)
    requires p.Promise?
  {
    && (forall slot {:trigger slot in p.votes} | slot in p.votes ::
          && BalLe(p.votes[slot].bal, p.bal)
          && VotedFor(net, p.src, p.votes[slot].bal, slot, p.votes[slot].val))
    && (forall a {:trigger a in net} | a in net && a.Accepted? && a.src == p.src && BalLt(a.bal, p.bal) && a.slot >= p.logStart ::
          a.slot in p.votes && BalLe(a.bal, p.votes[a.slot].bal))
  }

  opaque ghost predicate PromisesOk(c: Constants, s: State) {
    forall p | p in s.net && p.Promise? :: PromiseOk(s.net, p)
  }

  // A host's votes map holds its latest vote for every slot >= logStart, and only votes it cast.
  ghost predicate HostVotesOkAt(s: State, i: HostId)
    requires i < |s.hosts|
  {
    var h := s.hosts[i];
    && (forall slot {:trigger slot in h.votes} | slot in h.votes ::
          && BalLe(h.votes[slot].bal, h.promised)
          && VotedFor(s.net, i, h.votes[slot].bal, slot, h.votes[slot].val))
    && (forall a {:trigger a in s.net} | a in s.net && a.Accepted? && a.src == i && a.slot >= h.logStart ::
          a.slot in h.votes && BalLe(a.bal, h.votes[a.slot].bal))
  }

  opaque ghost predicate HostVotesOk(c: Constants, s: State) {
    forall i | 0 <= i < |s.hosts| :: HostVotesOkAt(s, i)
  }

  // A leader leads with its own ballot, which it has promised; its promises are Promise messages
  // for that ballot, from a quorum once in phase 2; `proposed` records every Accept at the ballot.
  ghost predicate LeaderOkAt(c: Constants, s: State, i: HostId)
    requires i < |s.hosts|
  {
    var h := s.hosts[i];
    h.leader.Leading? ==>
      && h.leader.bal.node as nat == i
      && BalLe(h.leader.bal, h.promised)
      && (forall p | p in h.leader.promises :: p in s.net && p.Promise? && p.bal == h.leader.bal)
      && (h.leader.phase == 2 ==> Quorums.IsQuorum(Members(c.n), Senders(h.leader.promises)))
      && (forall m | m in s.net && m.Accept? && m.bal == h.leader.bal ::
            m.slot in h.leader.proposed && h.leader.proposed[m.slot] == m.val)
  }

  opaque ghost predicate LeadersOk(c: Constants, s: State) {
    forall i | 0 <= i < |s.hosts| :: LeaderOkAt(c, s, i)
  }

  // Every proposal is safe.
  opaque ghost predicate AcceptsSafe(c: Constants, s: State) {
    forall m | m in s.net && m.Accept? :: SafeAt(c, s, m.bal, m.slot, m.val)
  }

  // Every Commit carries a chosen value.
  opaque ghost predicate CommitsChosen(c: Constants, s: State) {
    forall m | m in s.net && m.Commit? :: Chosen(c.n, s.net, m.slot, m.val)
  }

  // Every committed value is chosen.
  opaque ghost predicate CommittedChosen(c: Constants, s: State) {
    forall i, slot {:trigger slot in s.hosts[i].committed} | 0 <= i < |s.hosts| && slot in s.hosts[i].committed ::
      Chosen(c.n, s.net, slot, s.hosts[i].committed[slot])
  }

  ghost predicate Inv(c: Constants, s: State) {
    && WF(c, s)
    && SendersAreMembers(c, s)
    && AcceptFromLeader(c, s)
    && AcceptedHasAccept(c, s)
    && AcceptUnique(c, s)
    && AcceptBelowLeaderPromise(c, s)
    && SentBelowPromise(c, s)
    && PromisesOk(c, s)
    && HostVotesOk(c, s)
    && LeadersOk(c, s)
    && AcceptsSafe(c, s)
    && CommitsChosen(c, s)
    && CommittedChosen(c, s)
  }

  // ---------------------------------------------------------------------------------------
  // Small facts.

  lemma MembersBound(n: nat)
    ensures forall a: HostId {:trigger a in Members(n)} :: a in Members(n) <==> a < n
  {
    QuorumFacts.IndicesBound(n);
  }

  lemma ChosenMonotone(n: nat, net: set<Message>, net': set<Message>, slot: Slot, v: Value)
    requires net <= net'
    requires Chosen(n, net, slot, v)
    ensures Chosen(n, net', slot, v)
  {
    var b, q :| ChosenAt(n, net, b, q, slot, v);
    forall a | a in q ensures SentAccepted(net', a, b, slot, v) {
      var m :| m in net && m.Accepted? && m.src == a && m.bal == b && m.slot == slot && m.val == v;
      assert m in net';
    }
    assert ChosenAt(n, net', b, q, slot, v);
  }

  // Every member of a quorum that chose v at b voted v at b.
  lemma ChosenAtVoted(c: Constants, s: State, b: Ballot, q: set<HostId>, slot: Slot, v: Value, a: HostId)
    requires AcceptedHasAccept(c, s)
    requires ChosenAt(c.n, s.net, b, q, slot, v)
    requires a in q
    ensures VotedFor(s.net, a, b, slot, v)
  {
    reveal AcceptedHasAccept();
    assert SentAccepted(s.net, a, b, slot, v);
    var m :| m in s.net && m.Accepted? && m.src == a && m.bal == b && m.slot == slot && m.val == v;
    assert m == Accepted(a, b.node as nat, b, slot, v);
  }

  // What every step does to the state SafeAt talks about: the network grows, promises never
  // decrease, and a new vote is cast only at a ballot >= its voter's promise before the step.
  ghost predicate Monotone(s: State, s': State) {
    && |s'.hosts| == |s.hosts|
    && s.net <= s'.net
    && (forall i | 0 <= i < |s.hosts| :: BalLe(s.hosts[i].promised, s'.hosts[i].promised))
    && (forall m | m in s'.net && m !in s.net && m.Accepted? ::
          m.src < |s.hosts| && BalLe(s.hosts[m.src].promised, m.bal))
  }

  lemma VotedOrWontMonotone(s: State, s': State, a: HostId, b: Ballot, slot: Slot, v: Value)
    requires Monotone(s, s')
    requires VotedOrWont(s, a, b, slot, v)
    ensures VotedOrWont(s', a, b, slot, v)
  {
    if !VotedFor(s.net, a, b, slot, v) {
      assert WontVoteIn(s, a, b, slot);
      forall w: Value ensures !VotedFor(s'.net, a, b, slot, w) {
        if VotedFor(s'.net, a, b, slot, w) {
          var m := Accepted(a, b.node as nat, b, slot, w);
          assert !VotedFor(s.net, a, b, slot, w);
          assert m !in s.net;
          assert BalLe(s.hosts[a].promised, b);
          assert false;
        }
      }
      assert WontVoteIn(s', a, b, slot);
    }
  }

  lemma SafeAtMonotone(c: Constants, s: State, s': State, b: Ballot, slot: Slot, v: Value)
    requires Monotone(s, s')
    requires SafeAt(c, s, b, slot, v)
    ensures SafeAt(c, s', b, slot, v)
  {
    reveal SafeAt();
    forall b' | BalLt(b', b) ensures SafeAtBal(c, s', b', slot, v) {
      var q :| QuorumVotedOrWont(c, s, q, b', slot, v);
      forall a | a in q ensures VotedOrWont(s', a, b', slot, v) {
        VotedOrWontMonotone(s, s', a, b', slot, v);
      }
      assert QuorumVotedOrWont(c, s', q, b', slot, v);
    }
  }
}
