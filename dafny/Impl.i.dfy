// The executable Multi-Paxos replica: the part of verikv that decides, compiled to C++.
// Sans-I/O and deterministic: inputs are a received message, a tick, a proposal or a durable
// record replayed at recovery; each step's output is one Ready (records to make durable,
// then packets to send, then committed slots to apply). It never reads a clock, a socket, a
// file or a random source. It follows dafny/PROTOCOL.md; every slot lives in a bounded window
// [logStart, logStart + WINDOW) of preallocated arrays, so no step allocates per slot.
// The proofs' parts that do not read a Replica (each invariant of Valid() stated over values,
// and its lemmas) are in ImplBounds, ImplOutTied, ImplCandidate, ImplLeader and ImplReplay.
module Impl {
  import opened Native
  import opened Ballots
  import opened BallotFacts
  import opened ImplTypes
  import Quorums
  import QuorumFacts
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import PI = ProtocolInvariant
  import Sy = ImplSystem
  import O = StepOutput
  import opened ImplBounds        // WINDOW and the other bounds
  import OT = ImplOutTied         // the lemmas of OutTied
  import Cand = ImplCandidate     // of CandidateTied and TakeoverTied
  import Lead = ImplLeader        // of AcksTied, ProposedTied and LeaderTied
  import Rep = ImplReplay         // of Replays
  import Cr = ImplCrash           // a crash part-way through a step

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

    // The current step's output, and messages this host sent to itself.
    var out: Ready                  // the step's Ready so far (its `accepted` is set at the end)
    var selfQueue: seq<Msg>

    // Ghost state for the refinement proof (ImplAbstraction.i.dfy).
    // The protocol's volatile leader state. StartElection (Leading(bal, 1, {}, {})), StepDown
    // (NotLeader), OnPromise (R.Collected: the promise added) and ProposeAt (the proposal
    // added) write it; CandidateTied, TakeoverTied and LeaderTied tie it to the concrete state.
    ghost var leaderAbs: P.LeaderState
    ghost var sentLog: seq<Packet>      // every packet this host sent, to itself included, in order
    ghost var acked: set<S.Message>     // the Accepted messages (images) counted for bal (AcksTied)
    ghost var recLog: seq<Record>       // every durable record this host emitted or replayed, in order
    // The current step so far (OutTied): what it sent and emitted, in order, after the packet
    // log sentBase and the record log recBase that the step began with; its commits report the
    // slots from commitBase on (CommitsTied).
    ghost var sofar: O.Step

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

    // The commits the step reported so far (out.commits) are the slots [sofar.commitBase,
    // commitUpto), in order, each with the value this host committed there; commitBase is in
    // the window. An opaque predicate of values (ImplOutTied), as OutTied.
    ghost predicate CommitsTied()
      reads this, committed
    {
      OT.CommitsTiedOf(out.commits, R.AbsCommitted(committed[..], logStart as nat), sofar.commitBase, logStart, commitUpto)
    }

    // The step under way is the same step: its bases are unchanged, and once it emitted a
    // record that needs a sync, its early packets are fixed (Send puts every later packet to
    // another member among the late ones).
    twostate predicate SameBases()
      reads this
    {
      && sofar.sentBase == old(sofar.sentBase) && sofar.recBase == old(sofar.recBase) && sofar.commitBase == old(sofar.commitBase)
      && (old(out.sync) ==> out.sync && out.early == old(out.early))
    }

