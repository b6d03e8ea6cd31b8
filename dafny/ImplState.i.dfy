// The Replica (Impl.i.dfy), part 1 of 7: its state. The fields, durable and volatile; Valid(),
// the invariant every method keeps, with the ties of the concrete state to the protocol's ghost
// state (OutTied, CommitsTied, the leader's CandidateTied, TakeoverTied, AcksTied, ProposedTied,
// LeaderTied); the output primitives every step goes through (Send, Broadcast, Persist); and the
// abstraction of a Replica to the protocol's host (Consts, AbsHost) with the two-state
// predicates the methods' contracts are written with.
abstract module ImplState {
  import opened Native
  import opened Ballots
  import opened BallotFacts
  import opened ImplTypes
  import Quorums
  import QuorumFacts
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import RS = ImplAbsState
  import RM = ImplAbsMessages
  import RR = ImplAbsRuns
  import PI = ProtocolInvariant
  import Sy = ImplSystem
  import O = StepOutput
  import opened ImplBounds        // WINDOW and the other bounds
  import opened Stacks            // the output buffers
  import OT = ImplOutTied         // the lemmas of OutTied
  import Cand = ImplCandidate     // of CandidateTied and TakeoverTied
  import Lead = ImplLeader        // of AcksTied, ProposedTied and LeaderTied
  import Rep = ImplReplay         // of Replays
  import Cr = ImplCrash           // a crash part-way through a step
  import Rd = ImplReadies         // what the Readies' commits are (ReadyCommitted)

  const NoOutput: Ready := Ready([], [], [], false, [], false, [], 0)  // a step's output before it does anything

  class Replica {
    // Every field is a `var`: Dafny 4.11's C++ backend initialises a `const` field without an
    // initialiser from itself (undefined behaviour that crashes for arrays). Valid() pins
    // the arrays to Repr, so no method can swap them.
    var me: uint64
    var n: uint64
    var quorum: uint64
    var electionTicks: uint64
    var heartbeatTicks: uint64
    var electionTimeout: uint64     // staggered by node id, so elections rarely collide

    // Durable state (every change is emitted as a Record before anything depends on it).
    var promised: Ballot
    var logStart: uint64
    var votes: array<Vote>          // slot s at index s % WINDOW
    var committed: array<OptValue>  // slot s at index s % WINDOW
    var commitUpto: uint64            // all slots in [logStart, commitUpto) are committed

    // Volatile state (lost on a crash).
    var role: Role
    var bal: Ballot
    var maxSeen: Ballot
    var leaderHint: uint64
    var ticks: uint64
    var catchUpCooldown: uint64
    var voteHi: uint64                // one past the highest slot holding a vote
    var promiseFrom: array<bool>    // candidate: members that promised bal
    var promiseCount: uint64
    var maxLogStart: uint64
    var maxLogStartFrom: uint64
    var takeoverHi: uint64
    var takeoverOverflow: bool
    var overflowFrom: uint64        // candidate: a member that reported a vote beyond the window
    var takeover: array<Vote>       // candidate: the highest vote reported per slot
    var proposed: array<OptValue>   // leader: the value sent in Accept(bal, slot)
    var acks: array<bool>           // leader: (slot % WINDOW) * n + member acked
    var nextSlot: uint64
    var readSeq: uint64
    var readConfirmed: uint64
    var readAck: array<uint64>      // leader: highest read sequence each member acknowledged

    // The current step's output, and messages this host sent to itself, kept in Bufs so
    // that each packet and record costs constant time (BuffersTied ties them to the ghost
    // `out` and `selfQueue`, which the proofs read).
    var buffers: OT.Buffers
    ghost var out: Ready            // the step's Ready so far (its `accepted` and commits are set at the end)
    ghost var selfQueue: seq<Msg>

