// The theorems: in every reachable state of the protocol, at most one value is chosen per
// slot (Agreement), and every value a host has committed was chosen (CommittedWasChosen), so
// no two hosts ever commit different values for a slot.
module AgreementProof {
  import opened Native
  import opened Ballots
  import opened Spec
  import opened Protocol
  import opened ProtocolInvariant
  import opened InvariantProof
  import Quorums
  import QuorumFacts

  // Chosen at ballots b1 <= b2: the same value. At b1 == b2 both quorums voted at one ballot,
  // where only one value is proposed; at b1 < b2 the proposal at b2 is safe, so a quorum voted
  // its value at b1 or will not vote at b1, and it meets the quorum that chose at b1.
  lemma ChosenAtOrderedAgree(c: Constants, s: State, b1: Ballot, q1: set<HostId>, b2: Ballot, q2: set<HostId>,
                             slot: Slot, v1: Value, v2: Value)
    requires Inv(c, s)
    requires ChosenAt(c.n, s.net, b1, q1, slot, v1)
    requires ChosenAt(c.n, s.net, b2, q2, slot, v2)
    requires BalLe(b1, b2)
    ensures v1 == v2
  {
    var a1 := QuorumFacts.QuorumsIntersect(Members(c.n), q1, q1);
    var a2 := QuorumFacts.QuorumsIntersect(Members(c.n), q2, q2);
    ChosenAtVoted(c, s, b1, q1, slot, v1, a1);
    ChosenAtVoted(c, s, b2, q2, slot, v2, a2);
    if b1 == b2 {
      VotesAgree(c, s, a1, a2, b1, slot, v1, v2);
    } else {
      reveal AcceptedHasAccept();
      var acc := Accepted(a2, b2.node as nat, b2, slot, v2);
      assert acc in s.net;
      var accept := Accept(b2.node as nat, a2, b2, slot, v2);
      assert accept in s.net;
      reveal AcceptsSafe();
      assert SafeAt(c, s, b2, slot, v2);
      reveal SafeAt();
      assert SafeAtBal(c, s, b1, slot, v2);
      var q :| QuorumVotedOrWont(c, s, q, b1, slot, v2);
      var a := QuorumFacts.QuorumsIntersect(Members(c.n), q, q1);
      ChosenAtVoted(c, s, b1, q1, slot, v1, a);
      assert VotedOrWont(s, a, b1, slot, v2);
      if !VotedFor(s.net, a, b1, slot, v2) {
        assert WontVoteIn(s, a, b1, slot);
        assert false;
      }
      VotesAgree(c, s, a, a, b1, slot, v1, v2);
    }
  }

  lemma AgreementFromInv(c: Constants, s: State)
    requires Inv(c, s)
    ensures Spec.Agreement(c.n, s.net)
  {
    forall slot: Slot, v1: Value, v2: Value | Chosen(c.n, s.net, slot, v1) && Chosen(c.n, s.net, slot, v2)
      ensures v1 == v2
    {
      var b1, q1 :| ChosenAt(c.n, s.net, b1, q1, slot, v1);
      var b2, q2 :| ChosenAt(c.n, s.net, b2, q2, slot, v2);
      if BalLe(b1, b2) {
        ChosenAtOrderedAgree(c, s, b1, q1, b2, q2, slot, v1, v2);
      } else {
        ChosenAtOrderedAgree(c, s, b2, q2, b1, q1, slot, v2, v1);
      }
    }
  }

  lemma CommittedWasChosenFromInv(c: Constants, s: State, i: HostId, slot: Slot)
    requires Inv(c, s)
    requires i < |s.hosts| && slot in s.hosts[i].committed
    ensures Chosen(c.n, s.net, slot, s.hosts[i].committed[slot])
  {
    reveal CommittedChosen();
  }

  // Every state of a behavior satisfies the invariant.
  lemma ReachableInv(c: Constants, behavior: seq<State>)
    requires Reachable(c, behavior)
    ensures Inv(c, behavior[|behavior| - 1])
    decreases |behavior|
  {
    if |behavior| == 1 {
      InitEstablishesInv(c, behavior[0]);
    } else {
      var prefix := behavior[..|behavior| - 1];
      assert forall k | 0 <= k < |prefix| :: prefix[k] == behavior[k];
      assert Reachable(c, prefix);
      ReachableInv(c, prefix);
      assert Next(c, behavior[|behavior| - 2], behavior[|behavior| - 1]);
      NextPreservesInv(c, behavior[|behavior| - 2], behavior[|behavior| - 1]);
    }
  }

  // THEOREM (Agreement): in every reachable state, two values chosen in a slot are equal.
  lemma Agreement(c: Constants, behavior: seq<State>, slot: Slot, v1: Value, v2: Value)
    requires Reachable(c, behavior)
    requires Chosen(c.n, behavior[|behavior| - 1].net, slot, v1)
    requires Chosen(c.n, behavior[|behavior| - 1].net, slot, v2)
    ensures v1 == v2
  {
    ReachableInv(c, behavior);
    AgreementFromInv(c, behavior[|behavior| - 1]);
  }

  // The same, as the Spec states it: every reachable state satisfies Spec.Agreement.
  lemma AgreementInEveryReachableState(c: Constants, behavior: seq<State>)
    requires Reachable(c, behavior)
    ensures Spec.Agreement(c.n, behavior[|behavior| - 1].net)
  {
    ReachableInv(c, behavior);
    AgreementFromInv(c, behavior[|behavior| - 1]);
  }

  // THEOREM (CommittedWasChosen): in every reachable state, every host's committed[slot] was
  // chosen. With Agreement: no two hosts ever commit different values for a slot.
  lemma CommittedWasChosen(c: Constants, behavior: seq<State>, i: HostId, slot: Slot)
    requires Reachable(c, behavior)
    requires i < |behavior[|behavior| - 1].hosts|
    requires slot in behavior[|behavior| - 1].hosts[i].committed
    ensures Chosen(c.n, behavior[|behavior| - 1].net, slot, behavior[|behavior| - 1].hosts[i].committed[slot])
  {
    ReachableInv(c, behavior);
    CommittedWasChosenFromInv(c, behavior[|behavior| - 1], i, slot);
  }

  // COROLLARY: in every reachable state, two hosts' committed values for a slot agree.
  lemma CommittedAgree(c: Constants, behavior: seq<State>, i: HostId, j: HostId, slot: Slot)
    requires Reachable(c, behavior)
    requires i < |behavior[|behavior| - 1].hosts| && j < |behavior[|behavior| - 1].hosts|
    requires slot in behavior[|behavior| - 1].hosts[i].committed
    requires slot in behavior[|behavior| - 1].hosts[j].committed
    ensures behavior[|behavior| - 1].hosts[i].committed[slot] == behavior[|behavior| - 1].hosts[j].committed[slot]
  {
    CommittedWasChosen(c, behavior, i, slot);
    CommittedWasChosen(c, behavior, j, slot);
    Agreement(c, behavior, slot, behavior[|behavior| - 1].hosts[i].committed[slot],
                     behavior[|behavior| - 1].hosts[j].committed[slot]);
  }
}