    // The Ready r is exactly the step that began with the packet log log0 and the record log
    // recs0 and did t: the logs grew by t's packets and records; r's records are t's, in order,
    // and its early and late packets are those t sent to other members before and after its
    // first record that needs a sync (StepOutput), in order.
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
      && R.HasAll(R.AbsCommitted(committed[..], logStart as nat), from as nat, commitUpto as nat)
      && r.commits == OT.CommitsOf(R.AbsCommitted(committed[..], logStart as nat), from, commitUpto)
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
      R.HasAll(R.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat)
    }

    // Every vote the window holds is at a slot below voteHi, so a Promise, which reports the
    // votes below voteHi, reports them all.
    ghost predicate VotesBelowHi()
      reads this, votes
    {
      R.AllBelow(R.AbsVotes(votes[..], logStart as nat), voteHi as nat)
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
      && Lead.ProposalsSent(role, R.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog)
      && Lead.ProposalsLed(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs)
    }

    // A candidate's takeover array, read over the window like the votes, holds for each slot
    // the highest vote that the promises it collected report there; every vote they report at
    // or above logStart is in it and below takeoverHi, unless a reported vote was beyond the
    // window (takeoverOverflow: then it does not lead); every promise's logStart is at most
    // maxLogStart.
    ghost predicate TakeoverTied()
      reads this, takeover
    {
      Cand.Takeover(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart,
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

    constructor (me: uint64, n: uint64, electionTicks: uint64, heartbeatTicks: uint64)
      requires 1 <= n <= MAX_MEMBERS && me < n
      requires 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      ensures Valid() && fresh(Repr - {this})
      ensures P.HostInit(AbsHost()) && Consts() == P.Constants(n as nat) && sentLog == [] && recLog == []  // the protocol's Init
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
      leaderAbs := P.NotLeader;
      sentLog := [];
      acked := {};
      recLog := [];
      sofar := O.Step([], [], [], 0);
      Repr := {this, votes, committed, promiseFrom, takeover, proposed, acks, readAck};
      new;
      OT.TiedNone([], [], me);
      Cand.TiedFollower(bal, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.ProposalsSentFollower(R.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Lead.AcksFollower(bal, acked, acks[..], n, logStart as nat);
      ResetDurableArrays();
      ResetLeaderArrays();
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
      ghost var props := R.AbsCommitted(proposed[..], logStart as nat);
      Lead.ProposalsSentMono(role, props, me, n, bal, sentLog, props, sentLog + [Packet(me, dst, msg)]);
      var count: uint64 := if |out.records| < 0x1_0000_0000 then |out.records| as uint64 else 0x1_0000_0000;
      OT.TiedSend(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter, Packet(me, dst, msg), count);
      sentLog := sentLog + [Packet(me, dst, msg)];
      sofar := sofar.(trace := sofar.trace + [O.Sent(Packet(me, dst, msg))]);
      if dst == me {
        selfQueue := selfQueue + [msg];
      } else if out.sync {
        out := out.(packets := out.packets + [Packet(me, dst, msg)]);
      } else {
        // depends on no record of this step that needs a sync
        out := out.(early := out.early + [Packet(me, dst, msg)], earlyAfter := count);
      }
    }

    method Broadcast(msg: Msg, includeSelf: bool)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged()
      ensures old(sentLog) <= sentLog && R.Broadcasts(sentLog[|old(sentLog)|..], me, n, msg)
      ensures forall j: uint64 | j < n && (j != me || includeSelf) :: Lead.SentTo(sentLog, me, j, msg)
      ensures selfQueue == old(selfQueue) + (if includeSelf then [msg] else []) && recLog == old(recLog)
    {
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant selfQueue == old(selfQueue) + (if includeSelf && me < i then [msg] else []) && recLog == old(recLog)
        invariant i <= n
        invariant Valid() && Unchanged()
        invariant old(sentLog) <= sentLog && R.Broadcasts(sentLog[|old(sentLog)|..], me, n, msg)
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

    // Emit r, the record of the durable change just made (its replay makes that change).
    method Persist(r: Record)
      requires Valid0()
      requires R.ApplyRecord(R.ApplyAll(Rep.InitHost(), recLog, WINDOW as nat, SLOT_LIMIT as nat), r, WINDOW as nat, SLOT_LIMIT as nat) == Durable()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && sentLog == old(sentLog) && selfQueue == old(selfQueue)
      ensures recLog == old(recLog) + [r] && sofar.trace == old(sofar.trace) + [O.Emitted(r)]
    {
      R.ApplyAllSnoc(Rep.InitHost(), recLog, r, WINDOW as nat, SLOT_LIMIT as nat);
      OT.TiedPersist(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter, r);
      recLog := recLog + [r];
      sofar := sofar.(trace := sofar.trace + [O.Emitted(r)]);
      out := out.(records := out.records + [r], sync := out.sync || NeedsSync(r));
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

    // ---- the abstraction (ImplAbstraction.i.dfy) ------------------------------------------

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
      P.Host(promised, R.AbsVotes(votes[..], logStart as nat), logStart as nat,
             R.AbsCommitted(committed[..], logStart as nat), leaderAbs)
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

    method SetPromised(b: Ballot)
      requires Valid() && BalLe(promised, b)
      modifies this
      ensures Valid() && PromisedGrows() && Bounds() && role == old(role) && bal == old(bal)
      ensures promised == b && Keeps() && sentLog == old(sentLog) && promiseCount == old(promiseCount)
      ensures sofar.trace == old(sofar.trace) + (if old(promised) != b then [O.Emitted(RecPromised(b))] else [])
      ensures selfQueue == old(selfQueue)
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
      ensures role == Follower && sofar == old(sofar) && selfQueue == old(selfQueue)
    {
      role := Follower;
      bal := Zero;
      leaderAbs := P.NotLeader;
      Cand.TiedFollower(bal, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.ProposalsSentFollower(R.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Lead.AcksFollower(bal, acked, acks[..], n, logStart as nat);
    }

    // ---- learning ------------------------------------------------------------------------

    method AdvanceCommit()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows()
      ensures promised == old(promised) && logStart == old(logStart) && Keeps() && sentLog == old(sentLog)
      ensures selfQueue == old(selfQueue)
    {
      while commitUpto - logStart < WINDOW && committed[Idx(commitUpto)].Some?
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Valid()
        invariant promised == old(promised) && logStart == old(logStart) && Keeps() && sentLog == old(sentLog)
        invariant selfQueue == old(selfQueue)
        decreases logStart + WINDOW - commitUpto
      {
        R.AbsCommittedAt(committed[..], logStart as nat, commitUpto as nat);
        R.HasAllExtend(R.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat);
        OT.CommitsTiedAdvance(out.commits, R.AbsCommitted(committed[..], logStart as nat), sofar.commitBase, logStart, commitUpto,
                              committed[Idx(commitUpto)].val);
        out := out.(commits := out.commits + [Committed(commitUpto, committed[Idx(commitUpto)].val)]);
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
      ensures Keeps() && sentLog == old(sentLog)
      ensures var h := old(AbsHost());
              AbsHost() == if slot as nat in h.committed then h else h.(committed := h.committed[slot as nat := val])
    {
      R.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
      if committed[Idx(slot)].None? {
        if slot >= nextSlot {
          Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, slot as nat + 1, logStart as nat);
          nextSlot := slot + 1;  // never propose in a slot already known to be chosen
        }
        committed[Idx(slot)] := Some(val);
        R.AbsCommittedUpdate(old(committed[..]), logStart as nat, slot as nat, val);
        R.HasAllAdd(R.AbsCommitted(old(committed[..]), logStart as nat), logStart as nat, commitUpto as nat, slot as nat, val);
        OT.CommitsTiedAdd(out.commits, R.AbsCommitted(old(committed[..]), logStart as nat), sofar.commitBase, logStart, commitUpto,
                          slot as nat, val);
        Persist(RecCommit(slot, val));
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
      Cand.TakeoverNonCandidate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
    }

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
      ghost var props0 := R.AbsCommitted(proposed[..], logStart as nat);
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
      Cand.TakeoverNonCandidate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      R.AbsCommittedEmpty(proposed[..], logStart as nat);
      Lead.ProposalsSentEmpty(role, me, n, bal, sentLog);
      Lead.ProposalsLedSub(role, props0, leaderAbs, map[]);
      Lead.AcksNone(role, bal, acked, acks[..], n, logStart as nat);
    }

    method ResetDurableArrays()
      requires Shape() && CandidateTied() && TakeoverTied() && LeaderTied() && ProposedTied() && AcksTied() && SelfLogged() && OutTied()
      requires logStart == commitUpto && out.commits == [] && sofar.commitBase == commitUpto
      requires recLog == [] && promised == Zero && logStart == 0
      modifies votes, committed
      ensures Valid() && PromisedGrows()
      ensures R.AbsVotes(votes[..], logStart as nat) == map[] && R.AbsCommitted(committed[..], logStart as nat) == map[]
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
      R.AbsVotesEmpty(votes[..], logStart as nat);
      R.AllBelowEmpty(voteHi as nat);
      R.AbsCommittedEmpty(committed[..], logStart as nat);
      R.HasAllEmpty(R.AbsCommitted(committed[..], logStart as nat), logStart as nat);
      OT.CommitsTiedNone(R.AbsCommitted(committed[..], logStart as nat), logStart, commitUpto);
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
              && R.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
              && R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves))
      ensures BalMax(old(promised), old(maxSeen)).round < UINT64_MAX - 1 ==> CandidateTied()
      ensures R.NoLearns(sentLog[|old(sentLog)|..])
    {
      R.RunNil(Consts(), me as nat, AbsHost(), {});
      var seen := BalMax(promised, maxSeen);
      if seen.round >= UINT64_MAX - 1 {
        return;  // ballots exhausted: never lead again rather than reuse a ballot
      }
      role := Follower;  // campaigning anew: the old campaign's state goes
      leaderAbs := P.NotLeader;
      Cand.TiedFollower(bal, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      Lead.ProposalsSentFollower(R.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Lead.AcksFollower(bal, acked, acks[..], n, logStart as nat);
      ClearLeaderState();
      var b := NextBallot(seen, me);
      NextBallotIsAbove(seen, me);
      BalLeTransitive(promised, seen, b);
      SetPromised(b);
      role := Candidate;
      bal := b;
      leaderAbs := P.Leading(b, 1, {}, map[]);
      assert forall j | 0 <= j < n as int :: !promiseFrom[..][j];
      Cand.TiedStart(bal, n, promiseFrom[..]);
      R.AbsVotesEmpty(takeover[..], logStart as nat);
      Cand.TakeoverStart(bal, logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      R.AbsCommittedEmpty(proposed[..], logStart as nat);
      Lead.ProposalsSentEmpty(role, me, n, bal, sentLog);
      Lead.ProposalsLedNonLeader(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      acked := {};
      Lead.AcksNone(role, bal, acked, acks[..], n, logStart as nat);
      ticks := 0;
      Broadcast(Prepare(b, commitUpto), true);
      assert {:split_here} true;  // the refinement apart from the state change
      // The refinement: StartPrepare(b).
      ghost var h0 := old(AbsHost());
      assert BalLt(h0.promised, b) by {
        if h0.promised != seen { BalLtTransitive(h0.promised, seen, b); }
      }
      ghost var mv := R.ElectionMoves(me as nat, n as nat, h0, b, true)[0];
      assert AbsHost() == mv.post;
      assert P.HostStep(Consts(), me as nat, h0, mv.post, {}, mv.sent, mv.step);
      R.RunOne(Consts(), me as nat, h0, {}, mv);
      R.PrepareBroadcastRefines(sentLog[|old(sentLog)|..], me, n, b, commitUpto);
    }

    // The trail of this host's protocol steps from h0, its state when its packet log was log0,
    // to now (see R.Trail).
    ghost predicate TrailFrom(h0: P.Host, log0: seq<Packet>, net: set<S.Message>, moves: seq<R.Move>)
      reads this, votes, committed
    {
      R.Trail(Consts(), me as nat, h0, log0, net, moves, AbsHost(), sentLog)
    }

    // Send CatchUp(commitUpto) to dst: a SendNoSafety step, appended to the trail.
    method SendCatchUp(dst: uint64, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves: seq<R.Move>)
      returns (ghost moves': seq<R.Move>)
      requires Valid() && dst < n && TrailFrom(h0, log0, {}, moves)
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && TrailFrom(h0, log0, {}, moves')
    {
      ghost var h1, log1 := AbsHost(), sentLog;
      Send(dst, CatchUp(commitUpto));
      ghost var a := S.CatchUp(me as nat, dst as nat, commitUpto as nat);
      assert AbsHost() == h1;
      assert sentLog[|log1|..] == [Packet(me, dst, CatchUp(commitUpto))];
      R.PacketsRefineOne(Packet(me, dst, CatchUp(commitUpto)), a, {a});
      assert P.HostStep(Consts(), me as nat, h1, h1, {}, {a}, P.SendNoSafetyStep(a));
      R.TrailSnoc(Consts(), me as nat, h0, log0, {}, moves, h1, log1, R.NoSafety(h1, a), sentLog);
      moves' := moves + [R.NoSafety(h1, a)];
    }

    // The leader's heartbeat: Heartbeat(bal, commitUpto, readSeq) to the other members, and a
    // CatchUp when this leader lags behind a promise's logStart. A SendNoSafety step each.
    method Beat(ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves: seq<R.Move>) returns (ghost moves': seq<R.Move>)
      requires Valid() && role == Leader && TrailFrom(h0, log0, {}, moves)
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged() && TrailFrom(h0, log0, {}, moves')
    {
      Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
      ghost var h1, log1 := AbsHost(), sentLog;
      Broadcast(Heartbeat(bal, commitUpto, readSeq), false);
      assert AbsHost() == h1;
      R.BeatRefines(Consts(), h1, {}, me, n, bal, commitUpto, readSeq, sentLog[|log1|..]);
      ghost var beats := R.BeatMoves(h1, me as nat, n as nat, bal, commitUpto as nat);
      R.TrailOf(Consts(), me as nat, h1, log1, {}, beats, h1, sentLog);
      R.TrailChain(Consts(), me as nat, h0, log0, {}, moves, h1, log1, beats, h1, sentLog);
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
    method BecomeLeader() returns (ghost moves: seq<R.Move>)
      requires Valid() && role == Candidate && promiseCount >= quorum
      modifies Repr
      ensures Valid() && PromisedGrows() && SameConfig()
      ensures R.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), {}, moves, AbsHost(), sentLog)
    {
      ghost var h0, log0 := AbsHost(), sentLog;
      R.TrailNil(Consts(), me as nat, h0, log0, {});
      moves := [];
      if takeoverOverflow || promised != bal {
        var lags := takeoverOverflow && promised == bal;
        StepDown();
        moves := R.StepDownMoves(h0, true);
        R.StepDownRefines(Consts(), me as nat, h0, {}, true);
        assert sentLog[|log0|..] == [];
        R.TrailOf(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
        if lags {
          // A promise reported votes beyond this host's window: it lags and cannot take those
          // slots over. Ask for what it lacks, or each election it starts preempts the others
          // again and nobody leads (its election timeout may be the shortest).
          moves := SendCatchUp(if maxLogStart > commitUpto then maxLogStartFrom else overflowFrom, h0, log0, moves);
        }
        return;
      }
      // Phase 2 covers every slot from the first one this host has not seen committed, up to
      // the highest slot it knows of (a vote reported in a promise, or a commit it saw).
      var start := if maxLogStart > commitUpto then maxLogStart else commitUpto;
      var hi := if takeoverHi > nextSlot then takeoverHi else nextSlot;
      if start - logStart > WINDOW {
        // The others are a whole window ahead: this host cannot lead until it catches up.
        StepDown();
        moves := R.StepDownMoves(h0, true);
        R.StepDownRefines(Consts(), me as nat, h0, {}, true);
        assert sentLog[|log0|..] == [];
        R.TrailOf(Consts(), me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
        moves := SendCatchUp(maxLogStartFrom, h0, log0, moves);
        return;
      }
      // What phase 1 established, kept across the proposals below.
      ghost var l := leaderAbs;
      ghost var tk := R.AbsVotes(takeover[..], logStart as nat);
      Cand.TiedPhase(bal, l, n, promiseFrom[..], promiseCount, quorum);
      assert Cand.TakeoverOf(l.promises, tk, logStart as nat, maxLogStart, takeoverHi, false) by {
        reveal Cand.Takeover();
      }
      Lead.ProposalsSentLead(R.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog);
      Lead.AcksRole(Candidate, Leader, bal, acked, acks[..], n, logStart as nat);
      role := Leader;
      Lead.ProposalsLedStart(R.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      Cand.TiedLeader(bal, leaderAbs, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, tk, logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      leaderHint := me;
      nextSlot := if start > hi then start else hi;
      Lead.LeadsTakeover(bal, l, tk, logStart as nat, maxLogStart, takeoverHi, nextSlot as nat);
      var s := start;
      while s < hi
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameConfig() && SameBases()
        invariant Valid() && role == Leader && promised == bal && bal == old(bal)
        invariant start <= s && logStart == old(logStart) && hi <= nextSlot
        invariant maxLogStart == old(maxLogStart) && takeoverHi == old(takeoverHi)
        invariant leaderAbs.Leading? && leaderAbs.promises == l.promises
        invariant forall t | t in leaderAbs.proposed :: start as nat <= t < s as nat
        invariant R.AbsVotes(takeover[..], logStart as nat) == tk
        invariant TrailFrom(h0, log0, {}, moves)
        decreases hi as int - s as int
      {
        if InWindow(s) {
          var c := committed[Idx(s)];
          var v := takeover[Idx(s)];
          var val := if v.Vote? then v.val else if c.Some? then c.val else [];
          R.AbsVotesAt(takeover[..], logStart as nat, s as nat);
          Cand.TakeoverSafe(l.promises, tk, logStart as nat, maxLogStart, takeoverHi, s as nat, val);
          R.AbsCommittedAt(committed[..], logStart as nat, s as nat);
          Cand.TakeoverValueSource(AbsHost(), tk, logStart as nat, maxLogStart, takeoverHi, s as nat, val);
          ghost var h1, log1 := AbsHost(), sentLog;
          ghost var mv := ProposeAt(s, val, {});
          R.TrailSnoc(Consts(), me as nat, h0, log0, {}, moves, h1, log1, mv, sentLog);
          moves := moves + [mv];
        }
        s := s + 1;
      }
      ticks := 0;
      moves := Beat(h0, log0, moves);
    }

    // Propose val in slot: Accept(bal, slot, val) to every member, this host included.
    // Abstractly SendAccept(slot, val), receiving from net; the caller shows it is safe, and
    // where val comes from (a client's request in net, a reported vote, a commit, the no-op).
    method ProposeAt(slot: uint64, val: Value, ghost net: set<S.Message>) returns (ghost mv: R.Move)
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
      ensures old(sentLog) <= sentLog && R.PacketsRefine(sentLog[|old(sentLog)|..], mv.sent)
      ensures R.NoLearns(sentLog[|old(sentLog)|..])
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
      Lead.ProposalsLedAdd(R.AbsCommitted(proposed[..], logStart as nat), leaderAbs, slot as nat, val);
      leaderAbs := leaderAbs.(proposed := leaderAbs.proposed[slot as nat := val]);
      Cand.TiedLeader(bal, leaderAbs, n, promiseFrom[..], promiseCount);
      Cand.TakeoverNonCandidate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart, takeoverHi, takeoverOverflow);
      ghost var log0 := sentLog;
      Broadcast(Accept(bal, slot, val), true);
      R.AcceptBroadcastRefines(sentLog[|log0|..], me, n, bal, slot, val);
      // The proposal is recorded once its Accepts are out (ProposedTied).
      ghost var props := R.AbsCommitted(proposed[..], logStart as nat);
      assert Lead.ProposalsSent(Leader, props, me, n, bal, sentLog);
      assert proposed[..] == old(proposed[..]);
      proposed[Idx(slot)] := Some(val);
      assert proposed[..] == old(proposed[..])[slot as nat % WINDOW as nat := Some(val)];
      R.AbsCommittedUpdate(old(proposed[..]), logStart as nat, slot as nat, val);
      Lead.ProposalsSentAdd(props, me, n, bal, sentLog, slot, val, sentLog, Accept(bal, slot, val));
      assert R.AbsCommitted(proposed[..], logStart as nat) == props[slot as nat := val];
      assert ProposedTied();
      mv := R.Move(P.SendAcceptStep(slot as nat, val), R.AcceptAll(me as nat, n as nat, bal, slot as nat, val), AbsHost());
      assert AbsHost() == h0.(leader := leaderAbs);
      assert P.HostStep(Consts(), me as nat, h0, mv.post, net, mv.sent, mv.step);
    }

    // On a heartbeat tick. A leader beats (Beat), then re-sends the Accepts that have not
    // reached a quorum yet (messages may be lost). Abstractly: Beat's SendNoSafety steps; the
    // re-sent Accepts are packets it sent before (ProposedTied), so their images are in the
    // network already.
    method SendHeartbeats() returns (ghost moves: seq<R.Move>)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows() && SameConfig()
      ensures R.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), {}, moves, AbsHost(), sentLog)
    {
      ticks := 0;
      ghost var h0, log0 := AbsHost(), sentLog;
      R.TrailNil(Consts(), me as nat, h0, log0, {});
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
        invariant TrailFrom(h0, log0, {}, moves)
        decreases end - s
      {
        var p := proposed[Idx(s)];
        if p.Some? && committed[Idx(s)].None? {
          R.AbsCommittedAt(proposed[..], logStart as nat, s as nat);
          ghost var log1, h1 := sentLog, AbsHost();
          Lead.ProposalsSentHas(R.AbsCommitted(proposed[..], logStart as nat), me, n, bal, sentLog, s, Accept(bal, s, p.val));
          Broadcast(Accept(bal, s, p.val), false);
          assert AbsHost() == h1;
          forall k | |log1| <= k < |sentLog| ensures sentLog[k] in log1 {
            assert sentLog[|log1|..][k - |log1|] == sentLog[k];
            assert Lead.SentTo(log1, me, sentLog[k].dst, Accept(bal, s, p.val));
          }
          R.TrailResend(Consts(), me as nat, h0, log0, {}, moves, h1, log1, sentLog);
        }
        s := s + 1;
      }
    }

    // ---- message handlers ----------------------------------------------------------------

    // Refines ReceivePrepare(m, fromSlot) (and StepDown when it stops leading), see R.PrepareMoves.
    method OnPrepare(src: uint64, b: Ballot, fromSlot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog
      ensures var m := S.Prepare(src as nat, me as nat, b);
              var moves := R.PrepareMoves(me as nat, old(AbsHost()), old(role) != Follower && b != old(bal), m, fromSlot as nat);
              && R.Run(Consts(), me as nat, old(AbsHost()), {m}, moves, AbsHost())
              && R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves))
      ensures R.NoLearns(sentLog[|old(sentLog)|..])
      // What it did, in order: the promise's record, when it raises its promise, then its answer.
      ensures exists q: Packet :: sofar.trace == old(sofar.trace) + Cr.PromiseTrace(BalLt(old(promised), b), b, q)
      ensures src != me ==> selfQueue == old(selfQueue)
    {
      if !BalLe(promised, b) {
        Send(src, Nack(promised));
        assert sofar.trace == old(sofar.trace) + Cr.PromiseTrace(false, b, Packet(me, src, Nack(old(promised))));
        ghost var m := S.Prepare(src as nat, me as nat, b);
        ghost var nack := S.Nack(me as nat, src as nat, promised);
        ghost var mv := R.Move(P.ReceivePrepareStep(m, fromSlot as nat), {nack}, AbsHost());
        assert P.HostStep(Consts(), me as nat, AbsHost(), AbsHost(), {m}, mv.sent, mv.step);
        R.RunOne(Consts(), me as nat, AbsHost(), {m}, mv);
        assert sentLog[|old(sentLog)|..] == [Packet(me, src, Nack(promised))];
        R.PacketsRefineOne(Packet(me, src, Nack(promised)), nack, {nack});
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
      var start := if fromSlot > logStart then fromSlot else logStart;
      var reported: seq<SlotVote> := [];
      var s := start;
      ghost var h0 := old(AbsHost());
      assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
      R.ReportNone(h0.votes, start as nat);
      while s < voteHi
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Valid() && start <= s
        invariant h0.votes == R.AbsVotes(votes[..], logStart as nat)
        invariant R.SlotVotesMap(reported) == R.VotesIn(h0.votes, start as nat, s as nat)
        modifies {}
        decreases voteHi as int - s as int
      {
        var v := votes[Idx(s)];
        R.ReportNext(votes[..], logStart as nat, start as nat, s, reported);
        if v.Vote? {
          reported := reported + [SlotVote(s, v.bal, v.val)];
        }
        s := s + 1;
      }
      assert {:split_here} true;  // keeps each half of this proof small
      ghost var trace0 := sofar.trace;
      assert trace0 == old(sofar.trace) + (if BalLt(old(promised), b) then [O.Emitted(RecPromised(b))] else []);
      Send(src, Promise(b, start, reported));
      assert sofar.trace == old(sofar.trace) + Cr.PromiseTrace(BalLt(old(promised), b), b, Packet(me, src, Promise(b, start, reported)));
      // The refinement: the votes below voteHi are all the votes held (VotesBelowHi).
      ghost var m := S.Prepare(src as nat, me as nat, b);
      ghost var p := S.Promise(me as nat, src as nat, b, start as nat, P.VotesFrom(h0.votes, start as nat));
      R.ReportAll(h0.votes, start as nat, s as nat, voteHi as nat);
      assert R.MsgRefines(me as nat, src as nat, Promise(b, start, reported), p);
      assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
      PrepareRefines(h0, AbsHost(), m, fromSlot as nat, old(role) != Follower && b != old(bal));
      assert sentLog[|old(sentLog)|..] == [Packet(me, src, Promise(b, start, reported))];
      R.PacketsRefineOne(Packet(me, src, Promise(b, start, reported)), p, {p});
    }

    // A promise is ReceivePrepare, followed by StepDown when `down`.
    lemma PrepareRefines(h: P.Host, h': P.Host, m: S.Message, from: nat, down: bool)
      requires Valid() && m.Prepare? && m.dst == me as nat && BalLe(h.promised, m.bal)
      requires h' == if down then h.(promised := m.bal, leader := P.NotLeader) else h.(promised := m.bal)
      ensures var moves := R.PrepareMoves(me as nat, h, down, m, from);
              var ls := if from > h.logStart then from else h.logStart;
              && R.Run(Consts(), me as nat, h, {m}, moves, h')
              && R.SentBy(moves) == {S.Promise(me as nat, m.src, m.bal, ls, P.VotesFrom(h.votes, ls))}
    {
      var h1 := h.(promised := m.bal);
      var ls := if from > h.logStart then from else h.logStart;
      var mv := R.Move(P.ReceivePrepareStep(m, from), {S.Promise(me as nat, m.src, m.bal, ls, P.VotesFrom(h.votes, ls))}, h1);
      assert P.HostStep(Consts(), me as nat, h, h1, {m}, mv.sent, mv.step);
      if down {
        R.RunOne(Consts(), me as nat, h1, {m}, R.Move(P.StepDownStep, {}, h'));
        R.RunCons(Consts(), me as nat, h, {m}, mv, [R.Move(P.StepDownStep, {}, h')], h');
      } else {
        R.RunOne(Consts(), me as nat, h, {m}, mv);
        assert [mv] + [] == [mv];
      }
    }

    // Refines ReceivePromise(m), m the Promise(b) from src with its logStart and reported votes,
    // when this host campaigns for b, has no promise from src yet and is short of a quorum;
    // then, when the promises reach a quorum, BecomeLeader's steps. Otherwise no step (a report
    // whose slots do not increase is malformed, the core never sends one: it is dropped like a
    // lost message).
    method OnPromise(src: uint64, b: Ballot, ls: uint64, reported: seq<SlotVote>) returns (ghost moves: seq<R.Move>)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows() && SameConfig()
      ensures var m := S.Promise(src as nat, me as nat, b, ls as nat, R.SlotVotesMap(reported));
              R.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), {m}, moves, AbsHost(), sentLog)
    {
      ghost var m := S.Promise(src as nat, me as nat, b, ls as nat, R.SlotVotesMap(reported));
      ghost var h0, log0 := AbsHost(), sentLog;
      R.TrailNil(Consts(), me as nat, h0, log0, {m});
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
      assert Cand.TakeoverOf(l0.promises, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart,
                             takeoverHi, takeoverOverflow) by {
        reveal Cand.Takeover();
      }
      if ls > maxLogStart {
        maxLogStart := ls;
        maxLogStartFrom := src;
      }
      // Fold the reported votes into takeover: the highest vote per slot.
      Cand.TakeoverAddEmpty(l0.promises, m, reported, R.AbsVotes(takeover[..], logStart as nat), logStart as nat,
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
        invariant Cand.TakeoverOf(l0.promises + {Cand.Part(m, reported, k)}, R.AbsVotes(takeover[..], logStart as nat),
                                  logStart as nat, maxLogStart, takeoverHi, takeoverOverflow)
        modifies this`takeoverHi, this`takeoverOverflow, this`overflowFrom, takeover
        decreases |rest|
      {
        var sv := rest[0];
        rest := rest[1..];
        ghost var arr0 := takeover[..];
        ghost var tk, hi0, ov0 := R.AbsVotes(takeover[..], logStart as nat), takeoverHi, takeoverOverflow;
        if InWindow(sv.slot) {
          var cur := takeover[Idx(sv.slot)];
          R.AbsVotesAt(takeover[..], logStart as nat, sv.slot as nat);
          if cur.NoVote? || BalLt(cur.bal, sv.bal) {
            takeover[Idx(sv.slot)] := Vote(sv.bal, sv.val);
            R.AbsVotesUpdate(arr0, logStart as nat, sv.slot as nat, sv.bal, sv.val);
          }
          if sv.slot + 1 > takeoverHi {
            takeoverHi := sv.slot + 1;
          }
        } else if sv.slot >= logStart {
          takeoverOverflow := true;
          overflowFrom := src;
        }
        R.AbsVotesKeys(arr0, logStart as nat);
        assert {:split_here} true;  // the update apart from the fold's lemma and the invariants
        Cand.TakeoverFold(l0.promises, m, reported, k, tk, logStart as nat, WINDOW as nat, maxLogStart, hi0, ov0,
                          R.AbsVotes(takeover[..], logStart as nat), takeoverHi, takeoverOverflow);
        k := k + 1;
      }
      assert {:split_here} true;  // keeps each part of this proof small
      assert reported[..|reported|] == reported;
      promiseFrom[src] := true;
      promiseCount := promiseCount + 1;
      assert promiseFrom[..] == pf0[src := true];
      leaderAbs := R.Collected(Consts(), l0, m);
      Lead.ProposalsLedNonLeader(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs);
      assert TakeoverTied() by {
        reveal Cand.Takeover();
      }
      Lead.LeadsNonLeader(role, bal, leaderAbs, nextSlot as nat, logStart as nat);
      ghost var mv := R.PromiseMoves(Consts(), h0, m, true)[0];
      assert AbsHost() == mv.post;
      R.TrailSnoc(Consts(), me as nat, h0, log0, {m}, [], h0, log0, mv, sentLog);
      assert [] + [mv] == [mv];
      moves := [mv];
      if promiseCount >= quorum {
        ghost var h1, log1 := AbsHost(), sentLog;
        ghost var more := BecomeLeader();
        R.TrailNet(Consts(), me as nat, h1, log1, {}, {m}, more, AbsHost(), sentLog);
        R.TrailChain(Consts(), me as nat, h0, log0, {m}, moves, h1, log1, more, AbsHost(), sentLog);
        moves := moves + more;
      }
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
              && R.Run(Consts(), me as nat, old(AbsHost()), {m}, moves, AbsHost())
              && R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves))
      ensures R.NoLearns(sentLog[|old(sentLog)|..])
      // What it did, in order (Cr.AcceptTrace): a refusal's Nack; or, voting, the record of its
      // promise when it raises it, the vote's record, then the Accepted.
      ensures Cr.AcceptDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val)
    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
        assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
        Cr.RefuseDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val);
        return;
      }
      assert {:split_here} true;
      if !InWindow(slot) {
        if slot < logStart && src < n && src != me {
          // the slot is in this host's snapshot: the sender lags behind it and needs the snapshot
          out := out.(needSnapshot := out.needSnapshot + [src]);
        }
        Cr.IgnoreDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val);
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
      R.AbsVotesUpdate(old(votes[..]), logStart as nat, slot as nat, b, val);
      R.AllBelowUpdate(R.AbsVotes(old(votes[..]), logStart as nat), slot as nat, S.Vote(b, val), old(voteHi) as nat, voteHi as nat);
      assert {:split_here} true;  // the vote's record and answer apart from the vote
      ghost var trace0, queue0 := sofar.trace, selfQueue;
      Persist(RecVote(slot, b, val));
      Send(b.node, Accepted(b, slot));
      Cr.VoteDid(old(sofar.trace), trace1, trace0, sofar.trace, old(selfQueue), queue0, selfQueue, me, src, old(promised), b,
                 old(logStart), slot, val);
      assert {:split_here} true;  // the refinement apart from what the step did
      // The refinement: ReceiveAccept votes (then StepDown, if it stepped down).
      assert R.MsgRefines(me as nat, b.node as nat, Accepted(b, slot), S.Accepted(me as nat, b.node as nat, b, slot as nat, val));
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
              && R.Run(Consts(), me as nat, h, {m}, moves, h')
              && R.SentBy(moves) == {S.Accepted(me as nat, m.bal.node as nat, m.bal, m.slot, m.val)}
    {
      var h1 := h.(promised := m.bal, votes := h.votes[m.slot := S.Vote(m.bal, m.val)]);
      var mv := R.Move(P.ReceiveAcceptStep(m), {S.Accepted(me as nat, m.bal.node as nat, m.bal, m.slot, m.val)}, h1);
      assert P.HostStep(Consts(), me as nat, h, h1, {m}, mv.sent, mv.step);
      if down {
        R.RunOne(Consts(), me as nat, h1, {m}, R.Move(P.StepDownStep, {}, h'));
        R.RunCons(Consts(), me as nat, h, {m}, mv, [R.Move(P.StepDownStep, {}, h')], h');
      } else {
        R.RunOne(Consts(), me as nat, h, {m}, mv);
        assert [mv] + [] == [mv];
      }
    }

    // An Accepted(b, slot) from src; `a` is its image (its value is not on the wire). A leader
    // of b counts it; once a quorum acknowledged the slot, it is chosen: LearnChosen(slot, v, b,
    // q), v the value proposed there and q those members, reading the Accepted messages counted
    // (`acked`), given that they carry the proposal's value (AckedValues). Otherwise no step.
    method OnAccepted(src: uint64, b: Ballot, slot: uint64, ghost a: S.Message) returns (ghost moves: seq<R.Move>)
      requires Valid()
      requires a.Accepted? && a.src == src as nat && a.dst == me as nat && a.bal == b && a.slot == slot as nat
      modifies Repr
      ensures Valid() && StepGrows() && SameConfig() && old(acked) <= acked <= old(acked) + {a}
      ensures leaderAbs == old(leaderAbs)
      ensures R.AckedValues(acked, leaderAbs) ==>
                R.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), acked, moves, AbsHost(), sentLog)
    {
      ghost var h0, log0 := AbsHost(), sentLog;
      moves := [];
      if role != Leader || b != bal || src >= n || !InWindow(slot) {
        R.TrailNil(Consts(), me as nat, h0, log0, acked);
        return;
      }
      var idx := Idx(slot);
      var p := proposed[idx];
      AckIndexBound(idx, src, n, acks.Length);
      if p.None? || acks[idx * n + src] || committed[idx].Some? {
        R.TrailNil(Consts(), me as nat, h0, log0, acked);
        return;
      }
      ghost var acks0 := acks[..];
      acks[idx * n + src] := true;
      assert acks[..] == acks0[(slot as nat % WINDOW as nat) * n as nat + src as nat := true];
      Lead.AcksAdd(role, bal, acked, acks0, n, logStart as nat, slot as nat, src, a);
      acked := acked + {a};
      R.TrailNil(Consts(), me as nat, h0, log0, acked);
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
        ghost var props := R.AbsCommitted(proposed[..], logStart as nat);
        R.AbsCommittedAt(proposed[..], logStart as nat, slot as nat);
        assert proposed[..][slot as nat % WINDOW as nat] == p;
        assert slot as nat in props && props[slot as nat] == p.val;
        Lead.ProposalsLedHas(props, leaderAbs, slot as nat);
        Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
        R.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
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
        Broadcast(Learn(b, slot), false);
        assert AbsHost() == h2;
        R.LearnBroadcastRefines(sentLog[|log2|..], me, n, b, slot, p.val, acked);
        if R.AckedValues(acked, leaderAbs) {
          ghost var mv := R.Move(P.LearnChosenStep(slot as nat, p.val, b, q), R.CommitAll(me as nat, n as nat, slot as nat, p.val), AbsHost());
          assert P.HostStep(Consts(), me as nat, h1, mv.post, acked, mv.sent, mv.step);
          R.TrailSnoc(Consts(), me as nat, h0, log0, acked, [], h1, log1, mv, sentLog);
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
      ensures Keeps() && sentLog == old(sentLog)
      ensures var h := old(AbsHost());
              if slot as nat in h.votes && h.votes[slot as nat].bal == b then
                var m := S.Commit(src as nat, me as nat, slot as nat, h.votes[slot as nat].val);
                R.Run(Consts(), me as nat, h, {m}, R.CommitMoves(h, old(logStart) as nat + WINDOW as nat, m), AbsHost())
              else AbsHost() == h
    {
      R.AbsVotesKeys(votes[..], logStart as nat);
      if InWindow(slot) {
        R.AbsVotesAt(votes[..], logStart as nat, slot as nat);
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
      ensures R.Run(Consts(), me as nat, h, {m}, R.CommitMoves(h, h.logStart + WINDOW as nat, m), h')
    {
      if m.slot !in h.committed {
        R.RunOne(Consts(), me as nat, h, {m}, R.Move(P.ReceiveCommitStep(m), {}, h'));
      } else {
        R.RunNil(Consts(), me as nat, h, {m});
      }
    }

    // Refines ReceiveCommit (of the Commit sent by `src`, a ghost parameter), see R.CommitMoves.
    method OnCommit(slot: uint64, val: Value, ghost src: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures Keeps() && sentLog == old(sentLog)
      ensures var m := S.Commit(src as nat, me as nat, slot as nat, val);
              R.Run(Consts(), me as nat, old(AbsHost()), {m}, R.CommitMoves(old(AbsHost()), old(logStart) as nat + WINDOW as nat, m), AbsHost())
    {
      R.RunNil(Consts(), me as nat, AbsHost(), {S.Commit(src as nat, me as nat, slot as nat, val)});
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
      ensures SameConfig() && sentLog == old(sentLog)
      ensures R.Run(Consts(), me as nat, old(AbsHost()), {}, R.StepDownMoves(old(AbsHost()), old(role) != Follower && BalLt(old(bal), p)), AbsHost())
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
      ensures SameConfig() && old(sentLog) <= sentLog
      ensures var moves := R.HeartbeatMoves(me as nat, old(AbsHost()), src as nat, b, old(role) != Follower && b != old(bal),
                                            leaderCommit > old(commitUpto) && old(catchUpCooldown) == 0, old(commitUpto) as nat);
              && R.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
              && R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves))
      ensures R.NoLearns(sentLog[|old(sentLog)|..])
    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
        ghost var nack := S.Nack(me as nat, src as nat, promised);
        R.RunOne(Consts(), me as nat, AbsHost(), {}, R.NoSafety(AbsHost(), nack));
        assert sentLog[|old(sentLog)|..] == [Packet(me, src, Nack(promised))];
        R.PacketsRefineOne(Packet(me, src, Nack(promised)), nack, {nack});
        return;
      }
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
      Send(src, HeartbeatAck(b, rs));
      ghost var log1 := sentLog;
      assert log1 == log0 + [Packet(me, src, HeartbeatAck(b, rs))];
      if leaderCommit > commitUpto && catchUpCooldown == 0 {
        Send(src, CatchUp(commitUpto));
        catchUpCooldown := heartbeatTicks;
        assert sentLog == log1 + [Packet(me, src, CatchUp(old(commitUpto)))];
      }
      assert {:split_here} true;  // keeps each half of this proof small
      // The refinement.
      ghost var h0, down := old(AbsHost()), old(role) != Follower && b != old(bal);
      R.StepDownRefines(Consts(), me as nat, h0, {}, down);
      ghost var ack := [Packet(me, src, HeartbeatAck(b, rs))];
      assert R.PacketsRefine(ack, {});
      if leaderCommit > old(commitUpto) && old(catchUpCooldown) == 0 {
        ghost var cu := S.CatchUp(me as nat, src as nat, old(commitUpto) as nat);
        R.RunSnoc(Consts(), me as nat, h0, {}, R.StepDownMoves(h0, down), AbsHost(), R.NoSafety(AbsHost(), cu));
        assert sentLog == old(sentLog) + (ack + [Packet(me, src, CatchUp(old(commitUpto)))]);
        assert sentLog[|old(sentLog)|..] == ack + [Packet(me, src, CatchUp(old(commitUpto)))];
        R.PacketsRefineOne(Packet(me, src, CatchUp(old(commitUpto))), cu, {cu});
        R.PacketsRefineAppend(ack, [Packet(me, src, CatchUp(old(commitUpto)))], {}, {cu});
        assert {} + {cu} == {cu};
      } else {
        assert sentLog == old(sentLog) + ack;
        assert sentLog[|old(sentLog)|..] == ack;
        assert R.StepDownMoves(h0, down) + [] == R.StepDownMoves(h0, down);
      }
    }

    // A HeartbeatAck changes only the leader's read bookkeeping: no protocol step.
    method OnHeartbeatAck(src: uint64, b: Ballot, rs: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && sentLog == old(sentLog) && AbsHost() == old(AbsHost())
    {
      if role != Leader || b != bal || src >= n || rs > readSeq {
        return;
      }
      if rs > readAck[src] {
        readAck[src] := rs;
      }
      UpdateReadConfirmed();
    }

    // The highest read sequence number that a quorum (this leader included) acknowledged.
    method UpdateReadConfirmed()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows()
      ensures AbsSame()
    {
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant i <= n && Valid() && AbsSame()
      {
        var c := readAck[i];
        if c > readConfirmed {
          var count: uint64 := 0;
          var j: uint64 := 0;
          while j < n
            invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
            invariant j <= n && count <= j && Valid() && AbsSame()
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

    // Catch-up replies: one SendCommit per Commit sent; the abstract state is unchanged.
    method OnCatchUp(src: uint64, fromSlot: uint64)
      requires Valid() && src < n
      modifies Repr
      ensures Valid() && PromisedGrows()
      ensures SameConfig() && old(sentLog) <= sentLog && AbsHost() == old(AbsHost())
      ensures exists moves :: && R.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
                              && R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves))
      ensures R.NoLearns(sentLog[|old(sentLog)|..])
    {
      if fromSlot < logStart && src != me && src < n {
        // the slots it lacks are only in this host's snapshot now
        out := out.(needSnapshot := out.needSnapshot + [src]);
      }
      ghost var moves: seq<R.Move> := [];
      R.RunNil(Consts(), me as nat, AbsHost(), {});
      assert R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves));
      var s := if fromSlot > logStart then fromSlot else logStart;
      if s >= commitUpto {
        return;
      }
      var end := if commitUpto - s > CATCHUP_BATCH then s + CATCHUP_BATCH else commitUpto;
      while s < end
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Valid() && Bounds() && logStart <= s <= end <= commitUpto
        invariant SameConfig() && old(sentLog) <= sentLog && AbsHost() == old(AbsHost())
        invariant R.Run(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost())
        invariant R.PacketsRefine(sentLog[|old(sentLog)|..], R.SentBy(moves))
        invariant R.NoLearns(sentLog[|old(sentLog)|..])
        decreases end - s
      {
        var c := committed[Idx(s)];
        if c.Some? {
          ghost var sent0 := sentLog[|old(sentLog)|..];
          Send(src, Commit(s, c.val));
          R.AbsCommittedAt(committed[..], logStart as nat, s as nat);
          ghost var mv := R.CatchUpMove(me as nat, AbsHost(), s as nat, src as nat, c.val);
          ghost var a := S.Commit(me as nat, src as nat, s as nat, c.val);
          assert P.HostStep(Consts(), me as nat, AbsHost(), mv.post, {}, mv.sent, mv.step);
          R.RunSnoc(Consts(), me as nat, old(AbsHost()), {}, moves, AbsHost(), mv);
          assert sentLog[|old(sentLog)|..] == sent0 + [Packet(me, src, Commit(s, c.val))];
          R.PacketsRefineOne(Packet(me, src, Commit(s, c.val)), a, {a});
          R.PacketsRefineAppend(sent0, [Packet(me, src, Commit(s, c.val))], R.SentBy(moves), {a});
          assert R.NoLearns(sent0);
          moves := moves + [mv];
        }
        s := s + 1;
      }
    }

    // ---- a whole step ---------------------------------------------------------------------
    // What a step relies on of the protocol state this host is part of (ImplSystem: the abstraction of
    // a reachable state): the protocol's invariant holds, this host is at AbsHost(), and the
    // Accepted messages it counted are in the network.
    ghost predicate Within(st: P.State)
      reads this, votes, committed
    {
      && PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == AbsHost() && acked <= st.net
    }

    // Every packet this host sent is on the wire of a state with network net.
    ghost predicate SentOnWire(net: set<S.Message>)
      reads this
    {
      forall p | p in sentLog :: OT.OnWire(p, net)
    }

    // A step under way: it started from the state st (this host at h0, its packet log at log0)
    // and has run `moves` so far (R.StepTrail, reading st.net and what it sent itself).
    ghost predicate StepOk(st: P.State, h0: P.Host, log0: seq<Packet>, moves: seq<R.Move>)
      reads this, votes, committed
    {
      && PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0
      && R.StepTrail(Consts(), me as nat, h0, log0, st.net, moves, AbsHost(), sentLog)
      && acked <= st.net + R.SentBy(moves)
      && (forall p | p in log0 :: OT.OnWire(p, st.net))
    }

    // The promised ballot never decreases (PromisedGrows without its bound on acked: a step
    // counts the Accepted it handles).
    twostate predicate StepGrows()
      reads this
    {
      BalLe(old(promised), promised) && SameBases()
    }

    // The message m from src, in a state st the host is part of, whose wire carries it: a
    // trail of this host's protocol steps reading st.net (each handler's theorem, its premise
    // discharged by the protocol's invariant: ImplSystem.AckedValuesFromInv, LearnValueFromInv).
    method Dispatch(src: uint64, m: Msg, ghost st: P.State) returns (ghost moves: seq<R.Move>)
      requires Valid() && src < n
      modifies Repr
      ensures Valid() && StepGrows() && SameConfig()
      ensures old(Within(st)) && OT.OnWire(Packet(src, me, m), st.net) ==>
                && acked <= st.net
                && R.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), st.net, moves, AbsHost(), sentLog)
      ensures m.Prepare? ==> exists q: Packet :: sofar.trace == old(sofar.trace) + Cr.PromiseTrace(BalLt(old(promised), m.bal), m.bal, q)
      ensures m.Prepare? && src != me ==> selfQueue == old(selfQueue)
      ensures m.Accept? ==> Cr.AcceptDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), m.bal,
                                          old(logStart), m.slot, m.val)
    {
      ghost var ok := Within(st) && OT.OnWire(Packet(src, me, m), st.net);
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      ghost var src', me' := src as nat, me as nat;
      ghost var follower := role == Follower;
      ghost var bal0, commit0, cool0 := bal, commitUpto, catchUpCooldown;
      moves := [];
      match m {
        case Prepare(b, fromSlot) =>
          OnPrepare(src, b, fromSlot);
          ghost var a := S.Prepare(src', me', b);
          moves := R.PrepareMoves(me', h0, !follower && b != bal0, a, fromSlot as nat);
          if ok {
            R.NoLearnsBacked(sentLog[|log0|..], R.SentBy(moves), {a});
            R.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
            R.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Promise(b, ls, reported) =>
          moves := OnPromise(src, b, ls, reported);
          if ok {
            ghost var a := S.Promise(src', me', b, ls as nat, R.SlotVotesMap(reported));
            R.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Accept(b, slot, val) =>
          OnAccept(src, b, slot, val);
          ghost var a := S.Accept(src', me', b, slot as nat, val);
          moves := R.AcceptMoves(me', h0, h0.logStart + WINDOW as nat, !follower && b != bal0, a);
          if ok {
            R.NoLearnsBacked(sentLog[|log0|..], R.SentBy(moves), {a});
            R.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
            R.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Accepted(b, slot) =>
          // Its image: some Accepted(b, slot, v) from src in the network (OnWire).
          ghost var a: S.Message := S.Accepted(src', me', b, slot as nat, []);
          if ok {
            assert R.PacketRefines(Packet(src, me, m), st.net);
            a :| a in st.net && R.MsgRefines(src', me', m, a);
            Sy.AckedValuesFromInv(c, st, me', acked + {a});
          }
          ghost var acked0 := acked;
          moves := OnAccepted(src, b, slot, a);
          if ok {
            assert acked <= acked0 + {a} && acked0 + {a} <= st.net;
            assert R.AckedValues(acked, leaderAbs);
            R.TrailNet(c, me', h0, log0, acked, st.net, moves, AbsHost(), sentLog);
          }
        case Learn(b, slot) =>
          ghost var hv := h0.votes;
          if ok && slot as nat in hv && hv[slot as nat].bal == b {
            Sy.LearnValueFromInv(c, st, Packet(src, me, m));
          }
          OnLearn(b, slot, src);
          if ok {
            if slot as nat in hv && hv[slot as nat].bal == b {
              ghost var a := S.Commit(src', me', slot as nat, hv[slot as nat].val);
              moves := R.CommitMoves(h0, h0.logStart + WINDOW as nat, a);
              assert sentLog[|log0|..] == [];
              R.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
              R.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
            } else {
              R.TrailNil(c, me', h0, log0, st.net);
            }
          }
        case Commit(slot, val) =>
          OnCommit(slot, val, src);
          ghost var a := S.Commit(src', me', slot as nat, val);
          moves := R.CommitMoves(h0, h0.logStart + WINDOW as nat, a);
          if ok {
            assert sentLog[|log0|..] == [];
            R.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
            R.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Nack(pr) =>
          OnNack(pr);
          moves := R.StepDownMoves(h0, !follower && BalLt(bal0, pr));
          if ok {
            assert sentLog[|log0|..] == [];
            R.TrailOf(c, me', h0, log0, {}, moves, AbsHost(), sentLog);
            R.TrailNet(c, me', h0, log0, {}, st.net, moves, AbsHost(), sentLog);
          }
        case Heartbeat(b, cu, rs) =>
          OnHeartbeat(src, b, cu, rs);
          moves := R.HeartbeatMoves(me', h0, src', b, !follower && b != bal0, cu > commit0 && cool0 == 0, commit0 as nat);
          if ok {
            R.NoLearnsBacked(sentLog[|log0|..], R.SentBy(moves), {});
            R.TrailOf(c, me', h0, log0, {}, moves, AbsHost(), sentLog);
            R.TrailNet(c, me', h0, log0, {}, st.net, moves, AbsHost(), sentLog);
          }
        case HeartbeatAck(b, rs) =>
          OnHeartbeatAck(src, b, rs);
          R.TrailNil(c, me', h0, log0, st.net);
        case CatchUp(fromSlot) =>
          OnCatchUp(src, fromSlot);
          moves :| R.Run(c, me', h0, {}, moves, AbsHost()) && R.PacketsRefine(sentLog[|log0|..], R.SentBy(moves));
          if ok {
            R.NoLearnsBacked(sentLog[|log0|..], R.SentBy(moves), {});
            R.TrailOf(c, me', h0, log0, {}, moves, AbsHost(), sentLog);
            R.TrailNet(c, me', h0, log0, {}, st.net, moves, AbsHost(), sentLog);
          }
      }
    }

    // Handle the messages this host sent to itself during the step (bounded: a chain of
    // self-deliveries is short; past the limit they are dropped, like lost messages). Each is
    // on the wire of the state the step has reached (sent before the step, or by its moves so
    // far), where the protocol's invariant holds (ImplSystem.InvAfterRun): the step's trail
    // grows by the handler's.
    method DrainSelf(ghost st: P.State, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves0: seq<R.Move>)
      returns (ghost moves: seq<R.Move>)
      requires Valid()
      modifies Repr
      ensures Valid() && StepGrows() && SameConfig()
      ensures old(selfQueue) == [] ==> unchanged(this, votes, committed)
      ensures old(selfQueue) == [] ==> AbsHost() == old(AbsHost()) && sentLog == old(sentLog) && SameConfig()
      ensures old(StepOk(st, h0, log0, moves0)) ==> StepOk(st, h0, log0, moves)
      ensures moves0 <= moves
      // A first self-message whose handling begins with a record that needs a sync (its own
      // vote, its own promise): the step's early packets are those it had sent before.
      ensures old(selfQueue) != [] && FirstRecord(old(selfQueue)[0], old(promised), old(logStart)) != [] ==>
                out.sync && out.early == old(out.early)
    {
      ghost var ok := StepOk(st, h0, log0, moves0);
      ghost var c := Consts();
      ghost var t0, q0, pr0, ls0, e0 := sofar.trace, selfQueue, promised, logStart, out.early;
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      moves := moves0;
      var fuel := SELF_DELIVERY_LIMIT;
      while |selfQueue| > 0 && fuel > 0
        invariant BalLe(old(promised), promised) && SameConfig() && Consts() == c && SameBases()
        invariant Valid()
        invariant old(selfQueue) == [] ==> unchanged(this, votes, committed)
        invariant ok ==> StepOk(st, h0, log0, moves)
        invariant moves0 <= moves
        invariant fuel == SELF_DELIVERY_LIMIT ==> selfQueue == q0 && sofar.trace == t0 && promised == pr0 && logStart == ls0
        invariant fuel < SELF_DELIVERY_LIMIT && q0 != [] && FirstRecord(q0[0], pr0, ls0) != [] ==> out.sync && out.early == e0
        decreases fuel
      {
        var m := selfQueue[0];
        ghost var p := Packet(me, me, m);
        assert p in sentLog;  // SelfLogged
        ghost var h1, log1 := AbsHost(), sentLog;
        ghost var stk := if ok then P.State(st.hosts[me := h1], st.net + R.SentBy(moves)) else st;
        if ok {
          R.StepTrailIs(c, me as nat, h0, log0, st.net, moves, h1, log1);
          Sy.InvAfterRun(c, st, me as nat, st.net, moves, h1);
          R.StepTrailHas(c, me as nat, h0, log0, st.net, moves, h1, log1, p);
          if p in log0 {
            R.PacketRefinesMono(p, st.net, stk.net);
            R.LearnBackedMono(p, st.net, st.net, stk.net, stk.net);
          } else {
            R.PacketRefinesMono(p, R.SentBy(moves), stk.net);
            R.LearnBackedMono(p, R.SentBy(moves), st.net + R.SentBy(moves), stk.net, stk.net);
          }
          assert Within(stk) && OT.OnWire(p, stk.net);
        }
        ghost var first, sq1 := fuel == SELF_DELIVERY_LIMIT, selfQueue[1..];
        selfQueue := selfQueue[1..];
        assert AbsHost() == h1 && sentLog == log1;
        ghost var more := Dispatch(me, m, stk);
        if first && FirstRecord(m, pr0, ls0) != [] {
          FirstRecordDid(m, t0, sq1, pr0, ls0);
          FirstRecordSyncs(t0, m, pr0, ls0);
        }
        if ok {
          R.StepTrailChain(c, me as nat, h0, log0, st.net, moves, h1, log1, more, AbsHost(), sentLog);
          R.SentByAppend(moves, more);
          moves := moves + more;
        }
        fuel := fuel - 1;
      }
      selfQueue := [];
    }

    // The record that handling m, a message this host sent itself, emits before anything else,
    // when its promise was pr0 and its window started at ls0: an Accept at its promised ballot
    // in its window, the vote (its own proposal: Propose, a takeover); a Prepare above its
    // promise, the promise (its own election).
    ghost function FirstRecord(m: Msg, pr0: Ballot, ls0: uint64): seq<O.Out> {
      if m.Accept? && m.bal == pr0 && ls0 <= m.slot && m.slot - ls0 < WINDOW then [O.Emitted(RecVote(m.slot, m.bal, m.val))]
      else if m.Prepare? && BalLt(pr0, m.bal) then [O.Emitted(RecPromised(m.bal))]
      else []
    }

    // Once the trace is past FirstRecord (a record that needs a sync), the step's early packets
    // are those of t0, and it is synced.
    lemma FirstRecordSyncs(t0: seq<O.Out>, m: Msg, pr0: Ballot, ls0: uint64)
      requires Valid() && FirstRecord(m, pr0, ls0) != [] && t0 + FirstRecord(m, pr0, ls0) <= sofar.trace
      ensures out.sync && out.early == O.Early(me, t0)
    {
      var r := FirstRecord(m, pr0, ls0)[0].r;
      assert FirstRecord(m, pr0, ls0) == [O.Emitted(r)] && NeedsSync(r);
      O.EarlyBeforeSync(me, t0, r, sofar.trace);
      O.Snoc(me, t0, O.Emitted(r));
      O.Prefix(me, t0 + [O.Emitted(r)], sofar.trace);
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
    }

    // What Dispatch of m from this host itself did to the trace t0, as FirstRecord says.
    lemma FirstRecordDid(m: Msg, t0: seq<O.Out>, sq0: seq<Msg>, pr0: Ballot, ls0: uint64)
      requires FirstRecord(m, pr0, ls0) != []
      requires m.Prepare? ==> exists q: Packet :: sofar.trace == t0 + Cr.PromiseTrace(BalLt(pr0, m.bal), m.bal, q)
      requires m.Accept? ==> Cr.AcceptDid(t0, sofar.trace, sq0, selfQueue, me, me, pr0, m.bal, ls0, m.slot, m.val)
      ensures t0 + FirstRecord(m, pr0, ls0) <= sofar.trace
    {
      if m.Accept? && m.bal == pr0 && ls0 <= m.slot && m.slot - ls0 < WINDOW {
        Cr.AcceptDidIs(t0, sofar.trace, sq0, selfQueue, me, me, pr0, m.bal, ls0, m.slot, m.val);
        var q :| sofar.trace == t0 + Cr.AcceptTrace(BalLt(m.bal, pr0), ls0, BalLt(pr0, m.bal), m.bal, m.slot, m.val, q);
        assert sofar.trace == t0 + [O.Emitted(RecVote(m.slot, m.bal, m.val))] + [O.Sent(q)];
      } else if m.Prepare? && BalLt(pr0, m.bal) {
        var q :| sofar.trace == t0 + Cr.PromiseTrace(true, m.bal, q);
        assert sofar.trace == t0 + [O.Emitted(RecPromised(m.bal))] + [O.Sent(q)];
      }
    }

    // A step begins with empty output buffers and an empty trace, from the logs as they are.
    method BeginStep()
      requires Valid()
      modifies this
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked)
      ensures out.records == [] && out.packets == [] && out.commits == []
      ensures Unchanged() && selfQueue == [] && sentLog == old(sentLog) && recLog == old(recLog)
      ensures sofar.trace == [] && sofar.sentBase == sentLog && sofar.recBase == recLog && sofar.commitBase == commitUpto
    {
      OT.TiedNone(sentLog, recLog, me);
      OT.CommitsTiedNone(R.AbsCommitted(committed[..], logStart as nat), logStart, commitUpto);
      sofar := O.Step([], sentLog, recLog, commitUpto);
      out := NoOutput;
      selfQueue := [];
    }

    // The step's Ready: its output buffers, which are all it did (ReadyIs). They are emptied,
    // and the next step starts from here.
    method TakeReady(accepted: bool) returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies this
      ensures Valid() && Unchanged() && sentLog == old(sentLog) && recLog == old(recLog) && selfQueue == old(selfQueue)
      ensures ReadyIs(r, t, old(sofar.sentBase), old(sofar.recBase)) && r.accepted == accepted
      ensures CommitsAre(r, old(sofar.commitBase))
      ensures sofar.trace == [] && sofar.sentBase == sentLog && sofar.recBase == recLog && sofar.commitBase == commitUpto
      ensures t == old(sofar.trace) && r.early == old(out.early)
    {
      r := out.(accepted := accepted);
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      OT.TiedNone(sentLog, recLog, me);
      ghost var C := R.AbsCommitted(committed[..], logStart as nat);
      OT.CommitsTiedIs(out.commits, C, sofar.commitBase, logStart, commitUpto);
      R.HasAllSub(C, logStart as nat, commitUpto as nat, sofar.commitBase as nat, commitUpto as nat);
      OT.CommitsTiedNone(C, logStart, commitUpto);
      t := sofar.trace;
      sofar := O.Step([], sentLog, recLog, commitUpto);
      out := NoOutput;
    }

    // A step ends by handling what it sent itself; its Ready is all it did (ReadyIs), and the
    // next step starts from here.
    method EndStep(accepted: bool, ghost st: P.State, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves0: seq<R.Move>)
      returns (r: Ready, ghost moves: seq<R.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised)
      ensures old(selfQueue) == [] ==> AbsHost() == old(AbsHost()) && sentLog == old(sentLog) && SameConfig() && acked == old(acked)
      ensures old(StepOk(st, h0, log0, moves0)) ==> StepOk(st, h0, log0, moves)
      ensures ReadyIs(r, t, old(sofar.sentBase), old(sofar.recBase)) && r.accepted == accepted
      ensures CommitsAre(r, old(sofar.commitBase))
      ensures sofar.trace == [] && sofar.sentBase == sentLog && sofar.recBase == recLog && sofar.commitBase == commitUpto
      ensures moves0 <= moves
      ensures old(selfQueue) == [] ==> t == old(sofar.trace)
      ensures SameConfig()
      ensures old(selfQueue) != [] && FirstRecord(old(selfQueue)[0], old(promised), old(logStart)) != [] ==>
                r.early == old(out.early)
    {
      moves := DrainSelf(st, h0, log0, moves0);
      ghost var h, log, ack := AbsHost(), sentLog, acked;
      r, t := TakeReady(accepted);
      assert AbsHost() == h && sentLog == log && acked == ack;
    }

    // ---- the step API (what the extension exposes) --------------------------------------
    // Each step is given, as a ghost argument, the protocol state st its host is part of (in
    // ImplSystem: the abstraction of a reachable state, whose wire holds every packet sent).
    // Then the step is a run of its host's protocol steps from there (StepOk: R.StepTrail,
    // ImplStep's premise, see ImplSystem.StepTrailIsImplStep), after which the Accepted
    // messages the host counted are in the network it reached.

    // What a step relies on of st: the host is part of it, and every packet it sent is on its
    // wire.
    ghost predicate StepFrom(st: P.State)
      reads this, votes, committed
    {
      Within(st) && SentOnWire(st.net)
    }

    // A step that ran a trail from st (where the host was at h0, its packet log at log0).
    lemma StepStart(st: P.State, h0: P.Host, log0: seq<Packet>, moves: seq<R.Move>)
      requires PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0 && forall p | p in log0 :: OT.OnWire(p, st.net)
      requires R.Trail(Consts(), me as nat, h0, log0, st.net, moves, AbsHost(), sentLog) && acked <= st.net
      ensures StepOk(st, h0, log0, moves)
    {
      R.StepTrailNil(Consts(), me as nat, h0, log0, st.net);
      assert st.net + R.SentBy([]) == st.net;
      R.StepTrailChain(Consts(), me as nat, h0, log0, st.net, [], h0, log0, moves, AbsHost(), sentLog);
      assert [] + moves == moves;
    }

    method Receive(p: Packet, ghost st: P.State) returns (r: Ready, ghost moves: seq<R.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures old(StepFrom(st)) && OT.OnWire(p, st.net) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
      // A Prepare from another member: every cut of its records is Covered (CrashPartWay).
      ensures p.dst == me && p.src < n && p.src != me && p.msg.Prepare? ==> Cr.AllCovered(r.records, r.early, old(sentLog))
      // An Accept from another member (not at this host's own ballot): every cut is Covered but
      // the one between a raised promise's record and the vote's, a PromiseCut (Cr.CrashAtPromise).
      ensures p.dst == me && p.src < n && p.src != me && p.msg.Accept? && p.msg.bal.node != me ==>
                forall k: nat | k <= |r.records| ::
                  Cr.Covered(r.records, r.early, old(sentLog), k) || Cr.PromiseCut(r.records, r.early, old(sentLog), k, old(promised))
    {
      ghost var ok := StepFrom(st) && OT.OnWire(p, st.net);
      BeginStep();
      ghost var h0, log0 := AbsHost(), sentLog;
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      if ok {
        R.TrailNil(Consts(), me as nat, h0, log0, st.net);
      }
      ghost var q: Packet, pr0, ls0 := p, promised, logStart;
      if p.dst == me && p.src < n && p.src != me {
        moves := Dispatch(p.src, p.msg, st);
        if p.msg.Prepare? {
          q :| sofar.trace == Cr.PromiseTrace(BalLt(pr0, p.msg.bal), p.msg.bal, q);
        }
        if p.msg.Accept? {
          Cr.AcceptDidIs([], sofar.trace, [], selfQueue, me, p.src, pr0, p.msg.bal, ls0, p.msg.slot, p.msg.val);
          q :| sofar.trace == Cr.AcceptTrace(BalLt(p.msg.bal, pr0), ls0, BalLt(pr0, p.msg.bal), p.msg.bal, p.msg.slot, p.msg.val, q);
        }
      }
      if ok {
        StepStart(st, h0, log0, moves);
      }
      ghost var trace := sofar.trace;
      r, moves, t := EndStep(false, st, h0, log0, moves);
      if p.dst == me && p.src < n && p.src != me && p.msg.Prepare? {
        assert t == Cr.PromiseTrace(BalLt(pr0, p.msg.bal), p.msg.bal, q);
        Cr.PromiseTraceCovered(me, BalLt(pr0, p.msg.bal), p.msg.bal, q, log0);
      }
      if p.dst == me && p.src < n && p.src != me && p.msg.Accept? && p.msg.bal.node != me {
        assert t == Cr.AcceptTrace(BalLt(p.msg.bal, pr0), ls0, BalLt(pr0, p.msg.bal), p.msg.bal, p.msg.slot, p.msg.val, q);
        Cr.AcceptTraceCovered(me, BalLt(p.msg.bal, pr0), ls0, BalLt(pr0, p.msg.bal), p.msg.bal, p.msg.slot, p.msg.val, q, log0, pr0);
      }
    }

    method Tick(ghost st: P.State) returns (r: Ready, ghost moves: seq<R.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures old(StepFrom(st)) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
    {
      ghost var ok := StepFrom(st);
      BeginStep();
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      R.TrailNil(c, me as nat, h0, log0, {});
      if ticks < TICKS_LIMIT * 4 {
        ticks := ticks + 1;
      }
      if catchUpCooldown > 0 {
        catchUpCooldown := catchUpCooldown - 1;
      }
      assert AbsHost() == h0 && sentLog == log0 && acked == old(acked);
      if role == Leader {
        if ticks >= heartbeatTicks {
          moves := SendHeartbeats();
        }
      } else if ticks >= electionTimeout {
        ghost var seen := BalMax(promised, maxSeen);
        ghost var okb := seen.round < UINT64_MAX - 1;
        moves := R.ElectionMoves(me as nat, n as nat, h0, if okb then NextBallot(seen, me) else Zero, okb);
        StartElection();
        R.NoLearnsBacked(sentLog[|log0|..], R.SentBy(moves), {});
        R.TrailOf(c, me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
      }
      if ok {
        R.TrailNet(c, me as nat, h0, log0, {}, st.net, moves, AbsHost(), sentLog);
        StepStart(st, h0, log0, moves);
      }
      r, moves, t := EndStep(false, st, h0, log0, moves);
    }

    method Propose(val: Value, ghost st: P.State) returns (r: Ready, ghost moves: seq<R.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      // An accepted value is proposed as it is: the step's first protocol move sends Accepts of val.
      ensures r.accepted ==> |moves| > 0 && moves[0].step.SendAcceptStep? && moves[0].step.val == val
      // The step receives the client's request for val (ImplSystem.ClientSends).
      ensures old(StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
      // The cut before its own vote is a crash after its SendAccept, its Accepts sent (Cr.CutAtPoint).
      ensures r.accepted && old(StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net) ==>
                exists pt :: Cr.PointOf(Consts(), me as nat, old(AbsHost()), old(sentLog), st.net, old(recLog), t, pt)
                             && Cr.CutAtPoint(me, t, old(sentLog), pt, 0)
    {
      ghost var ok0 := StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net;
      ghost var req := {S.Request(me as nat, me as nat, val)};
      BeginStep();
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok0 ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      R.TrailNil(c, me as nat, h0, log0, req);
      var ok := false;
      ghost var slot0 := nextSlot;
      if role == Leader && promised == bal && nextSlot - logStart < WINDOW {
        var slot := nextSlot;
        Lead.LeadsFree(bal, leaderAbs, slot as nat, logStart as nat, val);
        Lead.LeadsMono(role, bal, leaderAbs, slot as nat, logStart as nat, slot as nat + 1, logStart as nat);
        nextSlot := nextSlot + 1;
        assert AbsHost() == h0 && sentLog == log0;
        assert S.Requested(req, val);
        ghost var mv := ProposeAt(slot, val, req);
        R.NoLearnsBacked(sentLog[|log0|..], mv.sent, req);
        R.TrailSnoc(c, me as nat, h0, log0, req, [], h0, log0, mv, sentLog);
        assert [] + [mv] == [mv];
        moves := [mv];
        ok := true;
      }
      ghost var pt := Cr.Point(moves, AbsHost(), sofar.trace);
      ghost var q1, pr1, ls1, e1 := selfQueue, promised, logStart, out.early;
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      assert e1 == O.Early(me, pt.trace);
      if ok0 {
        R.TrailNet(c, me as nat, h0, log0, req, st.net, moves, AbsHost(), sentLog);
        StepStart(st, h0, log0, moves);
        assert R.StepTrail(c, me as nat, h0, log0, st.net, pt.moves, pt.host, log0 + O.Sends(pt.trace));
        assert Replays() && recLog == old(recLog) + O.Records(pt.trace);
        assert Cr.Rebuilt(old(recLog) + O.Records(pt.trace)) == pt.host.(leader := P.NotLeader);
      }
      r, moves, t := EndStep(ok, st, h0, log0, moves);
      if ok && ok0 {
        // The point after its Accepts left, before its vote: the vote is the first record.
        assert q1 == [Accept(pr1, slot0, val)] && q1[0] == Accept(pr1, slot0, val);
        assert FirstRecord(q1[0], pr1, ls1) == [O.Emitted(RecVote(slot0, pr1, val))];
        assert O.Early(me, t) == r.early == e1 == O.Early(me, pt.trace);
        forall p | p in O.Early(me, t) ensures p in O.Sends(pt.trace) {
          Cr.EarlyIsSent(me, pt.trace, p);
        }
        assert O.Records(pt.trace) == [];
        assert Cr.PointOf(c, me as nat, h0, log0, st.net, old(recLog), t, pt);
        assert Cr.CutAtPoint(me, t, log0, pt, 0);
      }
    }

    // Leader: start confirming that it still leads; reads that arrived before this call may be
    // served once readConfirmed >= the returned number and commitUpto >= the returned slot.
    method ConfirmRead(ghost st: P.State) returns (r: Ready, seqNo: uint64, readSlot: uint64, ghost moves: seq<R.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures old(StepFrom(st)) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
    {
      ghost var ok := StepFrom(st);
      BeginStep();
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      R.TrailNil(c, me as nat, h0, log0, {});
      seqNo := 0;
      readSlot := nextSlot;
      if role == Leader && readSeq < UINT64_MAX {
        Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
        readSeq := readSeq + 1;
        seqNo := readSeq;
        readAck[me] := readSeq;
        assert AbsHost() == h0 && sentLog == log0;
        // The Heartbeats: a SendNoSafety step each (read confirmation has no protocol role).
        Broadcast(Heartbeat(bal, commitUpto, readSeq), false);
        R.BeatRefines(c, h0, {}, me, n, bal, commitUpto, readSeq, sentLog[|log0|..]);
        moves := R.BeatMoves(h0, me as nat, n as nat, bal, commitUpto as nat);
        R.TrailOf(c, me as nat, h0, log0, {}, moves, h0, sentLog);
        UpdateReadConfirmed();
        ticks := 0;
      }
      if ok {
        R.TrailNet(c, me as nat, h0, log0, {}, st.net, moves, AbsHost(), sentLog);
        StepStart(st, h0, log0, moves);
      }
      r, moves, t := EndStep(false, st, h0, log0, moves);
    }

    // A ReadIndex request from member src, which had promised exactly b when it sent it (after
    // the reads it asks for arrived there). With three members (a quorum of two), this leader
    // and src are a quorum neither of which had promised a ballot above this leader's when
    // those reads arrived; a newer leader needs the promise of one of them, so none committed
    // anything before the reads, and nextSlot covers every slot this leader may have committed
    // or re-proposed: the reads may be served once applied up to the returned slot, with no
    // heartbeat round. Returns 0 when that does not hold (confirm with ConfirmRead instead).
    // No state changes: the method only answers.
    method ReadIndexAttested(src: uint64, b: Ballot) returns (readSlot: uint64)
      requires Valid()
      ensures readSlot != 0 ==> && role == Leader && b == bal && promised == bal && quorum == 2
                                && src < n && src != me && readSlot == nextSlot
    {
      readSlot := 0;
      if role == Leader && b == bal && promised == bal && quorum == 2 && src < n && src != me {
        readSlot := nextSlot;
      }
    }

    // Forget slots below `upto` (the shim has them in a snapshot). Only committed slots.
    // Refines the protocol's Truncate(upto) when it truncates; otherwise no step.
    method Truncate(upto: uint64) returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures SameConfig() && sentLog == old(sentLog)
      ensures var ok := old(logStart) < upto <= old(commitUpto) && upto <= SLOT_LIMIT;
              R.Run(Consts(), me as nat, old(AbsHost()), {}, R.TruncateMoves(old(AbsHost()), upto as nat, ok), AbsHost())
    {
      R.RunNil(Consts(), me as nat, AbsHost(), {});
      BeginStep();
      if logStart < upto && upto <= commitUpto && upto <= SLOT_LIMIT {
        R.TruncateRefines(Consts(), me as nat, AbsHost(), upto as nat, commitUpto as nat);
        R.HasAllSub(R.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat,
                    upto as nat, commitUpto as nat);
        DropBelow(upto);
        Persist(RecTruncate(upto));
      }
      ghost var moves: seq<R.Move>;
      r, moves, t := EndStep(false, P.State([], {}), AbsHost(), sentLog, []);
    }

    // Abstractly: the protocol's truncation at upto (the caller knows [logStart, upto) committed).
    method DropBelow(upto: uint64)
      requires Shape() && VotesBelowHi() && CandidateTied() && TakeoverTied() && LeaderTied() && ProposedTied() && AcksTied()
      requires SelfLogged() && OutTied() && CommitsTied() && upto <= sofar.commitBase
      requires logStart < upto <= commitUpto && upto <= SLOT_LIMIT
      requires R.HasAll(R.AbsCommitted(committed[..], logStart as nat), upto as nat, commitUpto as nat)
      modifies Repr
      ensures Valid0() && PromisedGrows() && logStart == upto && recLog == old(recLog)
      ensures Keeps() && sentLog == old(sentLog) && selfQueue == old(selfQueue) && sofar.trace == old(sofar.trace)
      ensures promised == old(promised) && commitUpto == old(commitUpto)
      ensures var h := old(AbsHost());
              AbsHost() == h.(logStart := upto as nat, votes := P.VotesFrom(h.votes, upto as nat),
                              committed := R.CommittedFrom(h.committed, upto as nat))
    {
      var s := logStart;
      R.SameRefl(votes[..], logStart as nat, logStart as nat + WINDOW as nat);
      R.SameRefl(committed[..], logStart as nat, logStart as nat + WINDOW as nat);
      R.SameRefl(takeover[..], logStart as nat, logStart as nat + WINDOW as nat);
      R.SameRefl(proposed[..], logStart as nat, logStart as nat + WINDOW as nat);
      while s < upto
        invariant BalLe(old(promised), promised) && acked <= old(acked) && SameBases()
        invariant Shape() && VotesBelowHi() && CandidateTied() && LeaderTied() && Bounds() && logStart <= s <= upto
        invariant R.Emptied(votes[..], logStart as nat, s as nat)
        invariant R.EmptiedC(committed[..], logStart as nat, s as nat)
        invariant R.Emptied(takeover[..], logStart as nat, s as nat)
        invariant R.EmptiedC(proposed[..], logStart as nat, s as nat)
        invariant R.Same(proposed[..], old(proposed[..]), s as nat, logStart as nat + WINDOW as nat)
        invariant sentLog == old(sentLog) && acked == old(acked)
        invariant forall k | 0 <= k < acks.Length :: acks[k] ==> old(acks[k])
        invariant forall t: nat, j: uint64 | logStart as nat <= t < s as nat && j < n :: !Lead.AckAt(acks[..], n, t, j)
        invariant R.Same(votes[..], old(votes[..]), s as nat, logStart as nat + WINDOW as nat)
        invariant R.Same(committed[..], old(committed[..]), s as nat, logStart as nat + WINDOW as nat)
        invariant R.Same(takeover[..], old(takeover[..]), s as nat, logStart as nat + WINDOW as nat)
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
        R.EmptiedExtend(before, votes[..], logStart as nat, s as nat);
        R.EmptiedCExtend(beforeC, committed[..], logStart as nat, s as nat);
        R.EmptiedExtend(beforeT, takeover[..], logStart as nat, s as nat);
        R.EmptiedCExtend(beforeP, proposed[..], logStart as nat, s as nat);
        R.SameStep(beforeP, proposed[..], old(proposed[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, None);
        R.SameStep(before, votes[..], old(votes[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, NoVote);
        R.SameStep(beforeC, committed[..], old(committed[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, None);
        R.SameStep(beforeT, takeover[..], old(takeover[..]), logStart as nat, s as nat, logStart as nat + WINDOW as nat, NoVote);
        s := s + 1;
      }
      // The slots entering the window share their indices with the ones just emptied.
      R.AbsVotesTruncate(old(votes[..]), votes[..], logStart as nat, upto as nat);
      R.AbsCommittedTruncate(old(committed[..]), committed[..], logStart as nat, upto as nat);
      OT.CommitsTiedFrom(out.commits, R.AbsCommitted(old(committed[..]), logStart as nat), sofar.commitBase, logStart, commitUpto, upto);
      R.AllBelowFrom(old(AbsHost()).votes, upto as nat, voteHi as nat, if voteHi < upto then upto as nat else voteHi as nat);
      R.HasAllFrom(R.AbsCommitted(old(committed[..]), logStart as nat), upto as nat, upto as nat, commitUpto as nat);
      R.AbsVotesTruncate(old(takeover[..]), takeover[..], logStart as nat, upto as nat);
      Cand.TakeoverTruncate(role, leaderAbs, R.AbsVotes(old(takeover[..]), logStart as nat), logStart as nat, maxLogStart,
                            takeoverHi, takeoverOverflow, upto as nat, if takeoverHi < upto then upto else takeoverHi);
      Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, nextSlot as nat, upto as nat);
      R.AbsCommittedTruncate(old(proposed[..]), proposed[..], logStart as nat, upto as nat);
      Lead.ProposalsSentMono(role, R.AbsCommitted(old(proposed[..]), logStart as nat), me, n, bal, sentLog,
                             R.AbsCommitted(proposed[..], upto as nat), sentLog);
      Lead.ProposalsLedSub(role, R.AbsCommitted(old(proposed[..]), logStart as nat), leaderAbs, R.AbsCommitted(proposed[..], upto as nat));
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
      R.AbsVotesClear(old(votes[..]), logStart as nat, idx as nat, voteHi as nat);
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

    // A crash part-way through a whole step (Receive, Tick, Propose, ConfirmRead: after it,
    // StepOk and ReadyIs hold), the driver having made only its first k records durable, with
    // the packets that may have left by then (pkts) on the wire: for the cuts Cr.Covered, a
    // system step from the state the step began in (st, whose wire holds the packets sent
    // before) to the one whose host restarted from the records before the step (recs0, which
    // rebuilt its host h0 then: Replays()) and those k (Cr.CrashPartWay).
    lemma CrashPartWay(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                       moves: seq<R.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && StepOk(st, h0, log0, moves) && ReadyIs(r, t, log0, recs0)
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires k <= |r.records|
      requires Cr.Covered(r.records, r.early, log0, k)
               || exists pt :: Cr.PointOf(Consts(), me as nat, h0, log0, st.net, recs0, t, pt) && Cr.CutAtPoint(me, t, log0, pt, k)
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      s' := CrashCut(st, wire, h0, log0, recs0, moves, r, t, k, pkts);
    }

    // The same for a step that sends nothing and is a run of its host's steps (Truncate,
    // InstallSnapshot: their R.Run; FinishRecovery: the empty run), from any state st whose
    // host is at h0: it has no early packet, so the cut before its records is Covered too
    // (Truncate and InstallSnapshot emit one record: every cut of theirs is one of the two).
    lemma QuietCrashPartWay(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                            moves: seq<R.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && ReadyIs(r, t, log0, recs0) && sentLog == log0
      requires P.WF(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0
      requires R.Run(Consts(), me as nat, h0, {}, moves, AbsHost())
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires k <= |r.records| && (k == 0 || Cr.AfterLastSync(r.records, k))
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      R.RunStepTrail(Consts(), me as nat, h0, {}, st.net, moves, AbsHost(), sentLog);
      O.EarlyThenLate(me, t);
      assert O.Sends(t) == [] by {
        assert log0 + O.Sends(t) == log0 + [];
      }
      reveal O.ToOthers();
      assert r.early == [];
      s' := CrashCut(st, wire, h0, log0, recs0, moves, r, t, k, pkts);
    }

    // What the two lemmas above share: the step's trail from st, and its Ready.
    lemma CrashCut(st: P.State, wire: set<Packet>, h0: P.Host, log0: seq<Packet>, recs0: seq<Record>,
                   moves: seq<R.Move>, r: Ready, t: seq<O.Out>, k: nat, pkts: seq<Packet>) returns (s': Sy.Sys)
      requires Valid() && ReadyIs(r, t, log0, recs0)
      requires P.WF(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0
      requires R.StepTrail(Consts(), me as nat, h0, log0, st.net, moves, AbsHost(), sentLog)
      requires Cr.Rebuilt(recs0) == h0.(leader := P.NotLeader) && forall p | p in log0 :: p in wire
      requires k <= |r.records|
      requires Cr.Covered(r.records, r.early, log0, k)
               || exists pt :: Cr.PointOf(Consts(), me as nat, h0, log0, st.net, recs0, t, pt) && Cr.CutAtPoint(me, t, log0, pt, k)
      requires Cr.MayHaveLeft(r.records, r.early, r.early + r.packets, k, pkts)
      ensures Sy.ImplNext(Consts(), Sy.Sys(st, wire), s')
      ensures s'.abs.hosts == st.hosts[me := Cr.Rebuilt(recs0 + r.records[..k])]
      ensures s'.wire == wire + (set j | 0 <= j < |pkts| :: pkts[j])
    {
      var s := Sy.Sys(st, wire);
      O.EarlyThenLate(me, t);
      forall p | p in pkts ensures p in O.Early(me, t) || (Cr.AfterLastSync(O.Records(t), k) && p in O.Sends(t)) {
        if p !in r.early {
          assert p in O.Early(me, t) + O.Late(me, t);
          O.ToOthersSub(me, O.Sends(t), p);
        }
      }
      s' := Cr.CrashPartWay(Consts(), s, me as nat, log0, recs0, moves, AbsHost(), t, k, pkts);
    }

    // Recovery: replay one durable record, in the order the records were made.
    // Abstractly: R.ApplyRecord. Each kind of record is its own proof (ReplayPromised, ...):
    // one proof of all four was cheap or out of resource depending on the order in which the
    // verifier happened to declare things.
    method Replay(rec: Record)
      requires Valid()
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      BeginStep();
      match rec {
        case RecPromised(_) => ReplayPromised(rec);
        case RecVote(_, _, _) => ReplayVote(rec);
        case RecCommit(_, _) => ReplayCommit(rec);
        case RecTruncate(_) => ReplayTruncate(rec);
      }
    }

    // The replayed record r joins the log, which then rebuilds the state r made (Persist's
    // proof, for a record that is not emitted again).
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
      sofar := sofar.(recBase := recLog);
    }

    method ReplayPromised(rec: Record)
      requires Valid() && rec.RecPromised? && sofar.trace == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog)
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
      ensures SameConfig() && sentLog == old(sentLog)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      var slot := rec.slot;
      if InWindow(slot) {
        votes[Idx(slot)] := Vote(rec.bal, rec.val);
        if slot + 1 > voteHi {
          voteHi := slot + 1;
        }
        R.AbsVotesUpdate(old(votes[..]), logStart as nat, slot as nat, rec.bal, rec.val);
        R.AllBelowUpdate(R.AbsVotes(old(votes[..]), logStart as nat), slot as nat, S.Vote(rec.bal, rec.val), old(voteHi) as nat, voteHi as nat);
      }
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    method ReplayCommit(rec: Record)
      requires Valid() && rec.RecCommit? && sofar.trace == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog)
      ensures AbsHost() == R.ApplyRecord(old(AbsHost()), rec, WINDOW as nat, SLOT_LIMIT as nat)
    {
      ghost var h0 := AbsHost();
      var slot := rec.slot;
      if InWindow(slot) {
        R.AbsCommittedNone(committed[..], logStart as nat, slot as nat);
      }
      if InWindow(slot) && committed[Idx(slot)].None? {
        committed[Idx(slot)] := Some(rec.val);
        R.AbsCommittedUpdate(old(committed[..]), logStart as nat, slot as nat, rec.val);
        R.HasAllAdd(R.AbsCommitted(old(committed[..]), logStart as nat), logStart as nat, commitUpto as nat, slot as nat, rec.val);
        OT.CommitsTiedAdd(out.commits, R.AbsCommitted(old(committed[..]), logStart as nat), sofar.commitBase, logStart, commitUpto,
                          slot as nat, rec.val);
      }
      assert AbsHost() == R.ApplyRecord(h0, rec, WINDOW as nat, SLOT_LIMIT as nat);
      R.ApplyRecordLeader(h0, rec, WINDOW as nat, SLOT_LIMIT as nat, P.NotLeader);
      Replayed(rec);
    }

    method ReplayTruncate(rec: Record)
      requires Valid() && rec.RecTruncate? && sofar.trace == [] && out.commits == []
      modifies Repr
      ensures Valid() && recLog == old(recLog) + [rec]
      ensures SameConfig() && sentLog == old(sentLog)
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

    // Every slot below `upto` is in a snapshot: forget them, and count them as committed.
    method JumpTo(upto: uint64)
      requires Valid() && logStart < upto <= SLOT_LIMIT && out.commits == []
      modifies Repr
      ensures Valid0() && logStart == upto && recLog == old(recLog)
      ensures BalLe(old(promised), promised) && acked <= old(acked)
      ensures sofar.sentBase == old(sofar.sentBase) && sofar.recBase == old(sofar.recBase)
      // the slots below upto are in the snapshot: none is reported
      ensures sofar.commitBase == commitUpto == if old(commitUpto) < upto then upto else old(commitUpto)
      ensures Keeps() && sentLog == old(sentLog) && selfQueue == old(selfQueue) && sofar.trace == old(sofar.trace)
      ensures AbsHost() == R.Truncated(old(AbsHost()), upto as nat)
    {
      if upto - logStart >= WINDOW {
        // the whole window is dropped
        R.TruncatedPastWindow(votes[..], committed[..], logStart as nat, upto as nat);
        R.TruncatedPastWindow(takeover[..], committed[..], logStart as nat, upto as nat);
        Cand.TakeoverTruncate(role, leaderAbs, R.AbsVotes(takeover[..], logStart as nat), logStart as nat, maxLogStart,
                              takeoverHi, takeoverOverflow, upto as nat, upto);
        Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, upto as nat, upto as nat);
        Lead.ProposalsLedSub(role, R.AbsCommitted(proposed[..], logStart as nat), leaderAbs, map[]);
        ClearWindow();
        R.AbsVotesEmpty(takeover[..], upto as nat);
        R.AbsCommittedEmpty(proposed[..], upto as nat);
        Lead.ProposalsSentEmpty(role, me, n, bal, sentLog);
        Lead.AcksNone(role, bal, acked, acks[..], n, upto as nat);
        R.AbsVotesEmpty(votes[..], upto as nat);
        R.AllBelowEmpty(upto as nat);
        R.AbsCommittedEmpty(committed[..], upto as nat);
        R.HasAllEmpty(map[], upto as nat);
        OT.CommitsTiedNone(map[], upto, upto);
        logStart := upto;
        commitUpto := upto;
        sofar := sofar.(commitBase := upto);
        nextSlot := upto;
        voteHi := upto;
        takeoverHi := upto;
      } else {
        R.HasAllSub(R.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat,
                    upto as nat, if commitUpto < upto then upto as nat else commitUpto as nat);
        if nextSlot < upto {
          Lead.LeadsMono(role, bal, leaderAbs, nextSlot as nat, logStart as nat, upto as nat, logStart as nat);
          nextSlot := upto;
        }
        if commitUpto < upto { commitUpto := upto; }
        OT.CommitsTiedNone(R.AbsCommitted(committed[..], logStart as nat), logStart, commitUpto);
        sofar := sofar.(commitBase := commitUpto);
        DropBelow(upto);
      }
    }

    // A snapshot of the state after slots below `upto` arrived from a peer (this host lagged
    // behind the peers' truncation point): jump to it. Slots above it that this host already
    // committed are reported as commits, in order. Refines the protocol's InstallSnapshot
    // when it jumps, else takes no step (R.SnapshotMoves).
    method InstallSnapshot(upto: uint64) returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked)
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      // the slots newly committed above the snapshot (upto, when it jumps), each once, in order
      ensures CommitsAre(r, if old(commitUpto) < upto <= SLOT_LIMIT then upto else old(commitUpto))
      ensures SameConfig() && sentLog == old(sentLog)
      ensures var ok := old(commitUpto) < upto <= SLOT_LIMIT;
              R.Run(Consts(), me as nat, old(AbsHost()), {}, R.SnapshotMoves(old(AbsHost()), upto as nat, ok), AbsHost())
    {
      R.RunNil(Consts(), me as nat, AbsHost(), {});
      BeginStep();
      if commitUpto < upto && upto <= SLOT_LIMIT {
        R.SnapshotRefines(Consts(), me as nat, AbsHost(), upto as nat);
        JumpTo(upto);
        Persist(RecTruncate(upto));
        AdvanceCommit();
      }
      ghost var moves: seq<R.Move>;
      r, moves, t := EndStep(false, P.State([], {}), AbsHost(), sentLog, []);
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
      R.AbsVotesEmpty(votes[..], logStart as nat);
      R.AllBelowEmpty(voteHi as nat);
    }

    // The commits of every slot in [logStart, commitUpto), in order.
    method CommittedSlots() returns (cs: seq<Committed>)
      requires Valid()
      ensures cs == OT.CommitsOf(R.AbsCommitted(committed[..], logStart as nat), logStart, commitUpto)
    {
      ghost var C := R.AbsCommitted(committed[..], logStart as nat);
      var s := logStart;
      cs := [];
      OT.CommitsNil(C, logStart, logStart);
      while s < commitUpto
        invariant logStart <= s <= commitUpto && cs == OT.CommitsOf(C, logStart, s)
        decreases commitUpto - s
      {
        var c := committed[Idx(s)];
        R.AbsCommittedAt(committed[..], logStart as nat, s as nat);
        assert s as nat in C by { reveal R.HasAll(); }
        if c.Some? {
          cs := cs + [Committed(s, c.val)];
        }
        OT.CommitsSnoc(C, logStart, s);
        s := s + 1;
      }
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
    {
      BeginStep();
      assert AbsHost() == old(AbsHost());
      ghost var C := R.AbsCommitted(committed[..], logStart as nat);
      var cs := CommittedSlots();
      OT.CommitsTiedIs(out.commits, C, sofar.commitBase, logStart, commitUpto);
      out := out.(commits := out.commits + cs);
      sofar := sofar.(commitBase := logStart);
      assert out.commits == OT.CommitsOf(C, logStart, commitUpto);
      reveal OT.CommitsTiedOf();
      AdvanceCommit();
      assert AbsHost() == old(AbsHost()) && selfQueue == [];
      ghost var moves: seq<R.Move>;
      r, moves, t := EndStep(false, P.State([], {}), AbsHost(), sentLog, []);
    }

    // The whole durable state as records, for a fresh log after a snapshot: replaying them from
    // the initial host rebuilds the durable state, as replaying the whole log does (Replays), so
    // a restart from them is the protocol's Crash too (CheckpointRestartIsCrash).
    method CheckpointRecords() returns (recs: seq<Record>)
      requires Valid()
      ensures R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat) == Durable()
    {
      ghost var V, C := R.AbsVotes(votes[..], logStart as nat), R.AbsCommitted(committed[..], logStart as nat);
      recs := [RecTruncate(logStart), RecPromised(promised)];
      R.AbsVotesKeys(votes[..], logStart as nat);
      R.AbsCommittedKeys(committed[..], logStart as nat);
      Rep.CheckpointStart(logStart, promised, V, C);
      var s := logStart;
      while s < logStart + WINDOW
        invariant Valid() && logStart <= s <= logStart + WINDOW
        invariant R.ApplyAll(Rep.InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat)
                  == P.Host(promised, Rep.Below(V, s as nat), logStart as nat, Rep.Below(C, s as nat), P.NotLeader)
        decreases logStart + WINDOW - s
      {
        ghost var before := recs;
        var v := votes[Idx(s)];
        R.AbsVotesAt(votes[..], logStart as nat, s as nat);
        if v.Vote? {
          R.ApplyAllSnoc(Rep.InitHost(), recs, RecVote(s, v.bal, v.val), WINDOW as nat, SLOT_LIMIT as nat);
          recs := recs + [RecVote(s, v.bal, v.val)];
        }
        Rep.BelowNext(V, s as nat);
        var c := committed[Idx(s)];
        R.AbsCommittedAt(committed[..], logStart as nat, s as nat);
        if c.Some? {
          R.ApplyAllSnoc(Rep.InitHost(), recs, RecCommit(s, c.val), WINDOW as nat, SLOT_LIMIT as nat);
          recs := recs + [RecCommit(s, c.val)];
        }
        Rep.BelowNext(C, s as nat);
        s := s + 1;
      }
      Rep.BelowAll(V, s as nat);
      Rep.BelowAll(C, s as nat);
    }

    method GetStatus() returns (st: Status)
      requires Valid()
    {
      st := Status(role, bal, promised, leaderHint, commitUpto, logStart, nextSlot, readConfirmed);
    }
  }
}
