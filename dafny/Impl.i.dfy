// The executable Multi-Paxos replica: the part of verikv that decides, compiled to C++.
// Sans-I/O and deterministic: inputs are a received message, a tick, a proposal or a durable
// record replayed at recovery; each step's output is one Ready (records to make durable,
// then packets to send, then committed slots to apply). It never reads a clock, a socket, a
// file or a random source. It follows dafny/PROTOCOL.md; every slot lives in a bounded window
// [logStart, logStart + WINDOW) of preallocated arrays, so no step allocates per slot.
module Impl {
  import opened Native
  import opened Ballots
  import opened ImplTypes
  import Quorums

  const WINDOW: uint64 := 4096
  const MAX_MEMBERS: uint64 := 64
  const CATCHUP_BATCH: uint64 := 64     // Commit messages answered per CatchUp
  const RETRANSMIT_BATCH: uint64 := 64  // Accepts re-sent per heartbeat
  const SELF_DELIVERY_LIMIT: uint64 := 0x10_0000
  const SLOT_LIMIT: uint64 := 0x4000_0000_0000_0000  // slots stay far below overflow
  const TICKS_LIMIT: uint64 := 0x1_0000_0000

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
    var takeover: array<Vote>       // candidate: the highest vote reported per slot
    var proposed: array<OptValue>   // leader: the value sent in Accept(bal, slot)
    var acks: array<bool>           // leader: (slot % WINDOW) * n + member acked
    var ackCount: array<uint64>
    var nextSlot: uint64
    var readSeq: uint64
    var readConfirmed: uint64
    var readAck: array<uint64>      // leader: highest read sequence each member acknowledged

    // The current step's output, and messages this host sent to itself.
    var outRecords: seq<Record>
    var outPackets: seq<Packet>
    var outEarly: seq<Packet>
    var outSync: bool
    var outNeedSnapshot: seq<uint64>
    var outCommits: seq<Committed>
    var selfQueue: seq<Msg>

    ghost const Repr: set<object>

    ghost predicate Valid()
      reads this
    {
      && Repr == {this, votes, committed, promiseFrom, takeover, proposed, acks, ackCount, readAck}
      && 1 <= n <= MAX_MEMBERS && me < n
      && quorum == Quorums.QuorumSize64(n) && quorum <= n
      && 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      && electionTimeout <= TICKS_LIMIT * 2
      && votes.Length == WINDOW as int && committed.Length == WINDOW as int
      && takeover.Length == WINDOW as int && proposed.Length == WINDOW as int
      && ackCount.Length == WINDOW as int && acks.Length == (WINDOW * n) as int
      && promiseFrom.Length == n as int && readAck.Length == n as int
      && logStart <= SLOT_LIMIT
      && logStart <= commitUpto <= nextSlot <= logStart + WINDOW
      && voteHi <= logStart + WINDOW
      && takeoverHi <= logStart + WINDOW
      && promiseCount <= n
      && ticks <= TICKS_LIMIT * 4 && catchUpCooldown <= TICKS_LIMIT * 4
      && leaderHint <= n
    }

    constructor (me: uint64, n: uint64, electionTicks: uint64, heartbeatTicks: uint64)
      requires 1 <= n <= MAX_MEMBERS && me < n
      requires 1 <= electionTicks <= TICKS_LIMIT && 1 <= heartbeatTicks <= TICKS_LIMIT
      ensures Valid() && fresh(Repr - {this})
    {
      this.me := me;
      this.n := n;
      this.quorum := Quorums.QuorumSize64(n);
      this.electionTicks := electionTicks;
      this.heartbeatTicks := heartbeatTicks;
      var stagger := electionTicks / n;
      StaggerBound(me, n, stagger, electionTicks);
      this.electionTimeout := electionTicks + me * stagger;
      var votes := new Vote[WINDOW];
      var committed := new OptValue[WINDOW];
      var takeover := new Vote[WINDOW];
      var proposed := new OptValue[WINDOW];
      var ackCount := new uint64[WINDOW];
      var acks := new bool[WINDOW * n];
      var promiseFrom := new bool[n];
      var readAck := new uint64[n];
      this.votes := votes;
      this.committed := committed;
      this.takeover := takeover;
      this.proposed := proposed;
      this.ackCount := ackCount;
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
      nextSlot := 0;
      readSeq := 0;
      readConfirmed := 0;
      outRecords := [];
      outPackets := [];
      outEarly := [];
      outSync := false;
      outNeedSnapshot := [];
      outCommits := [];
      selfQueue := [];
      Repr := {this, votes, committed, promiseFrom, takeover, proposed, acks, ackCount, readAck};
      new;
      ResetDurableArrays();
      ResetLeaderArrays();
    }

