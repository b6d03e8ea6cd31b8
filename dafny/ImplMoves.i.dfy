// The Replica (Impl.i.dfy), part 3 of 7: the host's own moves, which the handlers and the whole
// steps make: raise the promise, step down, commit and learn, stand for election, take over as
// leader, propose a value in a slot, send heartbeats and catch-up requests, confirm reads. Each
// is a run of protocol steps of its host (ImplAbsRuns.i.dfy).
abstract module ImplMoves refines ImplWindow {
  class Replica ... {
    method SetPromised(b: Ballot)
      requires Valid() && BalLe(promised, b)
      modifies this
      ensures Valid() && PromisedGrows() && Bounds() && role == old(role) && bal == old(bal)
      ensures promised == b && Keeps() && sentLog == old(sentLog) && promiseCount == old(promiseCount)
      ensures sofar.trace == old(sofar.trace) + (if old(promised) != b then [O.Emitted(RecPromised(b))] else [])
      ensures selfQueue == old(selfQueue)
      ensures recLog == old(recLog) + (if old(promised) != b then [RecPromised(b)] else [])
      ensures out.early == old(out.early) && (old(promised) != b ==> out.sync)
    {
      if promised != b {
        promised := b;
        Persist(RecPromised(b));
      }
      maxSeen := BalMax(maxSeen, b);
    }

    method StepDown()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Bounds()
      ensures promised == old(promised) && me == old(me) && n == old(n)
      ensures votes == old(votes) && committed == old(committed) && sentLog == old(sentLog)
      ensures leaderAbs == P.NotLeader && catchUpCooldown == old(catchUpCooldown)
      ensures role == Follower && sofar == old(sofar) && selfQueue == old(selfQueue) && recLog == old(recLog)
    {
      role := Follower;
      bal := Zero;
      leaderAbs := P.NotLeader;
      Cand.TiedFollower(bal, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.ProposalsSentFollower(RS.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Lead.AcksFollower(bal, acked, acks[..], n, logStart as nat);
    }

    // ---- learning ------------------------------------------------------------------------

    method AdvanceCommit()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows()
      ensures promised == old(promised) && logStart == old(logStart) && Keeps() && sentLog == old(sentLog)
      ensures selfQueue == old(selfQueue) && recLog == old(recLog)
    {
      while commitUpto - logStart < WINDOW && committed[Idx(commitUpto)].Some?
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Valid()
        invariant promised == old(promised) && logStart == old(logStart) && Keeps() && sentLog == old(sentLog)
        invariant selfQueue == old(selfQueue) && recLog == old(recLog)
        decreases logStart + WINDOW - commitUpto
      {
        RS.AbsCommittedAt(committed[..], logStart as nat, commitUpto as nat);
        RS.HasAllExtend(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat);
        if nextSlot == commitUpto {
          Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, nextSlot as nat + 1, logStart as nat);
          nextSlot := nextSlot + 1;  // a slot committed elsewhere is never proposed in again
        }
        commitUpto := commitUpto + 1;
      }
    }

    // Abstractly: committed[slot] := val, unless slot is already committed here.
    method CommitSlot(slot: uint64, val: Value)
      requires Valid() && InWindow(slot)
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures Keeps() && sentLog == old(sentLog) && QuietSince()
      ensures var h := old(AbsHost());
              AbsHost() == if slot as nat in h.committed then h else h.(committed := h.committed[slot as nat := val])
    {
      RS.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
      if committed[Idx(slot)].None? {
        if slot >= nextSlot {
          Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, slot as nat + 1, logStart as nat);
          nextSlot := slot + 1;  // never propose in a slot already known to be chosen
        }
        committed[Idx(slot)] := Some(val);
        RS.AbsCommittedUpdate(old(committed[..]), logStart as nat, slot as nat, val);
        RS.HasAllAdd(RS.AbsCommitted(old(committed[..]), logStart as nat), logStart as nat, commitUpto as nat, slot as nat, val);
        // the value of this host's own vote is not written again (a large value would be on
        // disk twice): the record names the vote
        var v := votes[Idx(slot)];
        RS.AbsVotesAt(votes[..], logStart as nat, slot as nat);
        Persist(Rep.CommitRecord(slot, v, val));
        AdvanceCommit();
      }
    }

    // ---- elections -------------------------------------------------------------------------