    // Ghost state for the refinement proof (ImplAbsState.i.dfy to ImplAbstraction.i.dfy).
    // The protocol's volatile leader state. StartElection (Leading(bal, 1, {}, {})), StepDown
    // (NotLeader), OnPromise (R.Collected: the promise added) and ProposeAt (the proposal
    // added) write it; CandidateTied, TakeoverTied and LeaderTied tie it to the concrete state.
    ghost var leaderAbs: P.LeaderState
    ghost var sentLog: seq<Packet>      // every packet this host sent, to itself included, in order
    ghost var acked: set<S.Message>     // the Accepted messages (images) counted for bal (AcksTied)
    ghost var recLog: seq<Record>       // every durable record this host emitted or replayed, in order
    ghost var emitFrom: nat             // recLog's records from here on were emitted, those before it replayed
    // The current step so far (OutTied): what it sent and emitted, in order, after the packet
    // log sentBase and the record log recBase that the step began with.
    ghost var sofar: O.Step
    var commitBase: uint64            // the step's commits are the slots from here on (CommitsTied)

    ghost const Repr: set<object>

    ghost predicate Valid()
      reads this, votes, committed, promiseFrom, takeover, proposed, acks
    {
      Valid0() && Replays()
    }

    // Replaying every record this host emitted, in order, from the initial host rebuilds its
    // durable state (what a restart keeps: the protocol's Crash, see Replay).
    ghost predicate Replays()
      reads this, votes, committed
    {
      R.ApplyAll(Rep.InitHost(), recLog, WINDOW as nat, SLOT_LIMIT as nat) == Durable()
    }

    // The abstract host without its volatile leader state.
    ghost function Durable(): P.Host
      reads this, votes, committed
    {
      AbsHost().(leader := P.NotLeader)
    }

    // Valid() but for Replays(): what holds between a durable change and its record.
    ghost predicate Valid0()
      reads this, votes, committed, promiseFrom, takeover, proposed, acks
    {
      && Shape()
      && VotesBelowHi()
      && CommittedPrefix()
      && CandidateTied()
      && TakeoverTied()
      && LeaderTied()
      && ProposedTied()
      && AcksTied()
      && SelfLogged()
      && OutTied()
      && CommitsTied()
      && BuffersTied()
      && Emitted()
    }

    // Each record this host emitted (recLog from emitFrom on) is of a slot not beyond the window
    // of the host the records before it rebuild: Persist emits a vote, commit or learn record
    // only for a slot of the window. (Nothing is known of the records replayed at recovery: they
    // are whatever log the restart read.)
    // Opaque (Rep.InWindowFrom) of these fields only, as OutTied.
    ghost predicate Emitted()
      reads this
    {
      Rep.InWindowFrom(recLog, emitFrom)
    }

    // The output buffers are the step so far (its trace): the records it emitted, and the
    // packets it sent to other members, early before its first record that needs a sync and
    // late after it; the packet and record logs are the step's bases followed by the trace's.
    // An opaque function of these fields only, so a method that writes none of them keeps it
    // without a look inside; Send, Persist and the step's start and end use its lemmas (ImplOutTied).
    ghost predicate OutTied()
      reads this
    {
      OT.OutTiedOf(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter)
    }

    // The step's commits are the slots [commitBase, commitUpto): commitBase is in the
    // window, so those slots are still in the arrays when the step ends, and TakeReady reads
    // them from there, once (CommitsFrom). Nothing collects commits during the step: a step
    // that commits k slots at once stays linear in k.
    ghost predicate CommitsTied()
      reads this
    {
      logStart <= commitBase <= commitUpto && out.commits == []
    }

    // The concrete output buffers hold the ghost `out` and `selfQueue`. An opaque predicate of
    // these fields only (ImplOutTied), as OutTied.
    ghost predicate BuffersTied()
      reads this
    {
      OT.BuffersTiedOf(out, selfQueue, buffers)
    }

    // The step under way is the same step: its bases are unchanged, and once it emitted a
    // record that needs a sync, its early packets are fixed (Send puts every later packet to
    // another member among the late ones).
    twostate predicate SameBases()
      reads this
    {
      && sofar.sentBase == old(sofar.sentBase) && sofar.recBase == old(sofar.recBase) && commitBase == old(commitBase)
      && (old(out.sync) ==> out.sync && out.early == old(out.early))
      && EmitFromKept()
    }

    // The records emitted since are commit records only: none needs a sync.
    twostate predicate QuietSince()
      reads this
    {
      old(recLog) <= recLog && forall j | |old(recLog)| <= j < |recLog| :: !NeedsSync(recLog[j])
    }

