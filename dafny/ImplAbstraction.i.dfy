// The abstraction from the executable core (Impl.i.dfy, ImplTypes.s.dfy) to the protocol
// (Protocol.i.dfy), part 4 of 4: the moves of each handler, the vocabulary the refinement
// postconditions of the core's handlers are written in.
//
// * The protocol steps each handler of the core takes, as a sequence of Moves
//   (ImplAbsRuns.i.dfy): AcceptMoves, PrepareMoves, TruncateMoves, SnapshotMoves,
//   StepDownMoves, HeartbeatMoves, CatchUpMove, PromiseMoves, ElectionMoves, CommitMoves.
// * Proven here: the Promise a Prepare is answered with reports the abstraction's votes from
//   its start on (Report*); Truncate, InstallSnapshot and StepDown are runs (TruncateRefines,
//   SnapshotRefines, StepDownRefines).
// * Recovery: the abstract effect of replaying durable records (ApplyRecord, ApplyAll), and
//   that replaying them less a tail of commit records loses committed entries only
//   (LosingCommits).
//
// The other parts: the durable state (ImplAbsState.i.dfy), messages (ImplAbsMessages.i.dfy),
// runs of protocol steps (ImplAbsRuns.i.dfy). Everything here is ghost.
module ImplAbstraction {
  import opened Native
  import opened Ballots
  import I = ImplTypes
  import S = Spec
  import P = Protocol
  import Quorums
  import QuorumFacts
  import opened ImplAbsState
  import opened ImplAbsMessages
  import opened ImplAbsRuns

  // ---------------------------------------------------------------------------------------
  // The protocol steps each acceptor handler of the core takes. `i` is the host, `h` its
  // abstract state before the handler, `hi` the end of its window (logStart + WINDOW).

  // The Accepted messages a leader counted carry the values of its proposals (OnAccepted's
  // premise; ImplSystem.AckedValuesHold shows it of any Accepted messages in the network of a
  // reachable state).
  ghost predicate AckedValues(acked: set<S.Message>, l: P.LeaderState) {
    forall x | x in acked && x.Accepted? && l.Leading? && x.bal == l.bal && x.slot in l.proposed ::
      x.val == l.proposed[x.slot]
  }

  // OnAccept: a refused Accept is answered by a Nack (ReceiveAccept's else branch); an Accept
  // for a slot outside the window is ignored (for a slot below logStart the protocol sends a
  // Nack, which is as good as lost; for a slot beyond the window the message is as good as not
  // yet received); otherwise ReceiveAccept votes, followed by StepDown when `down` (the host
  // was leading or campaigning with another ballot).
  ghost function AcceptMoves(i: S.HostId, h: P.Host, hi: nat, down: bool, m: S.Message): (moves: seq<Move>)
    requires m.Accept?
    // The two cases without a state change, proven once here (OnAccept's refusal path has room
    // for no more than a hint, that the durable arrays are unchanged: verified_core/mutants.py
    // edits it).
    ensures (BalLt(m.bal, h.promised) || m.slot < h.logStart || hi <= m.slot) && m.dst == i ==>
              && (forall c: P.Constants {:trigger Run(c, i, h, {m}, moves, h)} :: Run(c, i, h, {m}, moves, h))
              && SentBy(moves) == (if BalLt(m.bal, h.promised) then {S.Nack(i, m.src, h.promised)} else {})
  {
    reveal Run();
    if BalLt(m.bal, h.promised) then
      var mv := Move(P.ReceiveAcceptStep(m), {S.Nack(i, m.src, h.promised)}, h);
      assert [mv][1..] == [] && SentBy([]) == {};
      assert SentBy([mv]) == mv.sent + SentBy([mv][1..]);
      [mv]
    else if m.slot < h.logStart || hi <= m.slot then
      []
    else
      var h1 := h.(promised := m.bal, votes := h.votes[m.slot := S.Vote(m.bal, m.val)]);
      [Move(P.ReceiveAcceptStep(m), {S.Accepted(i, m.bal.node as nat, m.bal, m.slot, m.val)}, h1)]
      + (if down then [Move(P.StepDownStep, {}, h1.(leader := P.NotLeader))] else [])
  }

