// The Replica (Impl.i.dfy), part 4 of 7: one handler per kind of message received from another
// member (OnPrepare .. OnCatchUp), each a run of its host's protocol steps, and the lemmas that
// show a received message's handling refines the protocol's receive step.
abstract module ImplHandlers refines ImplMoves {
  class Replica ... {
    // Refines ReceivePrepare(m, fromSlot) (and StepDown when it stops leading), see R.PrepareMoves.
    method OnPrepare(src: uint64, b: Ballot, fromSlot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog
      ensures var m := S.Prepare(src as nat, me as nat, b);
              var moves := R.PrepareMoves(me as nat, old(AbsHost()), old(role) != Follower && b != old(bal), m, fromSlot as nat);
              && RR.Run(Consts(), me as nat, old(AbsHost()), {m}, moves, AbsHost())
              && RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves))
      ensures RM.NoLearns(sentLog[|old(sentLog)|..])
      // What it did, in order: the promise's record, when it raises its promise, then its answer.
      ensures exists q: Packet :: sofar.trace == old(sofar.trace) + Cr.PromiseTrace(BalLt(old(promised), b), b, q)
      ensures src != me ==> selfQueue == old(selfQueue)
    {
      if !BalLe(promised, b) {
        Send(src, Nack(promised));
        assert sofar.trace == old(sofar.trace) + Cr.PromiseTrace(false, b, Packet(me, src, Nack(old(promised))));
        ghost var m := S.Prepare(src as nat, me as nat, b);
        ghost var nack := S.Nack(me as nat, src as nat, promised);
        ghost var mv := RR.Move(P.ReceivePrepareStep(m, fromSlot as nat), {nack}, AbsHost());
        assert P.HostStep(Consts(), me as nat, AbsHost(), AbsHost(), {m}, mv.sent, mv.step);
        RR.RunOne(Consts(), me as nat, AbsHost(), {m}, mv);
        assert sentLog[|old(sentLog)|..] == [Packet(me, src, Nack(promised))];
        RM.PacketsRefineOne(Packet(me, src, Nack(promised)), nack, {nack});
        return;
      }
      assert {:split_here} true;  // the refusal apart from the promise
      SetPromised(b);
      if role != Follower && b != bal {
        StepDown();
      }
      if src != me {
        ticks := 0;
      }
      assert {:split_here} true;  // the votes reported apart from the promise's update
      var start := if fromSlot > logStart then fromSlot else logStart;
      ghost var h0 := old(AbsHost());
      assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
      var reported, s := ReportedVotes(start);
      assert {:split_here} true;  // keeps each half of this proof small
      ghost var trace0 := sofar.trace;
      assert trace0 == old(sofar.trace) + (if BalLt(old(promised), b) then [O.Emitted(RecPromised(b))] else []);
      Send(src, Promise(b, start, reported));
      assert sofar.trace == old(sofar.trace) + Cr.PromiseTrace(BalLt(old(promised), b), b, Packet(me, src, Promise(b, start, reported)));
      // The refinement: the votes below voteHi are all the votes held (VotesBelowHi).
      ghost var m := S.Prepare(src as nat, me as nat, b);
      ghost var p := S.Promise(me as nat, src as nat, b, start as nat, P.VotesFrom(h0.votes, start as nat));
      R.ReportAll(h0.votes, start as nat, s as nat, voteHi as nat);
      assert RM.MsgRefines(me as nat, src as nat, Promise(b, start, reported), p);
      assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
      PrepareRefines(h0, AbsHost(), m, fromSlot as nat, old(role) != Follower && b != old(bal));
      assert sentLog[|old(sentLog)|..] == [Packet(me, src, Promise(b, start, reported))];
      RM.PacketsRefineOne(Packet(me, src, Promise(b, start, reported)), p, {p});
    }