    // The Ready r is exactly the step that began with the packet log log0 and the record log
    // recs0 and did t: the logs grew by t's packets and records; r's records are t's, in order,
    // and its early and late packets are those t sent to other members before and after its
    // first record that needs a sync (StepOutput), in order.
    // The record that handling m, a message this host sent itself, emits before anything else,
    // when its promise was pr0 and its window started at ls0: an Accept at its promised ballot
    // in its window, the vote (its own proposal: Propose, a takeover); a Prepare above its
    // promise, the promise (its own election).
    ghost function FirstRecord(m: Msg, pr0: Ballot, ls0: uint64): seq<O.Out> {
      if m.Accept? && m.bal == pr0 && ls0 <= m.slot && m.slot - ls0 < WINDOW then [O.Emitted(RecVote(m.slot, m.bal, m.val))]
      else if m.Prepare? && BalLt(pr0, m.bal) then [O.Emitted(RecPromised(m.bal))]
      else []
    }

    ghost predicate ReadyIs(r: Ready, t: seq<O.Out>, log0: seq<Packet>, recs0: seq<Record>)
      reads this
    {
      && sentLog == log0 + O.Sends(t) && recLog == recs0 + O.Records(t)
      && r.records == O.Records(t) && r.sync == O.Synced(t)
      && r.early == O.Early(me, t) && r.packets == O.Late(me, t)
      && OT.EarlyAfterOk(r.records, r.earlyAfter)
    }

    // The commits of the Ready r are exactly the slots [from, commitUpto), in order, each with
    // the value this host has committed there (AbsHost().committed): the driver applies only
    // values committed here, each slot once, contiguously from `from`.
    ghost predicate CommitsAre(r: Ready, from: uint64)
      reads this, committed
    {
      && from <= commitUpto
      && RS.HasAll(RS.AbsCommitted(committed[..], logStart as nat), from as nat, commitUpto as nat)
      && r.commits == OT.CommitsOf(RS.AbsCommitted(committed[..], logStart as nat), from, commitUpto)
    }

    // A Ready whose commits are CommitsAre's holds only values this host has committed: every
    // commit is in AbsHost().committed at its slot (what ImplReadies.ReadiesAgree reads).
    lemma CommitsAreCommitted(r: Ready, from: uint64)
      requires CommitsAre(r, from)
      ensures Rd.ReadyCommitted(r, AbsHost())
    {
      var C := RS.AbsCommitted(committed[..], logStart as nat);
      Rd.CommitsOfCommitted(C, from, commitUpto);
      assert r.commits == OT.CommitsOf(C, from, commitUpto);
      assert AbsHost().committed == C;
    }

    // The messages this host sent itself and has not handled yet are in its packet log.
    ghost predicate SelfLogged()
      reads this
    {
      forall k | 0 <= k < |selfQueue| :: Packet(me, me, selfQueue[k]) in sentLog
    }

    // Every slot in [logStart, commitUpto) is committed here.
    ghost predicate CommittedPrefix()
      reads this, committed
    {
      RS.HasAll(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat)
    }

    // Every vote the window holds is at a slot below voteHi, so a Promise, which reports the
    // votes below voteHi, reports them all.
    ghost predicate VotesBelowHi()
      reads this, votes
    {
      RS.AllBelow(RS.AbsVotes(votes[..], logStart as nat), voteHi as nat)
    }

    // Valid() but for the contents of the arrays.
    ghost predicate Shape()
      reads this
    {
      && Repr == {this, votes, committed, promiseFrom, takeover, proposed, acks, readAck}
      && votes != takeover && committed != proposed && acks != promiseFrom
      && 1 <= n <= MAX_MEMBERS && me < n
      && quorum == QuorumFacts.QuorumSize64(n) && quorum <= n
      && 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      && electionTimeout <= TICKS_LIMIT * 2
      && votes.Length == WINDOW as int && committed.Length == WINDOW as int
      && takeover.Length == WINDOW as int && proposed.Length == WINDOW as int
      && acks.Length == (WINDOW * n) as int
      && promiseFrom.Length == n as int && readAck.Length == n as int
      && logStart <= SLOT_LIMIT
      && logStart <= commitUpto <= nextSlot <= logStart + WINDOW
      && voteHi <= logStart + WINDOW
      && takeoverHi <= logStart + WINDOW
      && promiseCount <= n
      && ticks <= TICKS_LIMIT * 4 && catchUpCooldown <= TICKS_LIMIT * 4
      && leaderHint <= n && maxLogStartFrom < n && overflowFrom < n
    }