  // OnPrepare(bal, fromSlot): a refused Prepare is answered by a Nack; otherwise
  // ReceivePrepare(m, fromSlot) promises and reports the votes at slots >= max(logStart,
  // fromSlot), followed by StepDown when `down`.
  ghost function PrepareMoves(i: S.HostId, h: P.Host, down: bool, m: S.Message, from: S.Slot): seq<Move>
    requires m.Prepare?
  {
    if !BalLe(h.promised, m.bal) then
      [Move(P.ReceivePrepareStep(m, from), {S.Nack(i, m.src, h.promised)}, h)]
    else
      var ls := if from > h.logStart then from else h.logStart;
      var h1 := h.(promised := m.bal);
      [Move(P.ReceivePrepareStep(m, from), {S.Promise(i, m.src, m.bal, ls, P.VotesFrom(h.votes, ls))}, h1)]
      + (if down then [Move(P.StepDownStep, {}, h1.(leader := P.NotLeader))] else [])
  }

  // The votes at slots in [lo, hi).
  opaque ghost function VotesIn(votes: map<S.Slot, S.Vote>, lo: nat, hi: nat): map<S.Slot, S.Vote> {
    map s | s in votes && lo <= s < hi :: votes[s]
  }

  // Appending an entry to a Promise's list adds it to the reported map.
  lemma SlotVotesMapAppend(vs: seq<I.SlotVote>, sv: I.SlotVote)
    ensures SlotVotesMap(vs + [sv]) == SlotVotesMap(vs)[sv.slot as nat := S.Vote(sv.bal, sv.val)]
  {
    reveal SlotVotesMap();
    assert (vs + [sv])[..|vs + [sv]| - 1] == vs;
  }

  // Every slot of the map is the slot of an entry.
  lemma SlotVotesMapKeys(vs: seq<I.SlotVote>)
    ensures forall s | s in SlotVotesMap(vs) :: exists i | 0 <= i < |vs| :: vs[i].slot as nat == s
    decreases |vs|
  {
    reveal SlotVotesMap();
    if vs != [] {
      SlotVotesMapKeys(vs[..|vs| - 1]);
    }
  }

  // The Promise loop of OnPrepare: the entries listed for the window slots [start, s) are
  // the abstraction's votes there; one more slot keeps it so.
  lemma ReportVote(votes: seq<I.Vote>, ls: nat, start: nat, s: nat, reported: seq<I.SlotVote>, sv: I.SlotVote)
    requires 0 < |votes| && ls <= start <= s < ls + |votes|
    requires SlotVotesMap(reported) == VotesIn(AbsVotes(votes, ls), start, s)
    requires sv.slot as nat == s && votes[s % |votes|] == I.Vote(sv.bal, sv.val)
    ensures SlotVotesMap(reported + [sv]) == VotesIn(AbsVotes(votes, ls), start, s + 1)
  {
    reveal AbsVotes(), VotesIn();
    SlotVotesMapAppend(reported, sv);
  }

  lemma ReportNoVote(votes: seq<I.Vote>, ls: nat, start: nat, s: nat, reported: seq<I.SlotVote>)
    requires 0 < |votes| && ls <= start <= s < ls + |votes|
    requires SlotVotesMap(reported) == VotesIn(AbsVotes(votes, ls), start, s)
    requires votes[s % |votes|].NoVote?
    ensures SlotVotesMap(reported) == VotesIn(AbsVotes(votes, ls), start, s + 1)
  {
    reveal AbsVotes(), VotesIn();
  }

  lemma ReportNone(votes: map<S.Slot, S.Vote>, start: nat)
    ensures SlotVotesMap([]) == VotesIn(votes, start, start)
  {
    reveal SlotVotesMap(), VotesIn();
  }