    // The votes this host holds from slot start on, in slot order, for a Promise: gathered in
    // an array, then copied out once (appending to a sequence copies it: a promise reporting
    // 4,000 votes took 104 ms). s is where the scan stopped, voteHi or start.
    method ReportedVotes(start: uint64) returns (reported: seq<SlotVote>, s: uint64)
      requires Valid() && logStart <= start
      ensures start <= s && (s == voteHi || (s == start && voteHi <= start))
      ensures RM.SlotVotesMap(reported) == R.VotesIn(RS.AbsVotes(votes[..], logStart as nat), start as nat, s as nat)
    {
      ghost var V := RS.AbsVotes(votes[..], logStart as nat);
      ghost var g: seq<SlotVote> := [];
      var size := if start < voteHi then voteHi - start else 0;
      var buf := new SlotVote[size];
      var k: uint64 := 0;
      s := start;
      R.ReportNone(V, start as nat);
      while s < voteHi
        invariant Valid() && start <= s && (s <= voteHi || s == start)
        invariant RM.SlotVotesMap(g) == R.VotesIn(V, start as nat, s as nat)
        invariant buf.Length == size as int && k <= s - start && buf[..k] == g
        modifies buf
        decreases voteHi as int - s as int
      {
        var v := votes[Idx(s)];
        R.ReportNext(votes[..], logStart as nat, start as nat, s, g);
        if v.Vote? {
          buf[k] := SlotVote(s, v.bal, v.val);
          assert buf[..k + 1] == buf[..k] + [SlotVote(s, v.bal, v.val)];
          g := g + [SlotVote(s, v.bal, v.val)];
          k := k + 1;
        }
        s := s + 1;
      }
      reported := buf[..k];
    }

