// Evidence that the protocol is not vacuous: a concrete behavior (one member) in which a
// client's value gets chosen. The theorems in Agreement.i.dfy quantify over such behaviors.
module ProtocolSanity {
  import opened Native
  import opened Ballots
  import opened Spec
  import opened Protocol
  import Quorums

  lemma OneMemberIsAQuorum()
    ensures Members(1) == {0}
    ensures Quorums.IsQuorum(Members(1), {0})
  {
    assert Quorums.Indices(0) == {};
  }

  lemma AValueCanBeChosen() returns (c: Constants, behavior: seq<State>)
    ensures Reachable(c, behavior)
    ensures Chosen(c.n, behavior[|behavior| - 1].net, 0, [7])
  {
    c := Constants(1);
    var bal := Ballot(1, 0);
    var v: Value := [7];
    OneMemberIsAQuorum();
    // Init.
    var h0 := Host(Zero, map[], 0, map[], NotLeader);
    var s0 := State([h0], {});
    assert Init(c, s0);
    // 0. A client asks member 0 to decide v.
    var req := Request(0, 0, v);
    var sr := State([h0], {req});
    assert ClientRequest(c, s0, sr, 0, v);
    // 1. StartPrepare(bal).
    var prep := Prepare(0, 0, bal);
    var sent1 := set j: nat | j < 1 :: Prepare(0, j, bal);
    assert sent1 == {prep};
    var h1 := h0.(promised := bal, leader := Leading(bal, 1, {}, map[]));
    var s1 := State([h1], {req, prep});
    assert NextStep(c, sr, s1, 0, StartPrepareStep(bal), sent1);
    // 2. ReceivePrepare: promise bal, reporting no votes.
    var prom := Promise(0, 0, bal, 0, map[]);
    var s2 := State([h1], {req, prep, prom});
    assert NextStep(c, s1, s2, 0, ReceivePrepareStep(prep, 0), {prom});
    // 3. ReceivePromise: a quorum has promised, phase 2.
    assert Senders({prom}) == {0};
    var h3 := h1.(leader := Leading(bal, 2, {prom}, map[]));
    var s3 := State([h3], s2.net);
    assert NextStep(c, s2, s3, 0, ReceivePromiseStep(prom), {});
    // 4. SendAccept(0, v): no vote reported, any value is safe; v is the client's.
    var acc := Accept(0, 0, bal, 0, v);
    var sent4 := set j: nat | j < 1 :: Accept(0, j, bal, 0, v);
    assert sent4 == {acc};
    var h4 := h3.(leader := h3.leader.(proposed := map[0 := v]));
    var s4 := State([h4], s3.net + {acc});
    assert SafeToPropose({prom}, 0, v);
    assert NextStep(c, s3, s4, 0, SendAcceptStep(0, v), sent4);
    // 5. ReceiveAccept: vote.
    var accd := Accepted(0, 0, bal, 0, v);
    var h5 := h4.(promised := bal, votes := h4.votes[0 := Vote(bal, v)]);
    var s5 := State([h5], s4.net + {accd});
    assert NextStep(c, s4, s5, 0, ReceiveAcceptStep(acc), {accd});
    behavior := [s0, sr, s1, s2, s3, s4, s5];
    assert Next(c, s0, sr) && Next(c, sr, s1) && Next(c, s1, s2) && Next(c, s2, s3) && Next(c, s3, s4) && Next(c, s4, s5);
    assert SentAccepted(s5.net, 0, bal, 0, v);
    assert ChosenAt(1, s5.net, bal, {0}, 0, v);
  }
}
