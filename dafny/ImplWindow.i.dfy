// The Replica (Impl.i.dfy), part 2 of 7: the slot window. Slot s lives at index s % WINDOW of
// preallocated arrays while logStart <= s < logStart + WINDOW; these methods reset the arrays,
// move the window forward (DropBelow, JumpTo) and clear what leaves it, so no step allocates
// per slot.
abstract module ImplWindow refines ImplState {
  class Replica ... {
    // The loops below write array contents only; Valid() reads only this object's fields, so
    // it is kept by framing (no field of `this` is in their modifies clauses).
    method ResetLeaderArrays()
      requires Valid() && role != Candidate
      modifies takeover, proposed, acks, promiseFrom, readAck
      ensures Valid() && PromisedGrows()
      ensures forall j | 0 <= j < n :: !promiseFrom[j]
      ensures forall j | 0 <= j < WINDOW :: takeover[j].NoVote?
      ensures forall j | 0 <= j < WINDOW :: proposed[j].None?
      ensures forall k | 0 <= k < acks.Length :: !acks[k]
    {
      ghost var pf0 := promiseFrom[..];
      ghost var props0 := RS.AbsCommitted(proposed[..], logStart as nat);
      var i: uint64 := 0;
      while i < WINDOW
        invariant i <= WINDOW
        invariant forall j | 0 <= j < i :: takeover[j].NoVote?
        invariant forall j | 0 <= j < i :: proposed[j].None?
      {
        takeover[i] := NoVote;
        proposed[i] := None;
        i := i + 1;
      }
      i := 0;
      while i < WINDOW * n
        invariant i <= WINDOW * n
        invariant forall j | 0 <= j < WINDOW :: takeover[j].NoVote?
        invariant forall j | 0 <= j < WINDOW :: proposed[j].None?
        invariant forall k | 0 <= k < i :: !acks[k]
      {
        acks[i] := false;
        i := i + 1;
      }
      i := 0;
      while i < n
        invariant i <= n
        invariant forall j | 0 <= j < i :: !promiseFrom[j]
        invariant forall j | 0 <= j < WINDOW :: takeover[j].NoVote?
        invariant forall j | 0 <= j < WINDOW :: proposed[j].None?
        invariant forall k | 0 <= k < acks.Length :: !acks[k]
      {
        promiseFrom[i] := false;
        readAck[i] := 0;
        i := i + 1;
      }
      Cand.TiedNonCandidate(role, bal, leaderAbs, n, pf0, promiseCount, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      RS.AbsCommittedEmpty(proposed[..], logStart as nat);
      Lead.ProposalsSentEmpty(role, me, n, bal, sentLog);
      Lead.ProposalsLedSub(role, props0, leaderAbs, map[]);
      Lead.AcksNone(role, bal, acked, acks[..], n, logStart as nat);
    }

    method ResetDurableArrays()
      requires Shape() && CandidateTied() && TakeoverTied() && LeaderTied() && ProposedTied() && AcksTied() && SelfLogged() && OutTied()
      requires BuffersTied() && Emitted()
      requires logStart == commitUpto && out.commits == [] && commitBase == commitUpto
      requires recLog == [] && promised == Zero && logStart == 0
      modifies votes, committed
      ensures Valid() && PromisedGrows()
      ensures RS.AbsVotes(votes[..], logStart as nat) == map[] && RS.AbsCommitted(committed[..], logStart as nat) == map[]
    {
      var i: uint64 := 0;
      while i < WINDOW
        invariant i <= WINDOW
        invariant forall j | 0 <= j < i :: votes[j].NoVote?
        invariant forall j | 0 <= j < i :: committed[j].None?
      {
        votes[i] := NoVote;
        committed[i] := None;
        i := i + 1;
      }
      RS.AbsVotesEmpty(votes[..], logStart as nat);
      RS.AllBelowEmpty(voteHi as nat);
      RS.AbsCommittedEmpty(committed[..], logStart as nat);
      RS.HasAllEmpty(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat);
    }

    // Abstractly: the protocol's truncation at upto (the caller knows [logStart, upto) committed).
    method DropBelow(upto: uint64)
      requires Shape() && VotesBelowHi() && CandidateTied() && TakeoverTied() && LeaderTied() && ProposedTied() && AcksTied()
      requires SelfLogged() && OutTied() && CommitsTied() && BuffersTied() && Emitted() && upto <= commitBase
      requires logStart < upto <= commitUpto && upto <= SLOT_LIMIT
      requires RS.HasAll(RS.AbsCommitted(committed[..], logStart as nat), upto as nat, commitUpto as nat)
      modifies Repr
      ensures Valid0() && PromisedGrows() && logStart == upto && recLog == old(recLog)
      ensures Keeps() && sentLog == old(sentLog) && selfQueue == old(selfQueue) && sofar.trace == old(sofar.trace)
      ensures promised == old(promised) && commitUpto == old(commitUpto)
      ensures var h := old(AbsHost());
              AbsHost() == h.(logStart := upto as nat, votes := P.VotesFrom(h.votes, upto as nat),
                              committed := RS.CommittedFrom(h.committed, upto as nat))
    {
      var s := logStart;
      RS.SameRefl(votes[..], logStart as nat, logStart as nat + WINDOW as nat);
      RS.SameRefl(committed[..], logStart as nat, logStart as nat + WINDOW as nat);
      RS.SameRefl(takeover[..], logStart as nat, logStart as nat + WINDOW as nat);
      RS.SameRefl(proposed[..], logStart as nat, logStart as nat + WINDOW as nat);
      while s < upto
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Shape() && VotesBelowHi() && CandidateTied() && LeaderTied() && Bounds() && logStart <= s <= upto
        invariant RS.Emptied(votes[..], logStart as nat, s as nat)
        invariant RS.EmptiedC(committed[..], logStart as nat, s as nat)
        invariant RS.Emptied(takeover[..], logStart as nat, s as nat)
        invariant RS.EmptiedC(proposed[..], logStart as nat, s as nat)
        invariant RS.Same(proposed[..], old(proposed[..]), s as nat, logStart as nat + WINDOW as nat)
        invariant sentLog == old(sentLog) && acked == old(acked)
        invariant forall k | 0 <= k < acks.Length :: acks[k] ==> old(acks[k])
        invariant forall t: nat, j: uint64 | logStart as nat <= t < s as nat && j < n :: !Lead.AckAt(acks[..], n, t, j)
        invariant RS.Same(votes[..], old(votes[..]), s as nat, logStart as nat + WINDOW as nat)
        invariant RS.Same(committed[..], old(committed[..]), s as nat, logStart as nat + WINDOW as nat)
        invariant RS.Same(takeover[..], old(takeover[..]), s as nat, logStart as nat + WINDOW as nat)
        modifies votes, committed, takeover, proposed, acks
        decreases upto - s
      {
        ghost var before, beforeC, beforeT, beforeP, beforeA := votes[..], committed[..], takeover[..], proposed[..], acks[..];
        ClearSlot(Idx(s), s as nat);
        forall t: nat, j: uint64 | logStart as nat <= t < s as nat + 1 && j < n ensures !Lead.AckAt(acks[..], n, t, j) {
          if t < s as nat {
            assert !Lead.AckAt(beforeA, n, t, j);
            var k := (t % WINDOW as nat) * n as nat + j as nat;
            if k < acks.Length {
              assert acks[k] ==> beforeA[k];
            }
          }
        }
        RS.EmptiedExtend(before, votes[..], logStart as nat, s as nat);
        RS.EmptiedCExtend(beforeC, committed[..], logStart as nat, s as nat);
        RS.EmptiedExtend(beforeT, takeover[..], logStart as nat, s as nat);
        RS.EmptiedCExtend(beforeP, proposed[..], logStart as nat, s as nat);
        RS.SameStep(beforeP, proposed[..], old(proposed[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, None);
        RS.SameStep(before, votes[..], old(votes[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, NoVote);
        RS.SameStep(beforeC, committed[..], old(committed[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, None);
        RS.SameStep(beforeT, takeover[..], old(takeover[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, NoVote);
        s := s + 1;
      }
      // The slots entering the window share their indices with the ones just emptied.
      RS.AbsVotesTruncate(old(votes[..]), votes[..], logStart as nat, upto as nat);
      RS.AbsCommittedTruncate(old(committed[..]), committed[..], logStart as nat, upto as nat);
      RS.AllBelowFrom(old(AbsHost()).votes, upto as nat, voteHi as nat, if voteHi < upto then upto as nat else voteHi as nat);
      RS.HasAllFrom(RS.AbsCommitted(old(committed[..]), logStart as nat), upto as nat, upto as nat, commitUpto as nat);
      RS.AbsVotesTruncate(old(takeover[..]), takeover[..], logStart as nat, upto as nat);
      Cand.TakeoverTruncate(role, leaderAbs, RS.AbsVotes(old(takeover[..]), logStart as nat), logStart as nat, maxLogStart,
                            takeoverHi, takeoverOverflow, upto as nat, if takeoverHi < upto then upto else takeoverHi);
      Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, nextSlot as nat, upto as nat);
      RS.AbsCommittedTruncate(old(proposed[..]), proposed[..], logStart as nat, upto as nat);
      Lead.ProposalsSentMono(role, RS.AbsCommitted(old(proposed[..]), logStart as nat), me, n, bal, sentLog,
                             RS.AbsCommitted(proposed[..], upto as nat), sentLog);
      Lead.ProposalsLedSub(role, RS.AbsCommitted(old(proposed[..]), logStart as nat), leaderAbs, RS.AbsCommitted(proposed[..], upto as nat));
      Lead.AcksTruncate(role, bal, acked, old(acks[..]), acks[..], n, logStart as nat, upto as nat);
      logStart := upto;
      if voteHi < upto {
        voteHi := upto;
      }
      if takeoverHi < upto {
        takeoverHi := upto;
      }
    }

    // Empty one window index (its slot left the window).
    method ClearSlot(idx: uint64, ghost s: nat)
      requires Shape() && VotesBelowHi() && idx < WINDOW && idx as nat == s % WINDOW as nat
      modifies votes, committed, takeover, proposed, acks
      ensures Shape() && VotesBelowHi() && PromisedGrows() && Bounds()
      ensures votes[..] == old(votes[..])[idx := NoVote]
      ensures committed[..] == old(committed[..])[idx := None]
      ensures takeover[..] == old(takeover[..])[idx := NoVote]
      ensures proposed[..] == old(proposed[..])[idx := None]
      ensures forall k | 0 <= k < acks.Length :: acks[k] ==> old(acks[k])
      ensures forall j: uint64 | j < n :: !Lead.AckAt(acks[..], n, s, j)
    {
      votes[idx] := NoVote;
      committed[idx] := None;
      takeover[idx] := NoVote;
      proposed[idx] := None;
      assert votes[..] == old(votes[..])[idx := NoVote];
      assert takeover[..] == old(takeover[..])[idx := NoVote];
      assert proposed[..] == old(proposed[..])[idx := None];
      RS.AbsVotesClear(old(votes[..]), logStart as nat, idx as nat, voteHi as nat);
      var i: uint64 := 0;
      while i < n
        invariant i <= n
        invariant forall k | 0 <= k < acks.Length :: acks[k] ==> old(acks[k])
        invariant forall k: uint64 | k < i :: !Lead.AckAt(acks[..], n, s, k)
        modifies acks
      {
        AckIndexBound(idx, i, n, acks.Length);
        ghost var before := acks[..];
        acks[idx * n + i] := false;
        assert acks[..] == before[idx as int * n as int + i as int := false];
        forall k: uint64 | k < i + 1 ensures !Lead.AckAt(acks[..], n, s, k) {
          if k < i {
            assert !Lead.AckAt(before, n, s, k);
          }
        }
        i := i + 1;
      }
    }

    // Every slot below `upto` is in a snapshot: forget them, and count them as committed.
    method JumpTo(upto: uint64)
      requires Valid() && logStart < upto <= SLOT_LIMIT && out.commits == []
      modifies Repr
      ensures Valid0() && logStart == upto && recLog == old(recLog)
      ensures BalLe(old(promised), promised) && acked <= old(acked) && EmitFromKept()
      ensures sofar.sentBase == old(sofar.sentBase) && sofar.recBase == old(sofar.recBase)
      // the slots below upto are in the snapshot: none is reported
      ensures commitBase == commitUpto == if old(commitUpto) < upto then upto else old(commitUpto)
      ensures Keeps() && sentLog == old(sentLog) && selfQueue == old(selfQueue) && sofar.trace == old(sofar.trace)
      ensures AbsHost() == R.Truncated(old(AbsHost()), upto as nat)
    {
      if upto - logStart >= WINDOW {
        // the whole window is dropped
        R.TruncatedPastWindow(votes[..], committed[..], logStart as nat, upto as nat);
        R.TruncatedPastWindow(takeover[..], committed[..], logStart as nat, upto as nat);
        Cand.TakeoverTruncate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart,
                              takeoverHi, takeoverOverflow, upto as nat, upto);
        Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, upto as nat, upto as nat);
        Lead.ProposalsLedSub(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs, map[]);
        ClearWindow();
        RS.AbsVotesEmpty(takeover[..], upto as nat);
        RS.AbsCommittedEmpty(proposed[..], upto as nat);
        Lead.ProposalsSentEmpty(role, me, n, bal, sentLog);
        Lead.AcksNone(role, bal, acked, acks[..], n, upto as nat);
        RS.AbsVotesEmpty(votes[..], upto as nat);
        RS.AllBelowEmpty(upto as nat);
        RS.AbsCommittedEmpty(committed[..], upto as nat);
        RS.HasAllEmpty(map[], upto as nat);
        logStart := upto;
        commitUpto := upto;
        commitBase := upto;
        nextSlot := upto;
        voteHi := upto;
        takeoverHi := upto;
      } else {
        RS.HasAllSub(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat,
                     upto as nat, if commitUpto < upto then upto as nat else commitUpto as nat);
        if nextSlot < upto {
          Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, upto as nat, logStart as nat);
          nextSlot := upto;
        }
        if commitUpto < upto { commitUpto := upto; }
        commitBase := commitUpto;
        DropBelow(upto);
      }
    }

    // The commits of the slots [base, commitUpto), in order, each with the value committed
    // there (all of them are: CommittedPrefix). Gathered in an array and copied out once:
    // appending to a sequence copies it (the C++ runtime's sequences are flat), which would
    // make a step that commits k slots at once cost k^2.
    method CommitsFrom(base: uint64) returns (cs: seq<Committed>)
      requires Valid() && logStart <= base <= commitUpto
      ensures cs == OT.CommitsOf(RS.AbsCommitted(committed[..], logStart as nat), base, commitUpto)
    {
      ghost var C := RS.AbsCommitted(committed[..], logStart as nat);
      OT.CommitsNil(C, base, base);
      if base == commitUpto {
        return [];
      }
      var buf := new Committed[commitUpto - base];
      var s := base;
      while s < commitUpto
        invariant base <= s <= commitUpto && buf[..s - base] == OT.CommitsOf(C, base, s)
        decreases commitUpto - s
      {
        RS.AbsCommittedAt(committed[..], logStart as nat, s as nat);
        assert s as nat in C by { reveal RS.HasAll(); }
        buf[s - base] := Committed(s, committed[Idx(s)].val);
        OT.CommitsSnoc(C, base, s);
        assert buf[..s - base + 1] == buf[..s - base] + [Committed(s, C[s as nat])];
        s := s + 1;
      }
      cs := buf[..];
      assert buf[..] == buf[..s - base];
    }

    method ClearWindow()
      requires Shape() && VotesBelowHi()
      modifies votes, committed, takeover, proposed, acks
      ensures Shape() && VotesBelowHi() && PromisedGrows() && Bounds()
      ensures forall j | 0 <= j < WINDOW :: votes[j].NoVote?
      ensures forall j | 0 <= j < WINDOW :: committed[j].None?
      ensures forall j | 0 <= j < WINDOW :: takeover[j].NoVote?
      ensures forall j | 0 <= j < WINDOW :: proposed[j].None?
      ensures forall k | 0 <= k < acks.Length :: !acks[k]
    {
      var i: uint64 := 0;
      while i < WINDOW * n
        invariant i <= WINDOW * n
        invariant forall k | 0 <= k < i :: !acks[k]
      {
        acks[i] := false;
        i := i + 1;
      }
      i := 0;
      while i < WINDOW
        invariant i <= WINDOW
        invariant forall j | 0 <= j < i :: votes[j].NoVote?
        invariant forall j | 0 <= j < i :: committed[j].None?
        invariant forall j | 0 <= j < i :: takeover[j].NoVote?
        invariant forall j | 0 <= j < i :: proposed[j].None?
        invariant forall k | 0 <= k < acks.Length :: !acks[k]
      {
        votes[i] := NoVote;
        committed[i] := None;
        takeover[i] := NoVote;
        proposed[i] := None;
        i := i + 1;
      }
      RS.AbsVotesEmpty(votes[..], logStart as nat);
      RS.AllBelowEmpty(voteHi as nat);
    }
  }
}