    // ---- the ghost leader state (its lemmas: ImplCandidate.i.dfy, ImplLeader.i.dfy) -------

    // The ghost leader state tied to the role: a follower does not lead; a candidate leads bal,
    // having proposed nothing, with Promise messages from exactly the members whose promiseFrom
    // flag is set, promiseCount of them, in phase 2 exactly when they are a quorum. Part of
    // Valid(), so every method keeps it.
    ghost predicate CandidateTied()
      reads this, promiseFrom
    {
      Cand.Tied(role, bal, leaderAbs, n, promiseFrom[..], promiseCount)
    }

    // A candidate's or leader's flag for member j in a window slot stands for an Accepted
    // message (its image) from j for bal and that slot, which this host received.
    ghost predicate AcksTied()
      reads this, acks
    {
      Lead.Acks(role, bal, acked, acks[..], n, logStart as nat)
    }

    // The proposed array, read over the window like committed values: empty for a candidate;
    // for a leader, every value in it went out in Accept(bal, slot, value) to every member (so
    // sending one again puts no new message on the wire).
    ghost predicate ProposedTied()
      reads this, proposed
    {
      && Lead.ProposalsSent(role, RS.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog)
      && Lead.ProposalsLed(role, RS.AbsCommitted(proposed[..], logStart as nat), leaderAbs)
    }

    // A candidate's takeover array, read over the window like the votes, holds for each slot
    // the highest vote that the promises it collected report there; every vote they report at
    // or above logStart is in it and below takeoverHi, unless a reported vote was beyond the
    // window (takeoverOverflow: then it does not lead); every promise's logStart is at most
    // maxLogStart.
    ghost predicate TakeoverTied()
      reads this, takeover
    {
      Cand.Takeover(role, leaderAbs, RS.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart,
                    takeoverHi, takeoverOverflow)
    }

    // A leader leads bal in phase 2; no promise it used has its logStart above nextSlot or
    // reports a vote at or above nextSlot (votes below logStart aside), and it proposed only
    // below nextSlot: every slot from nextSlot on is free for any value.
    ghost predicate LeaderTied()
      reads this
    {
      Lead.Leads(role, bal, leaderAbs, nextSlot as nat, logStart as nat)
    }

    // ---- output helpers ----------------------------------------------------------------

    method Send(dst: uint64, msg: Msg)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged()
      ensures sentLog == old(sentLog) + [Packet(me, dst, msg)]
      ensures sofar.trace == old(sofar.trace) + [O.Sent(Packet(me, dst, msg))]
      ensures selfQueue == old(selfQueue) + (if dst == me then [msg] else []) && recLog == old(recLog)
    {
      ghost var props := RS.AbsCommitted(proposed[..], logStart as nat);
      Lead.ProposalsSentMono(role, props, me, n, bal, sentLog, props, sentLog + [Packet(me, dst, msg)]);
      OT.BuffersTiedIs(out, selfQueue, buffers);
      var count: uint64 := buffers.recordCount;
      OT.TiedSend(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter, Packet(me, dst, msg), count);
      sentLog := sentLog + [Packet(me, dst, msg)];
      sofar := sofar.(trace := sofar.trace + [O.Sent(Packet(me, dst, msg))]);
      if dst == me {
        selfQueue := selfQueue + [msg];
        buffers := buffers.(selfBack := Append(buffers.selfBack, msg));
      } else if buffers.sync {
        out := out.(packets := out.packets + [Packet(me, dst, msg)]);
        buffers := buffers.(late := Append(buffers.late, Packet(me, dst, msg)));
      } else {
        // depends on no record of this step that needs a sync
        out := out.(early := out.early + [Packet(me, dst, msg)], earlyAfter := count);
        buffers := buffers.(early := Append(buffers.early, Packet(me, dst, msg)), earlyAfter := count);
      }
      OT.BuffersTiedMake(out, selfQueue, buffers);
    }