    method ClearLeaderState()
      requires Valid() && role != Candidate
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures AbsSame() && votes[..] == old(votes[..]) && committed[..] == old(committed[..])
      ensures maxSeen == old(maxSeen) && commitUpto == old(commitUpto) && role == old(role)
      ensures promiseCount == 0 && (forall j | 0 <= j < n :: !promiseFrom[j])
      ensures forall j | 0 <= j < WINDOW :: takeover[j].NoVote?
      ensures forall j | 0 <= j < WINDOW :: proposed[j].None?
      ensures forall k | 0 <= k < acks.Length :: !acks[k]
      ensures nextSlot == old(nextSlot) && bal == old(bal) && acked == old(acked)
      ensures out == old(out) && recLog == old(recLog)
    {
      ResetLeaderArrays();
      promiseCount := 0;
      Cand.TiedNonCandidate(role, bal, leaderAbs, n, promiseFrom[..], old(promiseCount), promiseFrom[..], 0);
      maxLogStart := 0;
      maxLogStartFrom := me;
      takeoverHi := 0;
      takeoverOverflow := false;
      overflowFrom := me;
      readSeq := 0;
      readConfirmed := 0;
      Cand.TakeoverNonCandidate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
    }

    // Refines StartPrepare(b), b the next ballot of this host above every ballot it has seen;
    // no step when its ballots are exhausted.
    method StartElection()
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog
      ensures var seen := BalMax(old(promised), old(maxSeen));
              var ok := seen.round < UINT64_MAX - 1;
              var moves := R.ElectionMoves(me as nat, n as nat, old(AbsHost()), if ok then NextBallot(seen, me) else Zero, ok);
              && RR.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
              && RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(moves))
      ensures BalMax(old(promised), old(maxSeen)).round < UINT64_MAX - 1 ==> CandidateTied()
      ensures RM.NoLearns(sentLog[|old(sentLog)|..])
      // Its one record, the promise, comes before anything it sends.
      ensures recLog == old(recLog) || (|recLog| == |old(recLog)| + 1 && recLog[..|old(recLog)|] == old(recLog)
                                        && NeedsSync(recLog[|old(recLog)|]) && out.early == old(out.early))
    {
      RR.RunNil(Consts(), me as nat, AbsHost(), {});
      var seen := BalMax(promised, maxSeen);
      if seen.round >= UINT64_MAX - 1 {
        return;  // ballots exhausted: never lead again rather than reuse a ballot
      }
      role := Follower;  // campaigning anew: the old campaign's state goes
      leaderAbs := P.NotLeader;
      Cand.TiedFollower(bal, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.ProposalsSentFollower(RS.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Lead.AcksFollower(bal, acked, acks[..], n, logStart as nat);
      ClearLeaderState();
      assert {:split_here} true;  // the promise apart from the old campaign's end
      var b := NextBallot(seen, me);
      NextBallotIsAbove(seen, me);
      BalLeTransitive(promised, seen, b);
      assert BalLt(promised, b) by {
        if promised != seen { BalLtTransitive(promised, seen, b); }
      }
      SetPromised(b);
      ghost var rl1, e1, s1 := recLog, out.early, out.sync;  // its record, before anything it sends
      assert {:split_here} true;  // the campaign's state apart from the promise
      role := Candidate;
      bal := b;
      leaderAbs := P.Leading(b, 1, {}, map[]);
      assert forall j | 0 <= j < n as int :: !promiseFrom[..][j];
      Cand.TiedStart(bal, n, promiseFrom[..]);
      RS.AbsVotesEmpty(takeover[..], logStart as nat);
      Cand.TakeoverStart(bal, logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      RS.AbsCommittedEmpty(proposed[..], logStart as nat);
      Lead.ProposalsSentEmpty(role, me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      acked := {};
      Lead.AcksNone(role, bal, acked, acks[..], n, logStart as nat);
      ticks := 0;
      Broadcast(Prepare(b, commitUpto), true);
      assert {:split_here} true;  // the refinement apart from the state change
      assert rl1 == old(recLog) + [RecPromised(b)] && s1 && e1 == old(out.early);
      assert recLog == rl1 && out.early == e1 && recLog[..|old(recLog)|] == old(recLog);
      // The refinement: StartPrepare(b).
      ghost var h0 := old(AbsHost());
      assert BalLt(h0.promised, b) by {
        if h0.promised != seen { BalLtTransitive(h0.promised, seen, b); }
      }
      ghost var mv := R.ElectionMoves(me as nat, n as nat, h0, b, true)[0];
      assert AbsHost() == mv.post;
      assert P.HostStep(Consts(), me as nat, h0, mv.post, {}, mv.sent, mv.step);
      RR.RunOne(Consts(), me as nat, h0, {}, mv);
      RM.PrepareBroadcastRefines(sentLog[|old(sentLog)|..], me, n, b, commitUpto);
      assert {:split_here} true;  // this path's postconditions apart: where the paths join (batch 1) they are only looked up
      assert Valid() && PromisedGrows();
      assert SameConfig() && old(sentLog) <= sentLog;
      assert CandidateTied();
      assert RM.NoLearns(sentLog[|old(sentLog)|..]);
      assert |recLog| == |old(recLog)| + 1 && recLog[..|old(recLog)|] == old(recLog)
             && NeedsSync(recLog[|old(recLog)|]) && out.early == old(out.early);
      assert RR.Run(Consts(), me as nat, h0, {}, R.ElectionMoves(me as nat, n as nat, h0, b, true), AbsHost());
      assert RM.PacketsRefine(sentLog[|old(sentLog)|..], RR.SentBy(R.ElectionMoves(me as nat, n as nat, h0, b, true)));
    }

    // The trail of this host's protocol steps from h0, its state when its packet log was log0,
    // to now (see RR.Trail).
    ghost predicate TrailFrom(h0: P.Host, log0: seq<Packet>, net: set<S.Message>, moves: seq<RR.Move>)
      reads this, votes, committed
    {
      RR.Trail(Consts(), me as nat, h0, log0, net, moves, AbsHost(), sentLog)
    }

    // Send CatchUp(commitUpto) to dst: a SendNoSafety step, appended to the trail.
    method SendCatchUp(dst: uint64, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves: seq<RR.Move>)
      returns (ghost moves': seq<RR.Move>)
      requires Valid() && dst < n && dst != me && TrailFrom(h0, log0, {}, moves)
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && TrailFrom(h0, log0, {}, moves')
      ensures selfQueue == old(selfQueue) && recLog == old(recLog)
    {
      ghost var h1, log1 := AbsHost(), sentLog;
      Send(dst, CatchUp(commitUpto));
      ghost var a := S.CatchUp(me as nat, dst as nat, commitUpto as nat);
      assert AbsHost() == h1;
      assert sentLog[|log1|..] == [Packet(me, dst, CatchUp(commitUpto))];
      RM.PacketsRefineOne(Packet(me, dst, CatchUp(commitUpto)), a, {a});
      assert P.HostStep(Consts(), me as nat, h1, h1, {}, {a}, P.SendNoSafetyStep(a));
      RR.TrailSnoc(Consts(), me as nat, h0, log0, {}, moves, h1, log1, RR.NoSafety(h1, a), sentLog);
      moves' := moves + [RR.NoSafety(h1, a)];
    }

    // The leader's heartbeat: Heartbeat(bal, commitUpto, readSeq) to the other members, and a
    // CatchUp when this leader lags behind a promise's logStart. A SendNoSafety step each.
    method Beat(ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves: seq<RR.Move>) returns (ghost moves': seq<RR.Move>)
      requires Valid() && role == Leader && TrailFrom(h0, log0, {}, moves)
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && TrailFrom(h0, log0, {}, moves')
      ensures selfQueue == old(selfQueue) && recLog == old(recLog)
    {
      Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
      ghost var h1, log1 := AbsHost(), sentLog;
      Broadcast(Heartbeat(bal, commitUpto, readSeq), false);
      assert AbsHost() == h1;
      RR.BeatRefines(Consts(), h1, {}, me, n, bal, commitUpto, readSeq, sentLog[|log1|..]);
      ghost var beats := RR.BeatMoves(h1, me as nat, n as nat, bal, commitUpto as nat);
      RR.TrailOf(Consts(), me as nat, h1, log1, {}, beats, h1, sentLog);
      RR.TrailChain(Consts(), me as nat, h0, log0, {}, moves, h1, log1, beats, h1, sentLog);
      moves' := moves + beats;
      if maxLogStart > commitUpto && maxLogStartFrom != me {
        moves' := SendCatchUp(maxLogStartFrom, h0, log0, moves');  // this leader lags: ask again
      }
    }

    // A quorum promised bal: lead it (the protocol's phase 2), unless this host cannot take the
    // slots over (then it steps down and asks for what it lacks). It proposes in every slot
    // from the first one it has not seen committed (and at or above every promise's logStart)
    // up to the highest slot it knows of: the value of the highest vote the promises report
    // there, else a value this host saw committed there, else the empty value (a no-op batch).
    // Abstractly: SendAccept for each of those slots, then a SendNoSafety step per Heartbeat
    // and CatchUp; or StepDown and a CatchUp.
    method BecomeLeader() returns (ghost moves: seq<RR.Move>)
      requires Valid() && role == Candidate && promiseCount >= quorum
      modifies Repr
      ensures Valid() && PromisedGrows() && SameConfig()
      ensures RR.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), {}, moves, AbsHost(), sentLog)
      // It emits no record, and the first message it sends itself is the Accept of its first
      // takeover slot, whose handling begins with its vote's record (FirstRecord).
      ensures recLog == old(recLog)
      ensures old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != []
    {
      ghost var h0, log0 := AbsHost(), sentLog;
      RR.TrailNil(Consts(), me as nat, h0, log0, {});
      moves := [];
      if takeoverOverflow || promised != bal {
        var lags := takeoverOverflow && promised == bal;
        OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);  // the records: StepDown keeps them (sofar)
        StepDown();
        OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
        moves := R.StepDownMoves(h0, true);
        R.StepDownRefines(Consts(), me as nat, h0, {}, true);
        assert sentLog[|log0|..] == [];
        RR.TrailOf(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
        var from := if maxLogStart > commitUpto then maxLogStartFrom else overflowFrom;
        if lags && from != me {
          // A promise reported votes beyond this host's window: it lags and cannot take those
          // slots over. Ask for what it lacks, or each election it starts preempts the others
          // again and nobody leads (its election timeout may be the shortest).
          moves := SendCatchUp(from, h0, log0, moves);
        }
        assert {:split_here} true;  // this path's postconditions apart: where the paths join (batch 1) they are only looked up
        assert Valid() && PromisedGrows() && SameConfig();
        assert RR.Trail(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
        assert recLog == old(recLog);
        assert old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != [];
        return;
      }
      // Phase 2 covers every slot from the first one this host has not seen committed, up to
      // the highest slot it knows of (a vote reported in a promise, or a commit it saw).
      var start := if maxLogStart > commitUpto then maxLogStart else commitUpto;
      var hi := if takeoverHi > nextSlot then takeoverHi else nextSlot;
      if start - logStart > WINDOW {
        // The others are a whole window ahead: this host cannot lead until it catches up.
        OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
        StepDown();
        OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
        moves := R.StepDownMoves(h0, true);
        R.StepDownRefines(Consts(), me as nat, h0, {}, true);
        assert sentLog[|log0|..] == [];
        RR.TrailOf(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
        if maxLogStartFrom != me {
          moves := SendCatchUp(maxLogStartFrom, h0, log0, moves);
        }
        assert {:split_here} true;  // this path's postconditions apart: where the paths join (batch 1) they are only looked up
        assert Valid() && PromisedGrows() && SameConfig();
        assert RR.Trail(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
        assert recLog == old(recLog);
        assert old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != [];
        return;
      }
      assert {:split_here} true;  // phase 2 apart from the steps down
      // What phase 1 established, kept across the proposals below.
      ghost var l := leaderAbs;
      ghost var tk := RS.AbsVotes(takeover[..], logStart as nat);
      Cand.TiedPhase(bal, l, n, promiseFrom[..], promiseCount, quorum);
      assert Cand.TakeoverOf(l.promises, tk, logStart as nat, maxLogStart, takeoverHi, false) by {
        reveal Cand.Takeover();
      }
      Lead.ProposalsSentLead(RS.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.AcksRole(Candidate, Leader, bal, acked, acks[..], n, logStart as nat);
      role := Leader;
      Lead.ProposalsLedStart(RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Cand.TiedLeader(bal, leaderAbs, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, tk, logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      leaderHint := me;
      nextSlot := if start > hi then start else hi;
      Lead.LeadsTakeover(bal, l, tk, logStart as nat, maxLogStart, takeoverHi, nextSlot as nat);
      var s := start;
      assert {:split_here} true;  // the loop's invariants on entry apart from the takeover
      while s < hi
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameConfig() && SameBases()
        invariant Valid() && role == Leader && promised == bal && bal == old(bal)
        invariant start <= s && logStart == old(logStart) && hi <= nextSlot
        invariant maxLogStart == old(maxLogStart) && takeoverHi == old(takeoverHi)
        invariant leaderAbs.Leading? && leaderAbs.promises == l.promises
        invariant forall t | t in leaderAbs.proposed :: start as nat <= t < s as nat
        invariant RS.AbsVotes(takeover[..], logStart as nat) == tk
        invariant TrailFrom(h0, log0, {}, moves)
        invariant recLog == old(recLog)
        invariant old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != []
        decreases hi as int - s as int
      {
        if InWindow(s) {
          var c := committed[Idx(s)];
          var v := takeover[Idx(s)];
          var val := if v.Vote? then v.val else if c.Some? then c.val else [];
          RS.AbsVotesAt(takeover[..], logStart as nat, s as nat);
          Cand.TakeoverSafe(l.promises, tk, logStart as nat, maxLogStart, takeoverHi, s as nat, val);
          RS.AbsCommittedAt(committed[..], logStart as nat, s as nat);
          Cand.TakeoverValueSource(AbsHost(), tk, logStart as nat, maxLogStart, takeoverHi, s as nat, val);
          ghost var h1, log1 := AbsHost(), sentLog;
          ghost var mv := ProposeAt(s, val, {});
          RR.TrailSnoc(Consts(), me as nat, h0, log0, {}, moves, h1, log1, mv, sentLog);
          moves := moves + [mv];
        }
        assert {:split_here} true;  // the invariants kept apart from the proposal
        s := s + 1;
      }
      assert {:split_here} true;  // the heartbeat apart from the loop
      ticks := 0;
      moves := Beat(h0, log0, moves);
      assert {:split_here} true;  // this path's postconditions apart: where the paths join (batch 1) they are only looked up
      assert Valid() && PromisedGrows() && SameConfig();
      assert RR.Trail(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
      assert recLog == old(recLog);
      assert old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != [];
    }

    // Propose val in slot: Accept(bal, slot, val) to every member, this host included.
    // Abstractly SendAccept(slot, val), receiving from net; the caller shows it is safe, and
    // where val comes from (a client's request in net, a reported vote, a commit, the no-op).
    method ProposeAt(slot: uint64, val: Value, ghost net: set<S.Message>) returns (ghost mv: RR.Move)
      requires Valid() && InWindow(slot) && role == Leader && promised == bal && slot < nextSlot
      requires leaderAbs.Leading? && slot as nat !in leaderAbs.proposed
      requires forall p | p in leaderAbs.promises :: p.Promise? && slot as nat >= p.logStart
      requires P.SafeToPropose(leaderAbs.promises, slot as nat, val)
      requires P.ValueSource(net, AbsHost(), slot as nat, val)
      modifies Repr
      ensures Valid() && PromisedGrows() && role == Leader && Bounds() && SameConfig()
      ensures promised == old(promised) && bal == old(bal) && maxLogStart == old(maxLogStart)
      ensures takeover[..] == old(takeover[..])
      ensures leaderAbs == old(leaderAbs).(proposed := old(leaderAbs).proposed[slot as nat := val])
      ensures mv.post == AbsHost() && P.HostStep(Consts(), me as nat, old(AbsHost()), mv.post, net, mv.sent, mv.step)
      ensures mv.step == P.SendAcceptStep(slot as nat, val)
      ensures old(sentLog) <= sentLog && RM.PacketsRefine(sentLog[|old(sentLog)|..], mv.sent)
      ensures RM.NoLearns(sentLog[|old(sentLog)|..])
      ensures recLog == old(recLog) && selfQueue == old(selfQueue) + [Accept(bal, slot, val)]
    {
      var i: uint64 := 0;
      while i < n
        invariant i <= n
        invariant Valid() && role == Leader && Unchanged()
        invariant takeover[..] == old(takeover[..]) && AbsHost() == old(AbsHost())
        modifies acks
      {
        AckIndexBound(Idx(slot), i, n, acks.Length);
        ghost var before := acks[..];
        acks[Idx(slot) * n + i] := false;
        Lead.AcksFewer(role, bal, acked, before, acks[..], n, logStart as nat);
        i := i + 1;
      }
      ghost var h0 := AbsHost();
      Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.LeadsPropose(bal, leaderAbs, nextSlot as nat, logStart as nat, slot as nat, val);
      Lead.ProposalsLedAdd(RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs, slot as nat, val);
      leaderAbs := leaderAbs.(proposed := leaderAbs.proposed[slot as nat := val]);
      Cand.TiedLeader(bal, leaderAbs, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      ghost var log0 := sentLog;
      Broadcast(Accept(bal, slot, val), true);
      RM.AcceptBroadcastRefines(sentLog[|log0|..], me, n, bal, slot, val);
      // The proposal is recorded once its Accepts are out (ProposedTied).
      ghost var props := RS.AbsCommitted(proposed[..], logStart as nat);
      assert Lead.ProposalsSent(Leader, props, me, n, bal, sentLog);
      assert proposed[..] == old(proposed[..]);
      proposed[Idx(slot)] := Some(val);
      assert proposed[..] == old(proposed[..])[slot as nat % WINDOW as nat := Some(val)];
      RS.AbsCommittedUpdate(old(proposed[..]), logStart as nat, slot as nat, val);
      Lead.ProposalsSentAdd(props, me, n, bal, sentLog, slot, val, sentLog, Accept(bal, slot, val));
      assert RS.AbsCommitted(proposed[..], logStart as nat) == props[slot as nat := val];
      assert ProposedTied();
      mv := RR.Move(P.SendAcceptStep(slot as nat, val), RM.AcceptAll(me as nat, n as nat, bal, slot as nat, val), AbsHost());
      assert AbsHost() == h0.(leader := leaderAbs);
      assert P.HostStep(Consts(), me as nat, h0, mv.post, net, mv.sent, mv.step);
    }

    // On a heartbeat tick. A leader beats (Beat), then re-sends the Accepts that have not
    // reached a quorum yet (messages may be lost). Abstractly: Beat's SendNoSafety steps; the
    // re-sent Accepts are packets it sent before (ProposedTied), so their images are in the
    // network already.
    method SendHeartbeats() returns (ghost moves: seq<RR.Move>)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows() && SameConfig()
      ensures RR.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), {}, moves, AbsHost(), sentLog)
      ensures recLog == old(recLog)
    {
      ticks := 0;
      ghost var h0, log0 := AbsHost(), sentLog;
      RR.TrailNil(Consts(), me as nat, h0, log0, {});
      moves := [];
      if role != Leader {
        return;
      }
      moves := Beat(h0, log0, []);
      var s := commitUpto;
      var end := if nextSlot - commitUpto > RETRANSMIT_BATCH then commitUpto + RETRANSMIT_BATCH else nextSlot;
      while s < end
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameConfig() && SameBases()
        invariant Valid() && role == Leader && commitUpto <= s <= end <= nextSlot
        invariant TrailFrom(h0, log0, {}, moves) && recLog == old(recLog)
        decreases end - s
      {
        var p := proposed[Idx(s)];
        if p.Some? && committed[Idx(s)].None? {
          RS.AbsCommittedAt(proposed[..], logStart as nat, s as nat);
          ghost var log1, h1 := sentLog, AbsHost();
          Lead.ProposalsSentHas(RS.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog, s, Accept(bal, s, p.val));
          Broadcast(Accept(bal, s, p.val), false);
          assert AbsHost() == h1;
          forall k | |log1| <= k < |sentLog| ensures sentLog[k] in log1 {
            assert sentLog[|log1|..][k - |log1|] == sentLog[k];
            assert Lead.SentTo(log1, me, sentLog[k].dst, Accept(bal, s, p.val));
          }
          RR.TrailResend(Consts(), me as nat, h0, log0, {}, moves, h1, log1, sentLog);
        }
        s := s + 1;
      }
    }

    // The highest read sequence number that a quorum (this leader included) acknowledged.
    method UpdateReadConfirmed()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows()
      ensures AbsSame() && recLog == old(recLog)
    {
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant i <= n && Valid() && AbsSame() && recLog == old(recLog)
      {
        var c := readAck[i];
        if c > readConfirmed {
          var count: uint64 := 0;
          var j: uint64 := 0;
          while j < n
            invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
            invariant j <= n && count <= j && Valid() && AbsSame() && recLog == old(recLog)
          {
            if readAck[j] >= c {
              count := count + 1;
            }
            j := j + 1;
          }
          if count >= quorum {
            readConfirmed := c;
          }
        }
        i := i + 1;
      }
    }
  }
}