  // One more slot of the loop, with or without a vote.
  lemma ReportNext(votes: seq<I.Vote>, ls: nat, start: nat, s: uint64, reported: seq<I.SlotVote>)
    requires 0 < |votes| && ls <= start <= s as nat < ls + |votes|
    requires SlotVotesMap(reported) == VotesIn(AbsVotes(votes, ls), start, s as nat)
    ensures var v := votes[s as nat % |votes|];
            if v.Vote? then SlotVotesMap(reported + [I.SlotVote(s, v.bal, v.val)]) == VotesIn(AbsVotes(votes, ls), start, s as nat + 1)
            else SlotVotesMap(reported) == VotesIn(AbsVotes(votes, ls), start, s as nat + 1)
  {
    var v := votes[s as nat % |votes|];
    if v.Vote? {
      ReportVote(votes, ls, start, s as nat, reported, I.SlotVote(s, v.bal, v.val));
    } else {
      ReportNoVote(votes, ls, start, s as nat, reported);
    }
  }

  // Past every vote, the listed votes are all the votes from start on.
  lemma ReportAll(votes: map<S.Slot, S.Vote>, start: nat, s: nat, hi: nat)
    requires AllBelow(votes, hi) && hi <= s
    ensures VotesIn(votes, start, s) == P.VotesFrom(votes, start)
  {
    reveal AllBelow();
    reveal VotesIn();
  }

  // Truncate(upto) of the core: the protocol's Truncate when it truncates (ok), else no step.
  ghost function TruncateMoves(h: P.Host, t: nat, ok: bool): seq<Move> {
    if ok then
      [Move(P.TruncateStep(t), {}, h.(logStart := t, votes := P.VotesFrom(h.votes, t),
                                     committed := CommittedFrom(h.committed, t)))]
    else []
  }

  lemma TruncateRefines(c: P.Constants, i: S.HostId, h: P.Host, t: nat, hi: nat)
    requires HasAll(h.committed, h.logStart, hi) && h.logStart <= t <= hi
    ensures Run(c, i, h, {}, TruncateMoves(h, t, true), TruncateMoves(h, t, true)[0].post)
  {
    HasAllCovers(h.committed, h.logStart, hi);
    var mv := TruncateMoves(h, t, true)[0];
    assert P.HostStep(c, i, h, mv.post, {}, {}, mv.step);
    RunOne(c, i, h, {}, mv);
  }

  // InstallSnapshot(upto) of the core: the protocol's InstallSnapshot when it jumps (ok), else
  // no step.
  ghost function SnapshotMoves(h: P.Host, t: nat, ok: bool): seq<Move> {
    if ok then [Move(P.InstallSnapshotStep(t), {}, Truncated(h, t))] else []
  }

  lemma SnapshotRefines(c: P.Constants, i: S.HostId, h: P.Host, t: nat)
    requires h.logStart <= t
    ensures Run(c, i, h, {}, SnapshotMoves(h, t, true), Truncated(h, t))
  {
    var mv := SnapshotMoves(h, t, true)[0];
    assert P.VotesFrom(h.votes, t) == map slot | slot in h.votes && slot >= t :: h.votes[slot];
    assert P.HostStep(c, i, h, mv.post, {}, {}, mv.step);
    RunOne(c, i, h, {}, mv);
  }

  // StepDown when `down`, else no step.
  ghost function StepDownMoves(h: P.Host, down: bool): seq<Move> {
    if down then [Move(P.StepDownStep, {}, h.(leader := P.NotLeader))] else []
  }