    // A promise is ReceivePrepare, followed by StepDown when `down`.
    lemma PrepareRefines(h: P.Host, h': P.Host, m: S.Message, from: nat, down: bool)
      requires Valid() && m.Prepare? && m.dst == me as nat && BalLe(h.promised, m.bal)
      requires h' == if down then h.(promised := m.bal, leader := P.NotLeader) else h.(promised := m.bal)
      ensures var moves := R.PrepareMoves(me as nat, h, down, m, from);
              var ls := if from > h.logStart then from else h.logStart;
              && RR.Run(Consts(), me as nat, h, {m}, moves, h')
              && RR.SentBy(moves) == {S.Promise(me as nat, m.src, m.bal, ls, P.VotesFrom(h.votes, ls))}
    {
      var h1 := h.(promised := m.bal);
      var ls := if from > h.logStart then from else h.logStart;
      var mv := RR.Move(P.ReceivePrepareStep(m, from), {S.Promise(me as nat, m.src, m.bal, ls, P.VotesFrom(h.votes, ls))}, h1);
      assert P.HostStep(Consts(), me as nat, h, h1, {m}, mv.sent, mv.step);
      if down {
        RR.RunOne(Consts(), me as nat, h1, {m}, RR.Move(P.StepDownStep, {}, h'));
        RR.RunCons(Consts(), me as nat, h, {m}, mv, [RR.Move(P.StepDownStep, {}, h')], h');
      } else {
        RR.RunOne(Consts(), me as nat, h, {m}, mv);
        assert [mv] + [] == [mv];
      }
    }

    // Refines ReceivePromise(m), m the Promise(b) from src with its logStart and reported votes,
    // when this host campaigns for b, has no promise from src yet and is short of a quorum;
    // then, when the promises reach a quorum, BecomeLeader's steps. Otherwise no step (a report
    // whose slots do not increase is malformed, the core never sends one: it is dropped like a
    // lost message).
    method OnPromise(src: uint64, b: Ballot, ls: uint64, reported: seq<SlotVote>) returns (ghost moves: seq<RR.Move>)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows() && SameConfig()
      ensures var m := S.Promise(src as nat, me as nat, b, ls as nat, RM.SlotVotesMap(reported));
              RR.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), {m}, moves, AbsHost(), sentLog)
      // As BecomeLeader: no record, and the first message to itself begins with its vote's record.
      ensures recLog == old(recLog)
      ensures old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != []
    {
      ghost var m := S.Promise(src as nat, me as nat, b, ls as nat, RM.SlotVotesMap(reported));
      ghost var h0, log0 := AbsHost(), sentLog;
      RR.TrailNil(Consts(), me as nat, h0, log0, {m});
      moves := [];
      if role != Candidate || b != bal || src >= n || promiseFrom[src] || promiseCount >= quorum {
        return;
      }
      var increasing := Cand.IncreasingSlots(reported);
      if !increasing {
        return;
      }
      assert {:split_here} true;
      ghost var l0, pf0, count0 := leaderAbs, promiseFrom[..], promiseCount;
      Cand.TiedPromise(Consts(), bal, l0, n, pf0, count0, m, quorum);
      assert Cand.TakeoverOf(l0.promises, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart,
                             takeoverHi, takeoverOverflow) by {
        reveal Cand.Takeover();
      }
      if ls > maxLogStart {
        maxLogStart := ls;
        maxLogStartFrom := src;
      }
      // Fold the reported votes into takeover: the highest vote per slot.
      Cand.TakeoverAddEmpty(l0.promises, m, reported, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat,
                            maxLogStart, takeoverHi, takeoverOverflow);
      assert {:split_here} true;  // the fold apart from its preparation
      var rest := reported;
      ghost var k: nat := 0;
      while rest != []
        invariant 0 <= k <= |reported| && rest == reported[k..]
        invariant Shape() && VotesBelowHi() && CommittedPrefix() && CandidateTied() && LeaderTied() && ProposedTied() && AcksTied()
        invariant SelfLogged() && acked == old(acked)
        invariant Replays()
        invariant role == Candidate && leaderAbs == l0 && promiseFrom[..] == pf0 && promiseCount == count0
        invariant bal == old(bal) && promised == old(promised) && logStart == old(logStart) && nextSlot == old(nextSlot)
        invariant AbsHost() == h0 && sentLog == log0 && SameConfig()
        invariant ls <= maxLogStart
        invariant Cand.TakeoverOf(l0.promises + {Cand.Part(m, reported, k)}, RS.AbsVotes(takeover[..], logStart as nat),
                                  logStart as nat, maxLogStart, takeoverHi, takeoverOverflow)
        modifies this`takeoverHi, this`takeoverOverflow, this`overflowFrom, takeover
        decreases |rest|
      {
        var sv := rest[0];
        rest := rest[1..];
        ghost var arr0 := takeover[..];
        ghost var tk, hi0, ov0 := RS.AbsVotes(takeover[..], logStart as nat), takeoverHi, takeoverOverflow;
        if InWindow(sv.slot) {
          var cur := takeover[Idx(sv.slot)];
          RS.AbsVotesAt(takeover[..], logStart as nat, sv.slot as nat);
          if cur.NoVote? || BalLt(cur.bal, sv.bal) {
            takeover[Idx(sv.slot)] := Vote(sv.bal, sv.val);
            RS.AbsVotesUpdate(arr0, logStart as nat, sv.slot as nat, sv.bal, sv.val);
          }
          if sv.slot + 1 > takeoverHi {
            takeoverHi := sv.slot + 1;
          }
        } else if sv.slot >= logStart {
          takeoverOverflow := true;
          overflowFrom := src;
        }
        RS.AbsVotesKeys(arr0, logStart as nat);
        assert {:split_here} true;  // the update apart from the fold's lemma and the invariants
        Cand.TakeoverFold(l0.promises, m, reported, k, tk, logStart as nat, WINDOW as nat, maxLogStart, hi0, ov0,
                          RS.AbsVotes(takeover[..], logStart as nat), takeoverHi, takeoverOverflow);
        assert {:split_here} true;  // the invariants apart from the fold's lemma
        k := k + 1;
      }
      assert OutTied() && CommitsTied() && BuffersTied();  // untouched by the fold
      assert {:split_here} true;  // keeps each part of this proof small
      assert reported[..|reported|] == reported;
      promiseFrom[src] := true;
      promiseCount := promiseCount + 1;
      assert promiseFrom[..] == pf0[src := true];
      leaderAbs := R.Collected(Consts(), l0, m);
      Lead.ProposalsLedNonLeader(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      assert TakeoverTied() by {
        reveal Cand.Takeover();
      }
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      assert {:split_here} true;  // Valid() past the promise's count apart from its parts
      assert Valid();
      assert {:split_here} true;  // the refinement apart from the state's update
      ghost var mv := R.PromiseMoves(Consts(), h0, m, true)[0];
      assert AbsHost() == mv.post;
      RR.TrailSnoc(Consts(), me as nat, h0, log0, {m}, [], h0, log0, mv, sentLog);
      assert [] + [mv] == [mv];
      moves := [mv];
      if promiseCount >= quorum {
        ghost var h1, log1 := AbsHost(), sentLog;
        ghost var more := BecomeLeader();
        RR.TrailNet(Consts(), me as nat, h1, log1, {}, {m}, more, AbsHost(), sentLog);
        RR.TrailChain(Consts(), me as nat, h0, log0, {m}, moves, h1, log1, more, AbsHost(), sentLog);
        moves := moves + more;
      }
      assert {:split_here} true;  // this path's postconditions apart: where the paths join (batch 1) they are only looked up
      assert Valid() && PromisedGrows() && SameConfig();
      assert {:split_here} true;
      assert RR.Trail(Consts(), me as nat, h0, log0, {m}, moves, AbsHost(), sentLog);
      assert recLog == old(recLog);
      assert old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != [];
    }

    // Refines ReceiveAccept (and StepDown when it stops leading), see R.AcceptMoves.
    // {:isolate_assertions}: each of its proof obligations apart (the refusal path with
    // SameBases' early packets cost 66 % of the resource limit as one batch, and Z3 4.8.12 gives
    // up on a {:split_here} after its Send).
    method {:isolate_assertions} OnAccept(src: uint64, b: Ballot, slot: uint64, val: Value)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog
      ensures var m := S.Accept(src as nat, me as nat, b, slot as nat, val);
              var moves := R.AcceptMoves(me as nat, old(AbsHost()), old(logStart) as nat + WINDOW as nat,
                                         old(role) != Follower && b != old(bal), m);
              && RR.Run(Consts(), me as nat, old(AbsHost()), {m}, moves, AbsHost())
              && RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves))
      ensures RM.NoLearns(sentLog[|old(sentLog)|..])
      // What it did, in order (Cr.AcceptTrace): a refusal's Nack; or, voting, the record of its
      // promise when it raises it, the vote's record, then the Accepted.
      ensures Cr.AcceptDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val)
    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
        assert sentLog[|old(sentLog)|..] == [Packet(me, src, Nack(promised))];  // no Learn
        assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
        Cr.RefuseDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val);
        return;
      }
      assert {:split_here} true;
      if !InWindow(slot) {
        if slot < logStart && src < n && src != me {
          // the slot is in this host's snapshot: the sender lags behind it and needs the snapshot
          AskSnapshot(src);
        }
        Cr.IgnoreDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val);
        assert sentLog[|old(sentLog)|..] == [];
        return;  // beyond this host's window: it cannot hold the vote (the leader re-sends)
      }
      assert {:split_here} true;  // verify the voting path apart from the two above
      SetPromised(b);
      ghost var trace1 := sofar.trace;
      if role != Follower && b != bal {
        StepDown();
      }
      assert {:split_here} true;
      assert InWindow(slot);
      if src != me {
        ticks := 0;
      }
      if b.node < n {
        leaderHint := b.node;
      }
      votes[Idx(slot)] := Vote(b, val);
      if slot + 1 > voteHi {
        voteHi := slot + 1;
      }
      RS.AbsVotesUpdate(old(votes[..]), logStart as nat, slot as nat, b, val);
      RS.AllBelowUpdate(RS.AbsVotes(old(votes[..]), logStart as nat), slot as nat, S.Vote(b, val), old(voteHi) as nat, voteHi as nat);
      assert {:split_here} true;  // the vote's record and answer apart from the vote
      ghost var trace0, queue0 := sofar.trace, selfQueue;
      Persist(RecVote(slot, b, val));
      Send(b.node, Accepted(b, slot));
      assert sentLog[|old(sentLog)|..] == [Packet(me, b.node, Accepted(b, slot))];  // no Learn
      Cr.VoteDid(old(sofar.trace), trace1, trace0, sofar.trace, old(selfQueue), queue0, selfQueue, me, src, old(promised), b,
                 old(logStart), slot, val);
      assert {:split_here} true;  // the refinement apart from what the step did
      // The refinement: ReceiveAccept votes (then StepDown, if it stepped down).
      assert RM.MsgRefines(me as nat, b.node as nat, Accepted(b, slot), S.Accepted(me as nat, b.node as nat, b, slot as nat, val));
      AcceptRefines(old(AbsHost()), AbsHost(), S.Accept(src as nat, me as nat, b, slot as nat, val),
                    old(role) != Follower && b != old(bal));
    }

    // A vote in the window is ReceiveAccept, followed by StepDown when `down`.
    lemma AcceptRefines(h: P.Host, h': P.Host, m: S.Message, down: bool)
      requires Valid() && m.Accept? && m.dst == me as nat
      requires BalLe(h.promised, m.bal) && h.logStart <= m.slot < h.logStart + WINDOW as nat
      requires var h1 := h.(promised := m.bal, votes := h.votes[m.slot := S.Vote(m.bal, m.val)]);
               h' == if down then h1.(leader := P.NotLeader) else h1
      ensures var moves := R.AcceptMoves(me as nat, h, h.logStart + WINDOW as nat, down, m);
              && RR.Run(Consts(), me as nat, h, {m}, moves, h')
              && RR.SentBy(moves) == {S.Accepted(me as nat, m.bal.node as nat, m.bal, m.slot, m.val)}
    {
      var h1 := h.(promised := m.bal, votes := h.votes[m.slot := S.Vote(m.bal, m.val)]);
      var mv := RR.Move(P.ReceiveAcceptStep(m), {S.Accepted(me as nat, m.bal.node as nat, m.bal, m.slot, m.val)}, h1);
      assert P.HostStep(Consts(), me as nat, h, h1, {m}, mv.sent, mv.step);
      if down {
        RR.RunOne(Consts(), me as nat, h1, {m}, RR.Move(P.StepDownStep, {}, h'));
        RR.RunCons(Consts(), me as nat, h, {m}, mv, [RR.Move(P.StepDownStep, {}, h')], h');
      } else {
        RR.RunOne(Consts(), me as nat, h, {m}, mv);
        assert [mv] + [] == [mv];
      }
    }

    // An Accepted(b, slot) from src; `a` is its image (its value is not on the wire). A leader
    // of b counts it; once a quorum acknowledged the slot, it is chosen: LearnChosen(slot, v, b,
    // q), v the value proposed there and q those members, reading the Accepted messages counted
    // (`acked`), given that they carry the proposal's value (AckedValues). Otherwise no step.
    method OnAccepted(src: uint64, b: Ballot, slot: uint64, ghost a: S.Message) returns (ghost moves: seq<RR.Move>)
      requires Valid()
      requires a.Accepted? && a.src == src as nat && a.dst == me as nat && a.bal == b && a.slot == slot as nat
      modifies Repr
      ensures Valid() && StepGrows() && SameConfig() && old(acked) <= acked <= old(acked) + {a}
      ensures leaderAbs == old(leaderAbs) && QuietSince()
      ensures R.AckedValues(acked, leaderAbs) ==>
                RR.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), acked, moves, AbsHost(), sentLog)
    {
      ghost var h0, log0 := AbsHost(), sentLog;
      moves := [];
      if role != Leader || b != bal || src >= n || !InWindow(slot) {
        RR.TrailNil(Consts(), me as nat, h0, log0, acked);
        return;
      }
      var idx := Idx(slot);
      var p := proposed[idx];
      AckIndexBound(idx, src, n, acks.Length);
      if p.None? || acks[idx * n + src] || committed[idx].Some? {
        RR.TrailNil(Consts(), me as nat, h0, log0, acked);
        return;
      }
      ghost var acks0 := acks[..];
      acks[idx * n + src] := true;
      assert acks[..] == acks0[(slot as nat % WINDOW as nat) * n as nat + src as nat := true];
      Lead.AcksAdd(role, bal, acked, acks0, n, logStart as nat, slot as nat, src, a);
      acked := acked + {a};
      RR.TrailNil(Consts(), me as nat, h0, log0, acked);
      // Count the members that acknowledged this slot (n is small).
      var count: uint64 := 0;
      var j: uint64 := 0;
      ghost var q: set<nat> := {};
      while j < n
        invariant j <= n && count <= j && |q| == count as nat
        invariant forall k | k in q :: k < j as nat && Lead.AckAt(acks[..], n, slot as nat, k as uint64)
        invariant Valid() && role == Leader
        modifies {}
      {
        AckIndexBound(idx, j, n, acks.Length);
        if acks[idx * n + j] {
          assert j as nat !in q;
          q := q + {j as nat};
          count := count + 1;
        }
        j := j + 1;
      }
      if count >= quorum {
        ghost var props := RS.AbsCommitted(proposed[..], logStart as nat);
        RS.AbsCommittedAt(proposed[..], logStart as nat, slot as nat);
        assert proposed[..][slot as nat % WINDOW as nat] == p;
        assert slot as nat in props && props[slot as nat] == p.val;
        Lead.ProposalsLedHas(props, leaderAbs, slot as nat);
        Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
        RS.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
        if R.AckedValues(acked, leaderAbs) {
          // The members in q are a quorum, each of which sent Accepted(b, slot, v).
          Lead.AcksQuorum(bal, acked, acks[..], n, logStart as nat, slot as nat, q, quorum, leaderAbs, p.val);
          // A quorum is not empty: some member accepted p.val at b in slot.
          Lead.AcksSome(acked, n, bal, q, slot as nat, p.val);
        }
        assert {:split_here} true;
        ghost var h1, log1 := AbsHost(), sentLog;
        CommitSlot(slot, p.val);
        ghost var h2, log2 := AbsHost(), sentLog;
        assert {:split_here} true;  // the broadcast apart from the commit
        Broadcast(Learn(b, slot), false);
        assert AbsHost() == h2;
        RM.LearnBroadcastRefines(sentLog[|log2|..], me, n, b, slot, p.val, acked);
        assert {:split_here} true;  // the step's move apart from the broadcast
        if R.AckedValues(acked, leaderAbs) {
          ghost var mv := RR.Move(P.LearnChosenStep(slot as nat, p.val, b, q), RM.CommitAll(me as nat, n as nat, slot as nat, p.val), AbsHost());
          assert P.HostStep(Consts(), me as nat, h1, mv.post, acked, mv.sent, mv.step);
          RR.TrailSnoc(Consts(), me as nat, h0, log0, acked, [], h1, log1, mv, sentLog);
          assert [] + [mv] == [mv];
          moves := [mv];
        }
      } else {
        assert sentLog == log0;
      }
    }

    // Learn(b, slot) stands for Commit(slot, val), val the value of Accept(b, slot): this host's
    // vote at b in slot, if it holds one (then it voted for that Accept). Refines ReceiveCommit
    // of that Commit (sent by `src`, a ghost parameter), see R.CommitMoves; else it is ignored.
    // That Commit is in the network of every reachable state (ImplSystem.LearnValueHolds).
    method OnLearn(b: Ballot, slot: uint64, ghost src: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures Keeps() && sentLog == old(sentLog) && QuietSince()
      ensures var h := old(AbsHost());
              if slot as nat in h.votes && h.votes[slot as nat].bal == b then
                var m := S.Commit(src as nat, me as nat, slot as nat, h.votes[slot as nat].val);
                RR.Run(Consts(), me as nat, h, {m}, R.CommitMoves(h, old(logStart) as nat + WINDOW as nat, m), AbsHost())
              else AbsHost() == h
    {
      RS.AbsVotesKeys(votes[..], logStart as nat);
      if InWindow(slot) {
        RS.AbsVotesAt(votes[..], logStart as nat, slot as nat);
      }
      if !InWindow(slot) {
        return;
      }
      var v := votes[Idx(slot)];
      if v.Vote? && v.bal == b {
        CommitSlot(slot, v.val);
        ghost var m := S.Commit(src as nat, me as nat, slot as nat, v.val);
        ReceiveCommitRefines(old(AbsHost()), AbsHost(), m);
      }
    }

    // The effect of CommitSlot is that of ReceiveCommit, or of no step.
    lemma ReceiveCommitRefines(h: P.Host, h': P.Host, m: S.Message)
      requires Valid() && m.Commit? && m.dst == me as nat && h.logStart <= m.slot < h.logStart + WINDOW as nat
      requires h' == if m.slot in h.committed then h else h.(committed := h.committed[m.slot := m.val])
      ensures RR.Run(Consts(), me as nat, h, {m}, R.CommitMoves(h, h.logStart + WINDOW as nat, m), h')
    {
      if m.slot !in h.committed {
        RR.RunOne(Consts(), me as nat, h, {m}, RR.Move(P.ReceiveCommitStep(m), {}, h'));
      } else {
        RR.RunNil(Consts(), me as nat, h, {m});
      }
    }

    // Refines ReceiveCommit (of the Commit sent by `src`, a ghost parameter), see R.CommitMoves.
    method OnCommit(slot: uint64, val: Value, ghost src: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures Keeps() && sentLog == old(sentLog) && QuietSince()
      ensures var m := S.Commit(src as nat, me as nat, slot as nat, val);
              RR.Run(Consts(), me as nat, old(AbsHost()), {m}, R.CommitMoves(old(AbsHost()), old(logStart) as nat + WINDOW as nat, m), AbsHost())
    {
      RR.RunNil(Consts(), me as nat, AbsHost(), {S.Commit(src as nat, me as nat, slot as nat, val)});
      if InWindow(slot) {
        CommitSlot(slot, val);
        ReceiveCommitRefines(old(AbsHost()), AbsHost(), S.Commit(src as nat, me as nat, slot as nat, val));
      }
    }

    // A Nack has no protocol role: StepDown (when a higher ballot is about), or no step.
    method OnNack(p: Ballot)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && sentLog == old(sentLog) && recLog == old(recLog)
      ensures RR.Run(Consts(), me as nat, old(AbsHost()), {}, R.StepDownMoves(old(AbsHost()), old(role) != Follower && BalLt(old(bal), p)), AbsHost())
    {
      maxSeen := BalMax(maxSeen, p);
      if role != Follower && BalLt(bal, p) {
        StepDown();
      }
      R.StepDownRefines(Consts(), me as nat, old(AbsHost()), {}, old(role) != Follower && BalLt(old(bal), p));
    }

    // A Heartbeat has no protocol role: R.HeartbeatMoves (Nack, or StepDown and CatchUp).
    method OnHeartbeat(src: uint64, b: Ballot, leaderCommit: uint64, rs: uint64)
      requires Valid() && src < n
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog && recLog == old(recLog)
      ensures var moves := R.HeartbeatMoves(me as nat, old(AbsHost()), src as nat, b, old(role) != Follower && b != old(bal),
                                            leaderCommit > old(commitUpto) && old(catchUpCooldown) == 0, old(commitUpto) as nat);
              && RR.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
              && RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves))
      ensures RM.NoLearns(sentLog[|old(sentLog)|..])
    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
        ghost var nack := S.Nack(me as nat, src as nat, promised);
        RR.RunOne(Consts(), me as nat, AbsHost(), {}, RR.NoSafety(AbsHost(), nack));
        assert sentLog[|old(sentLog)|..] == [Packet(me, src, Nack(promised))];
        RM.PacketsRefineOne(Packet(me, src, Nack(promised)), nack, {nack});
        return;
      }
      assert {:split_here} true;  // the refusal apart from the heartbeat's handling
      maxSeen := BalMax(maxSeen, b);
      if role != Follower && b != bal {
        StepDown();
      }
      if b.node < n {
        leaderHint := b.node;
      }
      ticks := 0;
      ghost var log0 := sentLog;
      assert log0 == old(sentLog) && commitUpto == old(commitUpto) && catchUpCooldown == old(catchUpCooldown);
      assert {:split_here} true;  // the answers apart from the state's update
      Send(src, HeartbeatAck(b, rs));
      ghost var log1 := sentLog;
      assert log1 == log0 + [Packet(me, src, HeartbeatAck(b, rs))];
      if leaderCommit > commitUpto && catchUpCooldown == 0 {
        Send(src, CatchUp(commitUpto));
        assert sentLog == log1 + [Packet(me, src, CatchUp(old(commitUpto)))];  // before the update: below it, only looked up
        catchUpCooldown := heartbeatTicks;
        assert {:split_here} true;  // Valid() past the cooldown's update, apart from the postconditions
        assert Valid();
        assert {:split_here} true;  // the packets sent apart from Valid()
        assert sentLog == log1 + [Packet(me, src, CatchUp(old(commitUpto)))];
      }
      assert {:split_here} true;  // the refinement apart from the answers
      // The refinement.
      ghost var h0, down := old(AbsHost()), old(role) != Follower && b != old(bal);
      R.StepDownRefines(Consts(), me as nat, h0, {}, down);
      ghost var ack := [Packet(me, src, HeartbeatAck(b, rs))];
      assert RM.PacketsRefine(ack, {});
      if leaderCommit > old(commitUpto) && old(catchUpCooldown) == 0 {
        ghost var cu := S.CatchUp(me as nat, src as nat, old(commitUpto) as nat);
        RR.RunSnoc(Consts(), me as nat, h0, {}, R.StepDownMoves(h0, down), AbsHost(), RR.NoSafety(AbsHost(), cu));
        assert sentLog == old(sentLog) + (ack + [Packet(me, src, CatchUp(old(commitUpto)))]);
        assert sentLog[|old(sentLog)|..] == ack + [Packet(me, src, CatchUp(old(commitUpto)))];
        RM.PacketsRefineOne(Packet(me, src, CatchUp(old(commitUpto))), cu, {cu});
        RR.PacketsRefineAppend(ack, [Packet(me, src, CatchUp(old(commitUpto)))], {}, {cu});
        assert {} + {cu} == {cu};
      } else {
        assert sentLog == old(sentLog) + ack;
        assert sentLog[|old(sentLog)|..] == ack;
        assert R.StepDownMoves(h0, down) + [] == R.StepDownMoves(h0, down);
      }
      // This path's postconditions, in a batch of their own: where the paths join (batch 1,
      // with the refusal) they are then only looked up.
      assert {:split_here} true;
      assert Valid() && PromisedGrows();
      assert SameConfig() && old(sentLog) <= sentLog && recLog == old(recLog);
      assert RM.NoLearns(sentLog[|old(sentLog)|..]);
      ghost var mvs := R.HeartbeatMoves(me as nat, h0, src as nat, b, down,
                                        leaderCommit > old(commitUpto) && old(catchUpCooldown) == 0, old(commitUpto) as nat);
      assert RR.Run(Consts(), me as nat, h0, {}, mvs, AbsHost());
      assert RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(mvs));
    }

    // A HeartbeatAck changes only the leader's read bookkeeping: no protocol step.
    method OnHeartbeatAck(src: uint64, b: Ballot, rs: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && sentLog == old(sentLog) && AbsHost() == old(AbsHost()) && recLog == old(recLog)
    {
      if role != Leader || b != bal || src >= n || rs > readSeq {
        return;
      }
      if rs > readAck[src] {
        readAck[src] := rs;
      }
      UpdateReadConfirmed();
    }

    // Catch-up replies: one SendCommit per Commit sent; the abstract state is unchanged.
    method OnCatchUp(src: uint64, fromSlot: uint64)
      requires Valid() && src < n
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog && AbsHost() == old(AbsHost()) && recLog == old(recLog)
      ensures exists moves :: && RR.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
                              && RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves))
      ensures RM.NoLearns(sentLog[|old(sentLog)|..])
    {
      if fromSlot < logStart && src != me && src < n {
        // the slots it lacks are only in this host's snapshot now
        AskSnapshot(src);
      }
      ghost var moves: seq<RR.Move> := [];
      RR.RunNil(Consts(), me as nat, AbsHost(), {});
      assert RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves));
      var s := if fromSlot > logStart then fromSlot else logStart;
      if s >= commitUpto {
        return;
      }
      var end := if commitUpto - s > CATCHUP_BATCH then s + CATCHUP_BATCH else commitUpto;
      while s < end
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Valid() && Bounds() && logStart <= s <= end <= commitUpto
        invariant SameConfig() && old(sentLog) <= sentLog && AbsHost() == old(AbsHost()) && recLog == old(recLog)
        invariant RR.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
        invariant RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves))
        invariant RM.NoLearns(sentLog[|old(sentLog)|..])
        decreases end - s
      {
        var c := committed[Idx(s)];
        if c.Some? {
          ghost var sent0 := sentLog[|old(sentLog)|..];
          Send(src, Commit(s, c.val));
          RS.AbsCommittedAt(committed[..], logStart as nat, s as nat);
          ghost var mv := R.CatchUpMove(me as nat, AbsHost(), s as nat, src as nat, c.val);
          ghost var a := S.Commit(me as nat, src as nat, s as nat, c.val);
          assert P.HostStep(Consts(), me as nat, AbsHost(), mv.post, {}, mv.sent, mv.step);
          RR.RunSnoc(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost(), mv);
          assert sentLog[|old(sentLog)|..] == sent0 + [Packet(me, src, Commit(s, c.val))];
          RM.PacketsRefineOne(Packet(me, src, Commit(s, c.val)), a, {a});
          RR.PacketsRefineAppend(sent0, [Packet(me, src, Commit(s, c.val))], RR.SentBy(moves), {a});
          assert RM.NoLearns(sent0);
          moves := moves + [mv];
        }
        s := s + 1;
      }
    }
  }
}
