// The Replica (Impl.i.dfy), part 7 of 7: a replica's start and restart, and snapshots. The
// constructor; replaying durable records at recovery, then FinishRecovery; truncating below a
// snapshot (Truncate), installing one (InstallSnapshot) and the records that rebuild the durable
// state from it (CheckpointRecords); and the lemmas that a restart, from the start or from a
// checkpoint, is the protocol's Crash (from a checkpoint of a copy of the core truncated first:
// its Truncate, then Crash).
abstract module ImplRecovery refines ImplSteps {
  import Ck = ImplCheckpoint  // of TruncatedCheckpointRestartIsCrash
  class Replica ... {
    constructor (me: uint64, n: uint64, electionTicks: uint64, heartbeatTicks: uint64)
      requires 1 <= n <= MAX_MEMBERS && me < n
      requires 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      ensures Valid() && fresh(Repr - {this})
      ensures P.HostInit(AbsHost()) && Consts() == P.Constants(n as nat) && sentLog == [] && recLog == []  // the protocol's Init
      ensures this.me == me && this.n == n && acked == {}  // member me of n, no Accepted message counted
      ensures CandidateTied()
    {
      this.me := me;
      this.n := n;
      this.quorum := QuorumFacts.QuorumSize64(n);
      this.electionTicks := electionTicks;
      this.heartbeatTicks := heartbeatTicks;
      var stagger := electionTicks / n;
      StaggerBound(me, n, stagger, electionTicks);
      this.electionTimeout := electionTicks + me * stagger;
      var votes := new Vote[WINDOW];
      var committed := new OptValue[WINDOW];
      var takeover := new Vote[WINDOW];
      var proposed := new OptValue[WINDOW];
      var acks := new bool[WINDOW * n];
      var promiseFrom := new bool[n];
      var readAck := new uint64[n];
      this.votes := votes;
      this.committed := committed;
      this.takeover := takeover;
      this.proposed := proposed;
      this.acks := acks;
      this.promiseFrom := promiseFrom;
      this.readAck := readAck;
      promised := Zero;
      logStart := 0;
      commitUpto := 0;
      role := Follower;
      bal := Zero;
      maxSeen := Zero;
      leaderHint := n;
      ticks := 0;
      catchUpCooldown := 0;
      voteHi := 0;
      promiseCount := 0;
      maxLogStart := 0;
      maxLogStartFrom := me;
      takeoverHi := 0;
      takeoverOverflow := false;
      overflowFrom := me;
      nextSlot := 0;
      readSeq := 0;
      readConfirmed := 0;
      out := NoOutput;
      selfQueue := [];
      buffers := OT.NoBuffers;
      leaderAbs := P.NotLeader;
      sentLog := [];
      acked := {};
      recLog := [];
      emitFrom := 0;
      sofar := O.Step([], [], []);
      commitBase := 0;
      Repr := {this, votes, committed, promiseFrom, takeover, proposed, acks, readAck};
      new;
      OT.TiedNone([], [], me);
      OT.BuffersTiedMake(out, selfQueue, buffers);
      Rep.InWindowFromEnd([]);
      Cand.TiedFollower(bal, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.ProposalsSentFollower(RS.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Lead.AcksFollower(bal, acked, acks[..], n, logStart as nat);
      ResetDurableArrays();
      ResetLeaderArrays();
    }

    // Forget slots below `upto` (the shim has them in a snapshot). Only committed slots.
    // Refines the protocol's Truncate(upto) when it truncates; otherwise no step.
    method Truncate(upto: uint64) returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked) && EmitFromKept()
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures SameConfig() && sentLog == old(sentLog)
      ensures var ok := old(logStart) < upto <= old(commitUpto) && upto <= SLOT_LIMIT;
              RR.Run(Consts(), me as nat, old(AbsHost()), {}, R.TruncateMoves(old(AbsHost()), upto as nat, ok), AbsHost())
      // its one record, when it truncates: so a crash part-way through it is at one of two cuts
      // (ImplCluster.TruncateThenCrash)
      ensures Cr.AtMostOne(r.records)
    {
      RR.RunNil(Consts(), me as nat, AbsHost(), {});
      BeginStep();
      ghost var ok := logStart < upto && upto <= commitUpto && upto <= SLOT_LIMIT;
      if logStart < upto && upto <= commitUpto && upto <= SLOT_LIMIT {
        R.TruncateRefines(Consts(), me as nat, AbsHost(), upto as nat, commitUpto as nat);
        RS.HasAllSub(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat,
                     upto as nat, commitUpto as nat);
        DropBelow(upto);
        Persist(RecTruncate(upto));
      }
      EmittedOnly(if ok then [RecTruncate(upto)] else []);
      ghost var moves: seq<RR.Move>;
      r, moves, t := EndStep(false, P.State([], {}), AbsHost(), sentLog, []);
      reveal Cr.AtMostOne();
    }

    // At the end of a step that delivered nothing to itself and emitted only recs since
    // BeginStep (its records so far, Tied to its record log): the step's Ready will carry
    // exactly recs (EndStep returns the trace so far).
    lemma EmittedOnly(recs: seq<Record>)
      requires Valid() && selfQueue == [] && recLog == sofar.recBase + recs
      ensures O.Records(sofar.trace) == recs
    {
      assert OutTied();
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      assert recs == recLog[|sofar.recBase|..] == O.Records(sofar.trace);
    }

    // A restart is the protocol's Crash: a fresh core (the initial host: constructor) that
    // replays (Replay, then FinishRecovery) the records this host emitted, in order, with any
    // commit records among them lost, ends at R.ApplyAll(InitHost(), recs) (Replays() on the
    // fresh core), which is Crash from this host's state: the volatile leader state goes, the
    // durable state stays, committed entries may be missing.
    lemma RestartIsCrash(recs: seq<Record>)
      requires Valid() && R.LosesCommits(recLog, recs)
      ensures P.Crash(Consts(), me as nat, AbsHost(), R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat), {})
    {
      R.LosingCommits(Rep.InitHost(), recLog, recs, WINDOW as nat, SLOT_LIMIT as nat);
      Rep.ApplyAllKeepsNotLeader(recs);
    }