  lemma StepDownRefines(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, down: bool)
    ensures var h' := if down then h.(leader := P.NotLeader) else h;
            Run(c, i, h, net, StepDownMoves(h, down), h') && SentBy(StepDownMoves(h, down)) == {}
  {
    if down {
      RunOne(c, i, h, net, StepDownMoves(h, down)[0]);
    } else {
      RunNil(c, i, h, net);
    }
  }

  // OnHeartbeat(b) from src: a refused Heartbeat is answered by a Nack; otherwise StepDown when
  // `down`, then a CatchUp(from) when `catchUp`. (Its HeartbeatAck has no protocol role.)
  ghost function HeartbeatMoves(i: S.HostId, h: P.Host, src: nat, b: Ballot, down: bool, catchUp: bool, from: nat): seq<Move> {
    if BalLt(b, h.promised) then [NoSafety(h, S.Nack(i, src, h.promised))]
    else
      var h1 := if down then h.(leader := P.NotLeader) else h;
      StepDownMoves(h, down) + (if catchUp then [NoSafety(h1, S.CatchUp(i, src, from))] else [])
  }

  // OnCatchUp: one SendCommit per Commit it sends.
  ghost function CatchUpMove(i: S.HostId, h: P.Host, slot: nat, dst: nat, v: S.Value): Move {
    Move(P.SendCommitStep(slot, dst), {S.Commit(i, dst, slot, v)}, h)
  }

  // The leader state after ReceivePromise(m) (the phase is 2 once the senders are a quorum).
  ghost function Collected(c: P.Constants, l: P.LeaderState, m: S.Message): P.LeaderState
    requires l.Leading?
  {
    var ps := l.promises + {m};
    l.(promises := ps, phase := if Quorums.IsQuorum(S.Members(c.n), P.Senders(ps)) then 2 else 1)
  }

  // OnPromise: ReceivePromise(m) when the host is campaigning for m.bal and has no promise
  // from m.src yet (take), else no step (the message is as good as not yet received).
  ghost function PromiseMoves(c: P.Constants, h: P.Host, m: S.Message, take: bool): seq<Move> {
    if take && h.leader.Leading? then [Move(P.ReceivePromiseStep(m), {}, h.(leader := Collected(c, h.leader, m)))]
    else []
  }

  // The senders of one more promise.
  lemma SendersAdd(ps: set<S.Message>, m: S.Message)
    ensures P.Senders(ps + {m}) == P.Senders(ps) + {m.src}
  {
  }

  // Fewer than a majority of the members are not a quorum.
  lemma NotQuorum(n: nat, q: set<S.HostId>)
    requires |q| < Quorums.QuorumSize(n)
    ensures !Quorums.IsQuorum(S.Members(n), q)
  {
    QuorumFacts.IndicesCardinality(n);
  }

  // StartElection with ballot b: StartPrepare(b) when it campaigns (ok), else no step.
  ghost function ElectionMoves(i: S.HostId, n: nat, h: P.Host, b: Ballot, ok: bool): seq<Move> {
    if ok then
      [Move(P.StartPrepareStep(b), PrepareAll(i, n, b),
            h.(promised := b, leader := P.Leading(b, 1, {}, map[])))]
    else []
  }

  // ---------------------------------------------------------------------------------------
  // Recovery: the abstract effect of replaying one durable record (`w` the window size,
  // `limit` the highest slot the core accepts). A building block for refining Crash: it says
  // what Replay does to the abstraction; that the records a host emitted rebuild its durable
  // state is Replica.Replays() (ImplState), and a restart from them is Crash (RestartIsCrash).

  ghost function ApplyRecord(h: P.Host, rec: I.Record, w: nat, limit: nat): P.Host {
    match rec
    case RecPromised(b) => h.(promised := b)
    case RecVote(slot, b, val) =>
      if h.logStart <= slot as nat < h.logStart + w then h.(votes := h.votes[slot as nat := S.Vote(b, val)]) else h
    case RecCommit(slot, val) =>
      // a slot committed here keeps its value (the core writes a commit record only for a
      // slot not committed yet)
      if h.logStart <= slot as nat < h.logStart + w && slot as nat !in h.committed
      then h.(committed := h.committed[slot as nat := val]) else h
    case RecTruncate(upto) =>
      if h.logStart < upto as nat <= limit then Truncated(h, upto as nat) else h
    case RecLearn(slot, b) =>
      // the value of the host's vote in the slot, if it is the vote cast at b
      if h.logStart <= slot as nat < h.logStart + w && slot as nat !in h.committed
         && slot as nat in h.votes && h.votes[slot as nat].bal == b
      then h.(committed := h.committed[slot as nat := h.votes[slot as nat].val]) else h
  }

  // Replaying a record does not touch the volatile leader state.
  lemma ApplyRecordLeader(h: P.Host, rec: I.Record, w: nat, limit: nat, l: P.LeaderState)
    ensures ApplyRecord(h.(leader := l), rec, w, limit) == ApplyRecord(h, rec, w, limit).(leader := l)
  {
  }

  // The host a sequence of records rebuilds, replayed in order from h.
  ghost function ApplyAll(h: P.Host, recs: seq<I.Record>, w: nat, limit: nat): P.Host
    decreases |recs|
  {
    if recs == [] then h else ApplyRecord(ApplyAll(h, recs[..|recs| - 1], w, limit), recs[|recs| - 1], w, limit)
  }

  lemma ApplyAllSnoc(h: P.Host, recs: seq<I.Record>, r: I.Record, w: nat, limit: nat)
    ensures ApplyAll(h, recs + [r], w, limit) == ApplyRecord(ApplyAll(h, recs, w, limit), r, w, limit)
  {
    assert (recs + [r])[..|recs + [r]| - 1] == recs;
  }

  // recs' is recs without a tail of commit records: what a crash may lose of a host's
  // records (every other record is made durable before anything of its step leaves, and with
  // all the records before it, see I.NeedsSync; commit records need no sync).
  ghost predicate LosesCommits(recs: seq<I.Record>, recs': seq<I.Record>) {
    && |recs'| <= |recs| && recs' == recs[..|recs'|]
    && forall k | |recs'| <= k < |recs| :: recs[k].RecCommit? || recs[k].RecLearn?
  }

  // h' is h after a crash that kept the durable state but for some committed entries.
  ghost predicate CrashedFrom(h: P.Host, h': P.Host) {
    && h'.promised == h.promised && h'.votes == h.votes && h'.logStart == h.logStart
    && (forall s | s in h'.committed :: s in h.committed && h'.committed[s] == h.committed[s])
  }

  // Replaying the records without a tail of commit records rebuilds the same durable state
  // but for committed entries, which it may lack: the protocol's Crash allows exactly that.
  lemma LosingCommits(h: P.Host, recs: seq<I.Record>, recs': seq<I.Record>, w: nat, limit: nat)
    requires LosesCommits(recs, recs')
    ensures CrashedFrom(ApplyAll(h, recs, w, limit), ApplyAll(h, recs', w, limit))
    decreases |recs|
  {
    if |recs| > |recs'| {
      var init := recs[..|recs| - 1];
      assert init[..|recs'|] == recs[..|recs'|];
      LosingCommits(h, init, recs', w, limit);
    } else {
      assert recs' == recs;
    }
  }

  // The protocol's truncation at t (without its precondition).
  ghost function Truncated(h: P.Host, t: nat): P.Host {
    h.(logStart := t, votes := P.VotesFrom(h.votes, t), committed := CommittedFrom(h.committed, t))
  }

  // Truncating past the whole window leaves nothing.
  lemma TruncatedPastWindow(votes: seq<I.Vote>, committed: seq<I.OptValue>, lo: nat, t: nat)
    requires |votes| == |committed| && lo + |votes| <= t
    ensures P.VotesFrom(AbsVotes(votes, lo), t) == map[]
    ensures CommittedFrom(AbsCommitted(committed, lo), t) == map[]
  {
    reveal AbsVotes(), AbsCommitted();
  }

  // OnCommit / OnLearn: ReceiveCommit when the slot is in the window and not yet committed
  // here; otherwise the message is ignored. (A host that already committed the slot keeps its
  // value; the protocol would overwrite it with the same value, since both are chosen.)
  ghost function CommitMoves(h: P.Host, hi: nat, m: S.Message): seq<Move>
    requires m.Commit?
  {
    if h.logStart <= m.slot < hi && m.slot !in h.committed then
      [Move(P.ReceiveCommitStep(m), {}, h.(committed := h.committed[m.slot := m.val]))]
    else
      []
  }
}