    method Broadcast(msg: Msg, includeSelf: bool)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged()
      ensures old(sentLog) <= sentLog && RM.Broadcasts(sentLog[|old(sentLog)|..], me, n, msg)
      ensures forall j: uint64 | j < n && (j != me || includeSelf) :: Lead.SentTo(sentLog, me, j, msg)
      ensures selfQueue == old(selfQueue) + (if includeSelf then [msg] else []) && recLog == old(recLog)
    {
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant selfQueue == old(selfQueue) + (if includeSelf && me < i then [msg] else []) && recLog == old(recLog)
        invariant i <= n
        invariant Valid() && Unchanged()
        invariant old(sentLog) <= sentLog && RM.Broadcasts(sentLog[|old(sentLog)|..], me, n, msg)
        invariant forall j: uint64 | j < i && (j != me || includeSelf) :: Lead.SentTo(sentLog, me, j, msg)
      {
        if i != me || includeSelf {
          ghost var before, log1 := sentLog[|old(sentLog)|..], sentLog;
          Send(i, msg);
          assert sentLog[|old(sentLog)|..] == before + [Packet(me, i, msg)];
          forall j: uint64 | j < i + 1 && (j != me || includeSelf) ensures Lead.SentTo(sentLog, me, j, msg) {
            if j < i {
              assert Lead.SentTo(log1, me, j, msg);
              var k :| 0 <= k < |log1| && log1[k] == Packet(me, j, msg);
              assert sentLog[k] == log1[k];
            } else {
              assert sentLog[|sentLog| - 1] == Packet(me, i, msg);
            }
          }
        }
        i := i + 1;
      }
    }

    // Emit r, the record of the durable change just made (its replay makes that change). A
    // vote, commit or learn record is of a slot of the window.
    method Persist(r: Record)
      requires Valid0()
      requires R.ApplyRecord(R.ApplyAll(Rep.InitHost(), recLog, WINDOW as nat, SLOT_LIMIT as nat), r, WINDOW as nat, SLOT_LIMIT as nat) == Durable()
      requires (r.RecVote? || r.RecCommit? || r.RecLearn?) ==> InWindow(r.slot)
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && sentLog == old(sentLog) && selfQueue == old(selfQueue)
      ensures recLog == old(recLog) + [r] && sofar.trace == old(sofar.trace) + [O.Emitted(r)]
      ensures out.early == old(out.early) && out.sync == (old(out.sync) || NeedsSync(r))
    {
      R.ApplyAllSnoc(Rep.InitHost(), recLog, r, WINDOW as nat, SLOT_LIMIT as nat);
      // its replay ends at Durable(), whose log start is logStart
      Rep.InWindowFromSnoc(recLog, emitFrom, r, logStart as nat);
      OT.TiedPersist(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter, r);
      recLog := recLog + [r];
      sofar := sofar.(trace := sofar.trace + [O.Emitted(r)]);
      OT.BuffersTiedIs(out, selfQueue, buffers);
      out := out.(records := out.records + [r], sync := out.sync || NeedsSync(r));
      buffers := buffers.(records := Append(buffers.records, r), sync := buffers.sync || NeedsSync(r),
                          recordCount := if buffers.recordCount < 0x1_0000_0000 then buffers.recordCount + 1 else buffers.recordCount);
      OT.BuffersTiedMake(out, selfQueue, buffers);
    }

    // The Ready asks the driver to send member src a snapshot.
    method AskSnapshot(src: uint64)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && sentLog == old(sentLog) && recLog == old(recLog)
      ensures sofar == old(sofar) && commitBase == old(commitBase) && selfQueue == old(selfQueue)
      ensures out == old(out).(needSnapshot := old(out.needSnapshot) + [src])
    {
      OT.BuffersTiedIs(out, selfQueue, buffers);
      out := out.(needSnapshot := out.needSnapshot + [src]);
      buffers := buffers.(needSnapshot := buffers.needSnapshot + [src]);
      OT.BuffersTiedMake(out, selfQueue, buffers);
    }