    // A restart from a checkpoint is the protocol's Crash too. The log holds cp, the records
    // CheckpointRecords returned when this host's record log was pre (so they rebuild what pre
    // does: CheckpointRecords' postcondition and Replays() then), followed by the records emitted
    // since, of which a tail of commit records may be lost: the log is cp + later', where
    // pre + later' is the record log less that tail.
    lemma CheckpointRestartIsCrash(cp: seq<Record>, pre: seq<Record>, later': seq<Record>)
      requires Valid() && R.LosesCommits(recLog, pre + later')
      requires R.ApplyAll(Rep.InitHost(), cp, WINDOW as nat, SLOT_LIMIT as nat) == R.ApplyAll(Rep.InitHost(), pre, WINDOW as nat, SLOT_LIMIT as nat)
      ensures P.Crash(Consts(), me as nat, AbsHost(), R.ApplyAll(Rep.InitHost(), cp + later', WINDOW as nat, SLOT_LIMIT as nat), {})
    {
      Rep.ApplyAllAppend(Rep.InitHost(), cp, later');
      Rep.ApplyAllAppend(Rep.InitHost(), pre, later');
      RestartIsCrash(pre + later');
    }

    // A restart from a checkpoint taken after a truncation at t is the protocol's Truncate(t)
    // then Crash. The checkpoint cp rebuilds the durable state this host had when its record
    // log was pre, truncated at t (CheckpointRecords on a copy of the core that first called
    // Truncate(t), with every slot in [logStart, t) then committed: t <= commitUpto), taken
    // after recovery: pre holds every replayed record (emitFrom <= |pre|). The log since holds
    // the records emitted after pre, each of a slot not beyond the window the host then had
    // (Ck.NotBeyondAll, from Emitted(): Persist emits a vote, commit or learn record only for
    // a slot of the window), of which a tail of commit records may be lost: the log is
    // cp + later', where pre + later' is the record log less that tail. The
    // host's Truncate(t) is enabled now (its log start is t or later already, when later' holds
    // a truncation record of t or later: then no step), and the restart is its Crash.
    lemma TruncatedCheckpointRestartIsCrash(cp: seq<Record>, pre: seq<Record>, later': seq<Record>, t: nat)
      requires Valid() && R.LosesCommits(recLog, pre + later')
      requires var x := R.ApplyAll(Rep.InitHost(), pre, WINDOW as nat, SLOT_LIMIT as nat);
               && (forall s | x.logStart <= s < t :: s in x.committed)
               && R.ApplyAll(Rep.InitHost(), cp, WINDOW as nat, SLOT_LIMIT as nat) == Ck.TruncatedTo(x, t)
      requires emitFrom <= |pre|
      ensures var h, h1 := AbsHost(), Ck.TruncatedTo(AbsHost(), t);
              && RR.Run(Consts(), me as nat, h, {}, R.TruncateMoves(h, t, h.logStart < t), h1)
              && P.Crash(Consts(), me as nat, h1, R.ApplyAll(Rep.InitHost(), cp + later', WINDOW as nat, SLOT_LIMIT as nat), {})
    {
      var W, L := WINDOW as nat, SLOT_LIMIT as nat;
      var h := AbsHost();
      var x := R.ApplyAll(Rep.InitHost(), pre, W, L);
      var z := R.ApplyAll(Rep.InitHost(), pre + later', W, L);
      // the restart is the host the records pre + later' rebuild, truncated at t: the records
      // emitted after pre are not beyond the window the host then had
      Rep.ApplyAllAppend(Rep.InitHost(), cp, later');
      Rep.ApplyAllAppend(Rep.InitHost(), pre, later');
      assert R.ApplyAll(Rep.InitHost(), cp + later', W, L) == Ck.TruncatedTo(z, t) by {
        EmittedAfter(pre, later');
        Ck.ApplyAllTruncatedTo(x, later', W, L, t);
      }
      Rep.ApplyAllKeepsNotLeader(cp + later');
      // which is Crash from the durable state but for committed entries
      R.LosingCommits(Rep.InitHost(), recLog, pre + later', W, L);
      assert R.CrashedFrom(h, z);
      // every slot in [h.logStart, t) is committed: it was in x, and replaying the rest of the
      // log keeps the committed slots at or above the log start it ends with
      var rest := recLog[|pre|..];
      assert recLog == pre + rest by {
        assert recLog[..|pre|] == recLog[..|pre + later'|][..|pre|] == (pre + later')[..|pre|] == pre;
        assert recLog == recLog[..|pre|] + rest;
      }
      Rep.ApplyAllAppend(Rep.InitHost(), pre, rest);
      Ck.ApplyAllKeepsCommitted(x, rest, W, L);
      assert forall s | h.logStart <= s < t :: s in h.committed;
      if h.logStart < t {
        reveal RS.HasAll();
        R.TruncateRefines(Consts(), me as nat, h, t, t);
      } else {
        RR.RunNil(Consts(), me as nat, h, {});
      }
    }

    // The records emitted after pre, a prefix of the record log that holds every replayed
    // record, are each of a slot not beyond the window the host had when it emitted it
    // (Emitted()), up to any later point of the log.
    lemma EmittedAfter(pre: seq<Record>, later': seq<Record>)
      requires Valid() && R.LosesCommits(recLog, pre + later') && emitFrom <= |pre|
      ensures Ck.NotBeyondAll(R.ApplyAll(Rep.InitHost(), pre, WINDOW as nat, SLOT_LIMIT as nat), later', WINDOW as nat, SLOT_LIMIT as nat)
    {
      Ck.InWindowAfter(recLog, emitFrom, pre, later');
    }

    // At the checkpoint (pre the record log then): when t <= commitUpto, every slot in
    // [logStart, t) of the host pre rebuilds is committed, the premise above; Truncate(t) on the
    // copy (t <= SLOT_LIMIT too) ends at the host truncated at t (Ck.TruncateRunEnds), whose
    // durable state CheckpointRecords then rebuilds.
    lemma CommittedBelow(t: nat)
      requires Valid() && t <= commitUpto as nat
      ensures var x := R.ApplyAll(Rep.InitHost(), recLog, WINDOW as nat, SLOT_LIMIT as nat);
              forall s | x.logStart <= s < t :: s in x.committed
    {
      RS.HasAllCovers(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat);
    }

    // The same at the system's level: in a system state where this host is AbsHost(), the
    // restart from such a checkpoint is one step of the system (Sy.ImplCrashStep: the run of
    // Truncate(t)'s moves, no packet sent, then Crash), to the state with this host restarted.
    lemma TruncatedCheckpointRestartIsCrashStep(s: Sy.Sys, cp: seq<Record>, pre: seq<Record>, later': seq<Record>, t: nat)
      returns (s': Sy.Sys)
      requires Valid() && R.LosesCommits(recLog, pre + later')
      requires var x := R.ApplyAll(Rep.InitHost(), pre, WINDOW as nat, SLOT_LIMIT as nat);
               && (forall s | x.logStart <= s < t :: s in x.committed)
               && R.ApplyAll(Rep.InitHost(), cp, WINDOW as nat, SLOT_LIMIT as nat) == Ck.TruncatedTo(x, t)
      requires emitFrom <= |pre|
      requires P.WF(Consts(), s.abs) && me as nat < |s.abs.hosts| && s.abs.hosts[me] == AbsHost()
      ensures var h := AbsHost();
              Sy.ImplCrashStep(Consts(), s, s', me as nat, s.abs.net, R.TruncateMoves(h, t, h.logStart < t),
                               Ck.TruncatedTo(h, t), [], R.ApplyAll(Rep.InitHost(), cp + later', WINDOW as nat, SLOT_LIMIT as nat))
      ensures Sy.ImplNext(Consts(), s, s')
      ensures s' == Sy.Restarted(s, me as nat, R.ApplyAll(Rep.InitHost(), cp + later', WINDOW as nat, SLOT_LIMIT as nat))
    {
      var c, i, h := Consts(), me as nat, AbsHost();
      var h1 := Ck.TruncatedTo(h, t);
      var d := R.ApplyAll(Rep.InitHost(), cp + later', WINDOW as nat, SLOT_LIMIT as nat);
      var moves := R.TruncateMoves(h, t, h.logStart < t);
      TruncatedCheckpointRestartIsCrash(cp, pre, later', t);
      RR.RunGOf(c, i, h, {}, s.abs.net, moves, h1);
      assert RR.SentBy(moves) == {} by {
        if moves != [] {
          assert moves[1..] == [];
        }
      }
      var pkts: seq<Packet> := [];
      var mid := Sy.After(s, i, h1, moves, pkts);
      assert (set k | 0 <= k < |pkts| :: pkts[k]) == {};
      assert Sy.ImplStep(c, s, mid, i, s.abs.net, moves, h1, pkts);
      s' := Sy.Restarted(mid, i, d);
      assert Sy.ImplCrashStep(c, s, s', i, s.abs.net, moves, h1, pkts, d);
      assert s.abs.hosts[i := h1][i := d] == s.abs.hosts[i := d];
    }

    // Recovery: replay one durable record, in the order the records were made.
    // Abstractly: R.ApplyRecord. Each kind of record is its own proof (ReplayPromised, ...):
    // one proof of all four was cheap or out of resource depending on the order in which the
    // verifier happened to declare things.
    method Replay(rec: Record)
      requires Valid()
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog) && acked <= old(acked)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      BeginStep();
      match rec {
        case RecPromised(_) => ReplayPromised(rec);
        case RecVote(_, _, _) => ReplayVote(rec);
        case RecCommit(_, _) => ReplayCommit(rec);
        case RecTruncate(_) => ReplayTruncate(rec);
        case RecLearn(_, _) => ReplayLearn(rec);
      }
    }

    // The replayed record r joins the log, which then rebuilds the state r made (Persist's
    // proof, for a record that is not emitted again). The records emitted from now on follow it
    // (emitFrom): nothing is known of the slot of r, a record of whatever log the restart read.
    ghost method Replayed(r: Record)
      requires Valid0() && sofar.trace == []
      requires R.ApplyRecord(R.ApplyAll(Rep.InitHost(), recLog, WINDOW as nat, SLOT_LIMIT as nat), r, WINDOW as nat, SLOT_LIMIT as nat) == Durable()
      modifies this
      ensures Valid() && recLog == old(recLog) + [r]
      ensures Unchanged() && sentLog == old(sentLog) && selfQueue == old(selfQueue) && AbsHost() == old(AbsHost())
    {
      R.ApplyAllSnoc(Rep.InitHost(), recLog, r, WINDOW as nat, SLOT_LIMIT as nat);
      OT.TiedNothing(sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      OT.TiedNone(sentLog, recLog + [r], me);
      recLog := recLog + [r];
      emitFrom := |recLog|;
      Rep.InWindowFromEnd(recLog);
      sofar := sofar.(recBase := recLog);
    }

    method ReplayPromised(rec: Record)
      requires Valid() && rec.RecPromised? && sofar.trace == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog) && acked == old(acked)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      promised := rec.bal;
      maxSeen := BalMax(maxSeen, rec.bal);
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    method ReplayVote(rec: Record)
      requires Valid() && rec.RecVote? && sofar.trace == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog) && acked == old(acked)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      var slot := rec.slot;
      if InWindow(slot) {
        votes[Idx(slot)] := Vote(rec.bal, rec.val);
        if slot + 1 > voteHi {
          voteHi := slot + 1;
        }
        RS.AbsVotesUpdate(old(votes[..]), logStart as nat, slot as nat, rec.bal, rec.val);
        RS.AllBelowUpdate(RS.AbsVotes(old(votes[..]), logStart as nat), slot as nat, S.Vote(rec.bal, rec.val), old(voteHi) as nat, voteHi as nat);
      }
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    method ReplayCommit(rec: Record)
      requires Valid() && rec.RecCommit? && sofar.trace == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog) && acked == old(acked)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      var slot := rec.slot;
      if InWindow(slot) {
        RS.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
      }
      if InWindow(slot) && committed[Idx(slot)].None? {
        committed[Idx(slot)] := Some(rec.val);
        RS.AbsCommittedUpdate(old(committed[..]), logStart as nat, slot as nat, rec.val);
        RS.HasAllAdd(RS.AbsCommitted(old(committed[..]), logStart as nat), logStart as nat, commitUpto as nat, slot as nat, rec.val);
      }
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    method ReplayLearn(rec: Record)
      requires Valid() && rec.RecLearn? && sofar.trace == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog) && acked == old(acked)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      var slot := rec.slot;
      if InWindow(slot) {
        RS.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
        RS.AbsVotesAt(votes[..], logStart as nat, slot as nat);
      }
      if InWindow(slot) && committed[Idx(slot)].None? && votes[Idx(slot)].Vote? && votes[Idx(slot)].bal == rec.bal {
        var val := votes[Idx(slot)].val;
        committed[Idx(slot)] := Some(val);
        RS.AbsCommittedUpdate(old(committed[..]), logStart as nat, slot as nat, val);
        RS.HasAllAdd(RS.AbsCommitted(old(committed[..]), logStart as nat), logStart as nat, commitUpto as nat, slot as nat, val);
      }
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    method ReplayTruncate(rec: Record)
      requires Valid() && rec.RecTruncate? && sofar.trace == [] && out.commits == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog) && acked == old(acked)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      if logStart < rec.logStart && rec.logStart <= SLOT_LIMIT {
        JumpTo(rec.logStart);
      }
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    // A snapshot of the state after slots below `upto` arrived from a peer (this host lagged
    // behind the peers' truncation point): jump to it. Slots above it that this host already
    // committed are reported as commits, in order. Refines the protocol's InstallSnapshot
    // when it jumps, else takes no step (R.SnapshotMoves).
    method InstallSnapshot(upto: uint64) returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked) && EmitFromKept()
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      // the slots newly committed above the snapshot (upto, when it jumps), each once, in order
      ensures CommitsAre(r, if old(commitUpto) < upto <= SLOT_LIMIT then upto else old(commitUpto))
      ensures SameConfig() && sentLog == old(sentLog)
      ensures var ok := old(commitUpto) < upto <= SLOT_LIMIT;
              RR.Run(Consts(), me as nat, old(AbsHost()), {}, R.SnapshotMoves(old(AbsHost()), upto as nat, ok), AbsHost())
      // its one record, when it jumps (ImplCluster.InstallSnapshotThenCrash)
      ensures Cr.AtMostOne(r.records)
    {
      RR.RunNil(Consts(), me as nat, AbsHost(), {});
      BeginStep();
      ghost var ok := commitUpto < upto <= SLOT_LIMIT;
      if commitUpto < upto && upto <= SLOT_LIMIT {
        R.SnapshotRefines(Consts(), me as nat, AbsHost(), upto as nat);
        JumpTo(upto);
        Persist(RecTruncate(upto));
        AdvanceCommit();
      }
      EmittedOnly(if ok then [RecTruncate(upto)] else []);
      ghost var moves: seq<RR.Move>;
      r, moves, t := EndStep(false, P.State([], {}), AbsHost(), sentLog, []);
      reveal Cr.AtMostOne();
    }

    // After the last replayed record: report every committed slot from logStart on.
    // No protocol step: it only reports committed slots.
    method FinishRecovery() returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, logStart)  // every committed slot from logStart on, each once, in order
      ensures SameConfig() && sentLog == old(sentLog) && AbsHost() == old(AbsHost())
      // it emits no record: a crash part-way through a recovery finds the records it started from
      ensures r.records == [] && recLog == old(recLog)
    {
      BeginStep();
      assert AbsHost() == old(AbsHost());
      commitBase := logStart;  // the step's commits start at the window's first slot
      AdvanceCommit();
      assert AbsHost() == old(AbsHost()) && selfQueue == [];
      assert recLog == sofar.recBase + [];
      EmittedOnly([]);
      ghost var moves: seq<RR.Move>;
      r, moves, t := EndStep(false, P.State([], {}), AbsHost(), sentLog, []);
    }

    // The whole durable state as records, for a fresh log after a snapshot: replaying them from
    // the initial host rebuilds the durable state, as replaying the whole log does (Replays), so
    // a restart from them is the protocol's Crash too (CheckpointRestartIsCrash).
    method CheckpointRecords() returns (recs: seq<Record>)
      requires Valid()
      ensures R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat) == Durable()
    {
      ghost var V, C := RS.AbsVotes(votes[..], logStart as nat), RS.AbsCommitted(committed[..], logStart as nat);
      // The records are gathered in an array, then copied out once: appending to a sequence
      // copies it (the C++ runtime's sequences are flat), which made this quadratic in the
      // records (5,427 records took 369 ms).
      var buf := new Record[2 * WINDOW + 2];
      buf[0 as uint64], buf[1 as uint64] := RecTruncate(logStart), RecPromised(promised);
      var k: uint64 := 2;
      ghost var g := [RecTruncate(logStart), RecPromised(promised)];
      RS.AbsVotesKeys(votes[..], logStart as nat);
      RS.AbsCommittedKeys(committed[..], logStart as nat);
      Rep.CheckpointStart(logStart, promised, V, C);
      var s := logStart;
      while s < logStart + WINDOW
        invariant Valid() && logStart <= s <= logStart + WINDOW
        invariant fresh(buf) && buf.Length == 2 * WINDOW as int + 2
        invariant k as nat <= 2 + 2 * (s - logStart) as nat && buf[..k] == g
        invariant R.ApplyAll(Rep.InitHost(), g, WINDOW as nat, SLOT_LIMIT as nat)
                  == P.Host(promised, Rep.Below(V, s as nat), logStart as nat, Rep.Below(C, s as nat), P.NotLeader)
        decreases logStart + WINDOW - s
      {
        var v := votes[Idx(s)];
        RS.AbsVotesAt(votes[..], logStart as nat, s as nat);
        if v.Vote? {
          R.ApplyAllSnoc(Rep.InitHost(), g, RecVote(s, v.bal, v.val), WINDOW as nat, SLOT_LIMIT as nat);
          buf[k] := RecVote(s, v.bal, v.val);
          assert buf[..k + 1] == buf[..k] + [RecVote(s, v.bal, v.val)];
          g := g + [RecVote(s, v.bal, v.val)];
          k := k + 1;
        }
        Rep.BelowNext(V, s as nat);
        var c := committed[Idx(s)];
        RS.AbsCommittedAt(committed[..], logStart as nat, s as nat);
        if c.Some? {
          var rec := Rep.CommitRecord(s, v, c.val);  // a value voted for here is not written again
          Rep.CheckpointCommit(promised, V, logStart, C, s, v, c.val);
          R.ApplyAllSnoc(Rep.InitHost(), g, rec, WINDOW as nat, SLOT_LIMIT as nat);
          buf[k] := rec;
          assert buf[..k + 1] == buf[..k] + [rec];
          g := g + [rec];
          k := k + 1;
        }
        Rep.BelowNext(C, s as nat);
        s := s + 1;
      }
      recs := buf[..k];
      Rep.BelowAll(V, s as nat);
      Rep.BelowAll(C, s as nat);
    }
  }
}