    // ---- output helpers ----------------------------------------------------------------

    method Send(dst: uint64, msg: Msg)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged()
    {
      if dst == me {
        selfQueue := selfQueue + [msg];
      } else if outSync {
        outPackets := outPackets + [Packet(me, dst, msg)];
      } else {
        outEarly := outEarly + [Packet(me, dst, msg)];  // depends on no record of this step
      }
    }

    method Broadcast(msg: Msg, includeSelf: bool)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged()
    {
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised)
        invariant i <= n
        invariant Valid() && Unchanged()
      {
        if i != me || includeSelf {
          Send(i, msg);
        }
        i := i + 1;
      }
    }

    method Persist(r: Record)
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && Unchanged()
    {
      outRecords := outRecords + [r];
      if NeedsSync(r) {
        outSync := true;
      }
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
      && takeoverOverflow == old(takeoverOverflow) && nextSlot == old(nextSlot)
      && readSeq == old(readSeq) && readConfirmed == old(readConfirmed)
    }

    // The window's bookkeeping is unchanged (for callers reasoning about slot bounds).
    twostate predicate Bounds()
      reads this
    {
      && logStart == old(logStart) && commitUpto == old(commitUpto) && nextSlot == old(nextSlot)
      && voteHi == old(voteHi) && takeoverHi == old(takeoverHi)
    }

    // PromisedNeverDecreases: no step lowers the promised ballot (recovery replays it as it was).
    twostate predicate PromisedGrows()
      reads this
    {
      BalLe(old(promised), promised)
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
    {
      role := Follower;
      bal := Zero;
    }

    // ---- learning ------------------------------------------------------------------------

    method AdvanceCommit()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows()
    {
      while commitUpto - logStart < WINDOW && committed[Idx(commitUpto)].Some?
        invariant BalLe(old(promised), promised)
        invariant Valid()
        decreases logStart + WINDOW - commitUpto
      {
        outCommits := outCommits + [Committed(commitUpto, committed[Idx(commitUpto)].val)];
        if nextSlot == commitUpto {
          nextSlot := nextSlot + 1;  // a slot committed elsewhere is never proposed in again
        }
        commitUpto := commitUpto + 1;
      }
    }

    method CommitSlot(slot: uint64, val: Value)
      requires Valid() && InWindow(slot)
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if committed[Idx(slot)].None? {
        if slot >= nextSlot {
          nextSlot := slot + 1;  // never propose in a slot already known to be chosen
        }
        committed[Idx(slot)] := Some(val);
        Persist(RecCommit(slot, val));
        AdvanceCommit();
      }
    }

    // ---- elections -------------------------------------------------------------------------

    static lemma StaggerBound(me: uint64, n: uint64, stagger: uint64, ticks: uint64)
      requires me < n && 1 <= n && stagger == ticks / n && ticks <= TICKS_LIMIT
      ensures me as int * stagger as int <= ticks as int
    {
      assert stagger as int * n as int <= ticks as int;
      assert me as int * stagger as int <= n as int * stagger as int;
    }

    method ClearLeaderState()
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      ResetLeaderArrays();
      promiseCount := 0;
      maxLogStart := 0;
      maxLogStartFrom := me;
      takeoverHi := 0;
      takeoverOverflow := false;
      readSeq := 0;
      readConfirmed := 0;
    }

    // The loops below write array contents only; Valid() reads only this object's fields, so
    // it is kept by framing (no field of `this` is in their modifies clauses).
    method ResetLeaderArrays()
      requires Valid()
      modifies takeover, proposed, ackCount, acks, promiseFrom, readAck
      ensures Valid() && PromisedGrows()
    {
      var i: uint64 := 0;
      while i < WINDOW
        invariant i <= WINDOW
      {
        takeover[i] := NoVote;
        proposed[i] := None;
        ackCount[i] := 0;
        i := i + 1;
      }
      i := 0;
      while i < WINDOW * n
        invariant i <= WINDOW * n
      {
        acks[i] := false;
        i := i + 1;
      }
      i := 0;
      while i < n
        invariant i <= n
      {
        promiseFrom[i] := false;
        readAck[i] := 0;
        i := i + 1;
      }
    }

    method ResetDurableArrays()
      requires Valid()
      modifies votes, committed
      ensures Valid() && PromisedGrows()
    {
      var i: uint64 := 0;
      while i < WINDOW
        invariant i <= WINDOW
      {
        votes[i] := NoVote;
        committed[i] := None;
        i := i + 1;
      }
    }

    method StartElection()
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if BalMax(promised, maxSeen).round >= UINT64_MAX - 1 {
        return;  // ballots exhausted: never lead again rather than reuse a ballot
      }
      ClearLeaderState();
      var seen := BalMax(promised, maxSeen);
      if seen.round >= UINT64_MAX - 1 {
        return;
      }
      var b := NextBallot(seen, me);
      NextBallotIsAbove(seen, me);
      BalLeTransitive(promised, seen, b);
      SetPromised(b);
      role := Candidate;
      bal := b;
      ticks := 0;
      Broadcast(Prepare(b, commitUpto), true);
    }

    method BecomeLeader()
      requires Valid() && role == Candidate
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if takeoverOverflow || promised != bal {
        StepDown();
        return;
      }
      // Phase 2 covers every slot from the first one this host has not seen committed, up to
      // the highest slot it knows of (a vote reported in a promise, or a commit it saw).
      var start := if maxLogStart > commitUpto then maxLogStart else commitUpto;
      var hi := if takeoverHi > nextSlot then takeoverHi else nextSlot;
      if start - logStart > WINDOW {
        // The others are a whole window ahead: this host cannot lead until it catches up.
        StepDown();
        Send(maxLogStartFrom, CatchUp(commitUpto));
        return;
      }
      role := Leader;
      leaderHint := me;
      nextSlot := if start > hi then start else hi;
      if maxLogStart > commitUpto {
        Send(maxLogStartFrom, CatchUp(commitUpto));
      }
      // In each slot: a value this host saw committed (it was chosen), else the value of the
      // highest-ballot vote the promises reported, else the empty value (a no-op batch).
      var s := start;
      while s < hi
        invariant BalLe(old(promised), promised)
        invariant Valid() && role == Leader
        decreases hi as int - s as int
      {
        if InWindow(s) {
          var c := committed[Idx(s)];
          var v := takeover[Idx(s)];
          var val := if c.Some? then c.val else if v.Vote? then v.val else [];
          ProposeAt(s, val);
        }
        s := s + 1;
      }
      SendHeartbeats();
    }

    method ProposeAt(slot: uint64, val: Value)
      requires Valid() && InWindow(slot) && role == Leader
      modifies Repr
      ensures Valid() && PromisedGrows() && role == Leader && Bounds()
    {
      proposed[Idx(slot)] := Some(val);
      ackCount[Idx(slot)] := 0;
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised)
        invariant i <= n
        invariant Valid() && role == Leader && Bounds()
      {
        AckIndexBound(Idx(slot), i, n, acks.Length);
        acks[Idx(slot) * n + i] := false;
        i := i + 1;
      }
      Broadcast(Accept(bal, slot, val), true);
    }

    static lemma AckIndexBound(idx: uint64, i: uint64, n: uint64, len: int)
      requires idx < WINDOW && i < n && len == WINDOW as int * n as int
      ensures idx as int * n as int + i as int < len
    {
      MulMonotone(idx as int + 1, WINDOW as int, n as int);
      assert (idx as int + 1) * n as int == idx as int * n as int + n as int;
    }

    static lemma MulMonotone(a: int, b: int, c: int)
      requires 0 <= a <= b && 0 <= c
      ensures a * c <= b * c
    {
    }

    method SendHeartbeats()
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      ticks := 0;
      if role != Leader {
        return;
      }
      Broadcast(Heartbeat(bal, commitUpto, readSeq), false);
      if maxLogStart > commitUpto && maxLogStartFrom != me {
        Send(maxLogStartFrom, CatchUp(commitUpto));  // this leader lags: ask again
      }
      // Re-send Accepts that have not reached a quorum yet (messages may be lost).
      var s := commitUpto;
      var end := if nextSlot - commitUpto > RETRANSMIT_BATCH then commitUpto + RETRANSMIT_BATCH else nextSlot;
      while s < end
        invariant BalLe(old(promised), promised)
        invariant Valid() && Bounds() && commitUpto <= s <= end <= nextSlot
        decreases end - s
      {
        var p := proposed[Idx(s)];
        if p.Some? && committed[Idx(s)].None? {
          Broadcast(Accept(bal, s, p.val), false);
        }
        s := s + 1;
      }
    }

    // ---- message handlers ----------------------------------------------------------------

    method OnPrepare(src: uint64, b: Ballot, fromSlot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if !BalLe(promised, b) {
        Send(src, Nack(promised));
        return;
      }
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
      while s < voteHi
        invariant BalLe(old(promised), promised)
        invariant Valid() && start <= s
        decreases voteHi as int - s as int
      {
        var v := votes[Idx(s)];
        if v.Vote? {
          reported := reported + [SlotVote(s, v.bal, v.val)];
        }
        s := s + 1;
      }
      Send(src, Promise(b, logStart, reported));
    }

    method OnPromise(src: uint64, b: Ballot, ls: uint64, reported: seq<SlotVote>)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if role != Candidate || b != bal || src >= n || promiseFrom[src] {
        return;
      }
      promiseFrom[src] := true;
      if promiseCount < n {
        promiseCount := promiseCount + 1;
      }
      if ls > maxLogStart {
        maxLogStart := ls;
        maxLogStartFrom := src;
      }
      var rest := reported;
      while rest != []
        invariant BalLe(old(promised), promised)
        invariant Valid() && role == Candidate
        decreases |rest|
      {
        var sv := rest[0];
        rest := rest[1..];
        if InWindow(sv.slot) {
          var cur := takeover[Idx(sv.slot)];
          if cur.NoVote? || BalLt(cur.bal, sv.bal) {
            takeover[Idx(sv.slot)] := Vote(sv.bal, sv.val);
          }
          if sv.slot + 1 > takeoverHi {
            takeoverHi := sv.slot + 1;
          }
        } else if sv.slot >= logStart {
          takeoverOverflow := true;
        }
      }
      if promiseCount >= quorum {
        BecomeLeader();
      }
    }

    method OnAccept(src: uint64, b: Ballot, slot: uint64, val: Value)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
        return;
      }
      if !InWindow(slot) {
        if slot < logStart && src < n && src != me {
          // the slot is in this host's snapshot: the sender lags behind it and needs the snapshot
          outNeedSnapshot := outNeedSnapshot + [src];
        }
        return;  // beyond this host's window: it cannot hold the vote (the leader re-sends)
      }
      SetPromised(b);
      if role != Follower && b != bal {
        StepDown();
      }
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
      Persist(RecVote(slot, b, val));
      Send(b.node, Accepted(b, slot));
    }

    method OnAccepted(src: uint64, b: Ballot, slot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if role != Leader || b != bal || src >= n || !InWindow(slot) {
        return;
      }
      var idx := Idx(slot);
      var p := proposed[idx];
      AckIndexBound(idx, src, n, acks.Length);
      if p.None? || acks[idx * n + src] || committed[idx].Some? {
        return;
      }
      acks[idx * n + src] := true;
      if ackCount[idx] < n {
        ackCount[idx] := ackCount[idx] + 1;
      }
      if ackCount[idx] >= quorum {
        CommitSlot(slot, p.val);
        Broadcast(Learn(b, slot), false);
      }
    }

    method OnLearn(b: Ballot, slot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if !InWindow(slot) {
        return;
      }
      var v := votes[Idx(slot)];
      if v.Vote? && v.bal == b {
        CommitSlot(slot, v.val);
      }
    }

    method OnCommit(slot: uint64, val: Value)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if InWindow(slot) {
        CommitSlot(slot, val);
      }
    }

    method OnNack(p: Ballot)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      maxSeen := BalMax(maxSeen, p);
      if role != Follower && BalLt(bal, p) {
        StepDown();
      }
    }

    method OnHeartbeat(src: uint64, b: Ballot, leaderCommit: uint64, rs: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
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
      Send(src, HeartbeatAck(b, rs));
      if leaderCommit > commitUpto && catchUpCooldown == 0 {
        Send(src, CatchUp(commitUpto));
        catchUpCooldown := heartbeatTicks;
      }
    }

    method OnHeartbeatAck(src: uint64, b: Ballot, rs: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
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
    {
      var i: uint64 := 0;
      while i < n
        invariant BalLe(old(promised), promised)
        invariant i <= n && Valid()
      {
        var c := readAck[i];
        if c > readConfirmed {
          var count: uint64 := 0;
          var j: uint64 := 0;
          while j < n
            invariant BalLe(old(promised), promised)
            invariant j <= n && count <= j && Valid()
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

    method OnCatchUp(src: uint64, fromSlot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      if fromSlot < logStart && src != me && src < n {
        // the slots it lacks are only in this host's snapshot now
        outNeedSnapshot := outNeedSnapshot + [src];
      }
      var s := if fromSlot > logStart then fromSlot else logStart;
      if s >= commitUpto {
        return;
      }
      var end := if commitUpto - s > CATCHUP_BATCH then s + CATCHUP_BATCH else commitUpto;
      while s < end
        invariant BalLe(old(promised), promised)
        invariant Valid() && Bounds() && logStart <= s <= end <= commitUpto
        decreases end - s
      {
        var c := committed[Idx(s)];
        if c.Some? {
          Send(src, Commit(s, c.val));
        }
        s := s + 1;
      }
    }

    method Dispatch(src: uint64, m: Msg)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      match m {
        case Prepare(b, fromSlot) => OnPrepare(src, b, fromSlot);
        case Promise(b, ls, reported) => OnPromise(src, b, ls, reported);
        case Accept(b, slot, val) => OnAccept(src, b, slot, val);
        case Accepted(b, slot) => OnAccepted(src, b, slot);
        case Learn(b, slot) => OnLearn(b, slot);
        case Commit(slot, val) => OnCommit(slot, val);
        case Nack(p) => OnNack(p);
        case Heartbeat(b, c, rs) => OnHeartbeat(src, b, c, rs);
        case HeartbeatAck(b, rs) => OnHeartbeatAck(src, b, rs);
        case CatchUp(fromSlot) => OnCatchUp(src, fromSlot);
      }
    }

    // Handle the messages this host sent to itself during the step (bounded: a chain of
    // self-deliveries is short; past the limit they are dropped, like lost messages).
    method DrainSelf()
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      var fuel := SELF_DELIVERY_LIMIT;
      while |selfQueue| > 0 && fuel > 0
        invariant BalLe(old(promised), promised)
        invariant Valid()
        decreases fuel
      {
        var m := selfQueue[0];
        selfQueue := selfQueue[1..];
        Dispatch(me, m);
        fuel := fuel - 1;
      }
      selfQueue := [];
    }

    method BeginStep()
      requires Valid()
      modifies this
      ensures Valid() && PromisedGrows() && outRecords == [] && outPackets == [] && outCommits == []
    {
      outRecords := [];
      outPackets := [];
      outEarly := [];
      outSync := false;
      outNeedSnapshot := [];
      outCommits := [];
      selfQueue := [];
    }

    method EndStep(accepted: bool) returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      DrainSelf();
      r := Ready(outRecords, outPackets, outCommits, accepted, outEarly, outSync, outNeedSnapshot);
      outRecords := [];
      outPackets := [];
      outEarly := [];
      outSync := false;
      outNeedSnapshot := [];
      outCommits := [];
    }

    // ---- the step API (what the extension exposes) --------------------------------------

    method Receive(p: Packet) returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      if p.dst == me && p.src < n && p.src != me {
        Dispatch(p.src, p.msg);
      }
      r := EndStep(false);
    }

    method Tick() returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      if ticks < TICKS_LIMIT * 4 {
        ticks := ticks + 1;
      }
      if catchUpCooldown > 0 {
        catchUpCooldown := catchUpCooldown - 1;
      }
      if role == Leader {
        if ticks >= heartbeatTicks {
          SendHeartbeats();
        }
      } else if ticks >= electionTimeout {
        StartElection();
      }
      r := EndStep(false);
    }

    method Propose(val: Value) returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      var ok := false;
      if role == Leader && nextSlot - logStart < WINDOW {
        ProposeAt(nextSlot, val);
        nextSlot := nextSlot + 1;
        ok := true;
      }
      r := EndStep(ok);
    }

    // Leader: start confirming that it still leads; reads that arrived before this call may be
    // served once readConfirmed >= the returned number and commitUpto >= the returned slot.
    method ConfirmRead() returns (r: Ready, seqNo: uint64, readSlot: uint64)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      seqNo := 0;
      readSlot := nextSlot;
      if role == Leader && readSeq < UINT64_MAX {
        readSeq := readSeq + 1;
        seqNo := readSeq;
        readAck[me] := readSeq;
        Broadcast(Heartbeat(bal, commitUpto, readSeq), false);
        UpdateReadConfirmed();
        ticks := 0;
      }
      r := EndStep(false);
    }

    // Forget slots below `upto` (the shim has them in a snapshot). Only committed slots.
    method Truncate(upto: uint64) returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      if logStart < upto && upto <= commitUpto && upto <= SLOT_LIMIT {
        DropBelow(upto);
        Persist(RecTruncate(upto));
      }
      r := EndStep(false);
    }

    method DropBelow(upto: uint64)
      requires Valid() && logStart < upto <= commitUpto && upto <= SLOT_LIMIT
      modifies Repr
      ensures Valid() && PromisedGrows() && logStart == upto
    {
      var s := logStart;
      while s < upto
        invariant BalLe(old(promised), promised)
        invariant Valid() && Bounds() && logStart <= s <= upto
        decreases upto - s
      {
        ClearSlot(Idx(s));
        s := s + 1;
      }
      logStart := upto;
      if voteHi < upto {
        voteHi := upto;
      }
      if takeoverHi < upto {
        takeoverHi := upto;
      }
    }

    // Empty one window index (its slot left the window).
    method ClearSlot(idx: uint64)
      requires Valid() && idx < WINDOW
      modifies votes, committed, takeover, proposed, ackCount, acks
      ensures Valid() && PromisedGrows() && Bounds()
    {
      votes[idx] := NoVote;
      committed[idx] := None;
      takeover[idx] := NoVote;
      proposed[idx] := None;
      ackCount[idx] := 0;
      var i: uint64 := 0;
      while i < n
        invariant i <= n
      {
        AckIndexBound(idx, i, n, acks.Length);
        acks[idx * n + i] := false;
        i := i + 1;
      }
    }

    // Recovery: replay one durable record, in the order the records were made.
    method Replay(rec: Record)
      requires Valid()
      modifies Repr
      ensures Valid()
    {
      match rec {
        case RecPromised(b) =>
          promised := b;
          maxSeen := BalMax(maxSeen, b);
        case RecVote(slot, b, val) =>
          if InWindow(slot) {
            votes[Idx(slot)] := Vote(b, val);
            if slot + 1 > voteHi {
              voteHi := slot + 1;
            }
          }
        case RecCommit(slot, val) =>
          if InWindow(slot) {
            committed[Idx(slot)] := Some(val);
          }
        case RecTruncate(upto) =>
          if logStart < upto && upto <= SLOT_LIMIT {
            JumpTo(upto);
          }
      }
    }

    // Every slot below `upto` is in a snapshot: forget them, and count them as committed.
    method JumpTo(upto: uint64)
      requires Valid() && logStart < upto <= SLOT_LIMIT
      modifies Repr
      ensures Valid() && PromisedGrows() && logStart == upto
    {
      if upto - logStart >= WINDOW {
        // the whole window is dropped
        ClearWindow();
        logStart := upto;
        commitUpto := upto;
        nextSlot := upto;
        voteHi := upto;
        takeoverHi := upto;
      } else {
        if nextSlot < upto { nextSlot := upto; }
        if commitUpto < upto { commitUpto := upto; }
        DropBelow(upto);
      }
    }

    // A snapshot of the state after slots below `upto` arrived from a peer (this host lagged
    // behind the peers' truncation point): jump to it. Slots above it that this host already
    // committed are reported as commits, in order.
    method InstallSnapshot(upto: uint64) returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      if commitUpto < upto && upto <= SLOT_LIMIT {
        JumpTo(upto);
        Persist(RecTruncate(upto));
        AdvanceCommit();
      }
      r := EndStep(false);
    }

    method ClearWindow()
      requires Valid()
      modifies votes, committed, takeover, proposed, ackCount
      ensures Valid() && PromisedGrows() && Bounds()
    {
      var i: uint64 := 0;
      while i < WINDOW
        invariant i <= WINDOW
      {
        votes[i] := NoVote;
        committed[i] := None;
        takeover[i] := NoVote;
        proposed[i] := None;
        ackCount[i] := 0;
        i := i + 1;
      }
    }

    // After the last replayed record: report every committed slot from logStart on.
    method FinishRecovery() returns (r: Ready)
      requires Valid()
      modifies Repr
      ensures Valid() && PromisedGrows()
    {
      BeginStep();
      var s := logStart;
      while s < commitUpto
        invariant BalLe(old(promised), promised)
        invariant Valid() && logStart <= s <= commitUpto
        decreases commitUpto - s
      {
        var c := committed[Idx(s)];
        if c.Some? {
          outCommits := outCommits + [Committed(s, c.val)];
        }
        s := s + 1;
      }
      AdvanceCommit();
      r := EndStep(false);
    }

    // The whole durable state as records: replaying them rebuilds it (a fresh WAL after a snapshot).
    method CheckpointRecords() returns (recs: seq<Record>)
      requires Valid()
    {
      recs := [RecTruncate(logStart), RecPromised(promised)];
      var s := logStart;
      while s < logStart + WINDOW
        invariant Valid() && logStart <= s <= logStart + WINDOW
        decreases logStart + WINDOW - s
      {
        var v := votes[Idx(s)];
        if v.Vote? {
          recs := recs + [RecVote(s, v.bal, v.val)];
        }
        var c := committed[Idx(s)];
        if c.Some? {
          recs := recs + [RecCommit(s, c.val)];
        }
        s := s + 1;
      }
    }

    method GetStatus() returns (st: Status)
      requires Valid()
    {
      st := Status(role, bal, promised, leaderHint, commitUpto, logStart, nextSlot, readConfirmed);
    }
  }
}