    // The state this step must not change behind the caller's back: everything but the
    // output buffers.
    twostate predicate Unchanged()
      reads this
    {
      && promised == old(promised) && logStart == old(logStart) && commitUpto == old(commitUpto)
      && role == old(role) && bal == old(bal) && maxSeen == old(maxSeen)
      && leaderHint == old(leaderHint) && ticks == old(ticks)
      && catchUpCooldown == old(catchUpCooldown) && voteHi == old(voteHi)
      && promiseCount == old(promiseCount) && maxLogStart == old(maxLogStart)
      && maxLogStartFrom == old(maxLogStartFrom) && takeoverHi == old(takeoverHi)
      && takeoverOverflow == old(takeoverOverflow) && overflowFrom == old(overflowFrom)
      && nextSlot == old(nextSlot)
      && readSeq == old(readSeq) && readConfirmed == old(readConfirmed)
      && Keeps()
    }

    // The fields the abstraction reads, other than promised and logStart, are unchanged: the
    // configuration, the durable arrays (the same objects) and the ghost leader state.
    twostate predicate Keeps()
      reads this
    {
      SameConfig() && leaderAbs == old(leaderAbs) && acked == old(acked)
    }

    // The fields the abstraction reads, and sentLog, are unchanged.
    twostate predicate AbsSame()
      reads this
    {
      Keeps() && promised == old(promised) && logStart == old(logStart) && sentLog == old(sentLog)
    }

    // The configuration and the durable arrays (the same objects) are unchanged.
    twostate predicate SameConfig()
      reads this
    {
      me == old(me) && n == old(n) && votes == old(votes) && committed == old(committed)
    }

    // emitFrom is unchanged: only recovery's replay (Replayed) moves it. Every whole step of the
    // core (Receive, Tick, Propose, ConfirmRead, Truncate, InstallSnapshot) ensures this, so a
    // checkpoint taken after recovery has every replayed record in its log, pre: emitFrom <= |pre|,
    // the premise of TruncatedCheckpointRestartIsCrash(Step). Kept by SameBases(), hence by
    // PromisedGrows() and StepGrows(); stated on its own where a method resets the bases or
    // ensures only BalLe(old(promised), promised).
    twostate predicate EmitFromKept()
      reads this
    {
      emitFrom == old(emitFrom)
    }

    // ---- the abstraction (ImplAbsState.i.dfy) ---------------------------------------------

    // The protocol's configuration.
    ghost function Consts(): P.Constants
      reads this
    {
      P.Constants(n as nat)
    }

    // The protocol's state of this host: the durable arrays read over the window, and the
    // ghost leader state.
    ghost function AbsHost(): P.Host
      reads this, votes, committed
    {
      P.Host(promised, RS.AbsVotes(votes[..], logStart as nat), logStart as nat,
             RS.AbsCommitted(committed[..], logStart as nat), leaderAbs)
    }

    // The window's bookkeeping is unchanged (for callers reasoning about slot bounds).
    twostate predicate Bounds()
      reads this
    {
      && logStart == old(logStart) && commitUpto == old(commitUpto) && nextSlot == old(nextSlot)
      && voteHi == old(voteHi) && takeoverHi == old(takeoverHi)
    }

    // PromisedNeverDecreases: no step lowers the promised ballot (recovery replays it as it was).
    // The promised ballot never decreases, and a handler counts no Accepted it did not handle.
    twostate predicate PromisedGrows()
      reads this
    {
      BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
    }

    function Idx(slot: uint64): uint64 {
      slot % WINDOW
    }

    predicate InWindow(slot: uint64)
      reads this
    {
      logStart <= slot && slot - logStart < WINDOW
    }

    // The promised ballot never decreases (PromisedGrows without its bound on acked: a step
    // counts the Accepted it handles).
    twostate predicate StepGrows()
      reads this
    {
      BalLe(old(promised), promised) && SameBases()
    }

    method GetStatus() returns (st: Status)
      requires Valid()
    {
      st := Status(role, bal, promised, leaderHint, commitUpto, logStart, nextSlot, readConfirmed);
    }
  }
}
