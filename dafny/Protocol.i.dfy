// The verikv Multi-Paxos protocol as a state machine, exactly as PROTOCOL.md fixes it.
// A state is every host's state plus the network: the set of every message ever sent.
// A step is one host reading at most one message, updating its state and sending a set of
// messages (receiving never removes a message, so loss, duplication and reordering are free).
// Everything is ghost; Impl*.i.dfy refines it with bounded machine integers.
module Protocol {
  import opened Native
  import opened Ballots
  import opened Spec
  import Quorums

  datatype Constants = Constants(ghost n: nat)   // the members are 0 .. n-1

  // Volatile leader state. `promises`: the Promise messages for `bal` received so far;
  // `proposed`: the values this host sent Accept for at `bal`.
  datatype LeaderState =
    | NotLeader
    | Leading(ghost bal: Ballot, ghost phase: nat, ghost promises: set<Message>,
              ghost proposed: map<Slot, Value>)

  datatype Host = Host(
    // durable: survives a crash
    ghost promised: Ballot,              // the highest ballot promised; never decreases
    ghost votes: map<Slot, Vote>,        // the latest vote per slot >= logStart
    ghost logStart: Slot,                // slots below it are truncated (covered by a snapshot)
    ghost committed: map<Slot, Value>,   // the learner's log
    // volatile: reset by a crash
    ghost leader: LeaderState)

  datatype State = State(ghost hosts: seq<Host>, ghost net: set<Message>)

  ghost predicate WF(c: Constants, s: State) {
    |s.hosts| == c.n
  }

  ghost predicate HostInit(h: Host) {
    h == Host(Zero, map[], 0, map[], NotLeader)
  }

  ghost predicate Init(c: Constants, s: State) {
    && WF(c, s)
    && (forall i | 0 <= i < |s.hosts| :: HostInit(s.hosts[i]))
    && s.net == {}
  }

  // The ids of the members a set of Promise messages comes from.
  ghost function Senders(ps: set<Message>): set<HostId> {
    set p | p in ps :: p.src
  }

  // ---------------------------------------------------------------------------------------
  // The steps of host i: h is its state before, h' after, net the network before the step,
  // sent the messages the step sends.

  // 1. Promise bal to itself first, become leader of bal in phase 1, send Prepare to all.
  ghost predicate StartPrepare(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>, bal: Ballot) {
    && bal.node as nat == i
    && BalLt(h.promised, bal)
    && h' == h.(promised := bal, leader := Leading(bal, 1, {}, map[]))
    && sent == set j: nat | j < c.n :: Prepare(i, j, bal)
  }

  // The votes at slots >= from.
  ghost function VotesFrom(votes: map<Slot, Vote>, from: Slot): map<Slot, Vote> {
    map slot | slot in votes && slot >= from :: votes[slot]
  }

  // 2. Promise m.bal, reporting every vote held at slots >= max(logStart, from), or refuse.
  // `from` is free: an acceptor may report a later logStart than its own, with only the votes
  // at or above it, as if it had truncated there (the leader then proposes only above it). With
  // from == 0 this is the classic promise of every vote held.
  ghost predicate ReceivePrepare(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>,
                                 sent: set<Message>, m: Message, from: Slot) {
    && m in net && m.Prepare? && m.dst == i
    && if BalLe(h.promised, m.bal) then
         && h' == h.(promised := m.bal)
         && var ls := if from > h.logStart then from else h.logStart;
            sent == {Promise(i, m.src, m.bal, ls, VotesFrom(h.votes, ls))}
       else
         && h' == h
         && sent == {Nack(i, m.src, h.promised)}
  }

  // 3. Collect a promise for the ballot this host is leading in phase 1; with promises from a
  // quorum of distinct members, go to phase 2.
  ghost predicate ReceivePromise(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>,
                                 sent: set<Message>, m: Message) {
    && m in net && m.Promise? && m.dst == i
    && h.leader.Leading? && h.leader.phase == 1 && h.leader.bal == m.bal
    && sent == {}
    && var ps := h.leader.promises + {m};
       h' == h.(leader := h.leader.(promises := ps,
                                    phase := if Quorums.IsQuorum(Members(c.n), Senders(ps)) then 2 else 1))
  }

  // The highest ballot among the votes the promises report for slot is at most b.
  ghost predicate NoHigherVote(ps: set<Message>, slot: Slot, b: Ballot) {
    forall p | p in ps && p.Promise? && slot in p.votes :: BalLe(p.votes[slot].bal, b)
  }

  // The phase-1 rule: if some promise reports a vote for slot, val is the value of the vote
  // with the highest ballot among them; otherwise any value is safe.
  ghost predicate SafeToPropose(ps: set<Message>, slot: Slot, val: Value) {
    || (forall p | p in ps :: p.Promise? && slot !in p.votes)
    || (exists p | p in ps && p.Promise? && slot in p.votes ::
          p.votes[slot].val == val && NoHigherVote(ps, slot, p.votes[slot].bal))
  }

  // Where a proposed value comes from: a vote some promise reports in the slot, the value this
  // host has committed there, the no-op, or a client's request that the host received.
  ghost predicate ValueSource(net: set<Message>, h: Host, slot: Slot, val: Value) {
    || (h.leader.Leading? && exists p | p in h.leader.promises && p.Promise? && slot in p.votes :: p.votes[slot].val == val)
    || (slot in h.committed && h.committed[slot] == val)
    || val == NoOp
    || Requested(net, val)
  }

  // 4. Phase 2a: propose val in a fresh slot that no promiser has truncated.
  ghost predicate SendAccept(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>, sent: set<Message>,
                             slot: Slot, val: Value) {
    && h.leader.Leading? && h.leader.phase == 2
    && h.promised == h.leader.bal
    && slot !in h.leader.proposed
    && (forall p | p in h.leader.promises :: p.Promise? && slot >= p.logStart)
    && SafeToPropose(h.leader.promises, slot, val)
    && ValueSource(net, h, slot, val)
    && h' == h.(leader := h.leader.(proposed := h.leader.proposed[slot := val]))
    && sent == set j: nat | j < c.n :: Accept(i, j, h.leader.bal, slot, val)
  }

  // 5. Phase 2b: vote, unless promised a higher ballot or the slot is truncated.
  ghost predicate ReceiveAccept(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>,
                                sent: set<Message>, m: Message) {
    && m in net && m.Accept? && m.dst == i
    && if BalLe(h.promised, m.bal) && m.slot >= h.logStart then
         && h' == h.(promised := m.bal, votes := h.votes[m.slot := Vote(m.bal, m.val)])
         && sent == {Accepted(i, m.bal.node as nat, m.bal, m.slot, m.val)}
       else
         && h' == h
         && sent == {Nack(i, m.src, h.promised)}
  }

  // 6. Learn that val is chosen in slot: a quorum q sent Accepted(bal, slot, val).
  ghost predicate LearnChosen(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>,
                              sent: set<Message>, slot: Slot, val: Value, bal: Ballot, q: set<HostId>) {
    && ChosenAt(c.n, net, bal, q, slot, val)
    && h' == (if slot >= h.logStart then h.(committed := h.committed[slot := val]) else h)
    && sent == set j: nat | j < c.n :: Commit(i, j, slot, val)
  }

  // 7. Learn from a Commit.
  ghost predicate ReceiveCommit(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>,
                                sent: set<Message>, m: Message) {
    && m in net && m.Commit? && m.dst == i
    && h' == (if m.slot >= h.logStart then h.(committed := h.committed[m.slot := m.val]) else h)
    && sent == {}
  }

  // 8. Catch-up reply.
  ghost predicate SendCommit(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>,
                             slot: Slot, dst: HostId) {
    && slot in h.committed && dst < c.n
    && h' == h
    && sent == {Commit(i, dst, slot, h.committed[slot])}
  }

  // 9. Truncate the log below t (every slot in [logStart, t) is committed).
  ghost predicate Truncate(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>, t: Slot) {
    && h.logStart <= t
    && (forall slot | h.logStart <= slot < t :: slot in h.committed)
    && h' == h.(logStart := t,
                votes := map slot | slot in h.votes && slot >= t :: h.votes[slot],
                committed := map slot | slot in h.committed && slot >= t :: h.committed[slot])
    && sent == {}
  }

  // 10. Stop leading.
  ghost predicate StepDown(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>) {
    && h' == h.(leader := NotLeader)
    && sent == {}
  }

  // 11. Messages with no safety role: Nack, Heartbeat, CatchUp.
  ghost predicate SendNoSafety(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>, m: Message) {
    && m.src == i && m.dst < c.n
    && (|| (m.Nack? && m.promised == h.promised)
        || (m.Heartbeat? && h.leader.Leading? && m.bal == h.leader.bal)
        || m.CatchUp?)
    && h' == h
    && sent == {m}
  }

  // 12. Crash and restart: the volatile state is lost, the durable state is kept, except that
  // committed entries may be lost (the implementation writes commit records without waiting
  // for them to be durable; a lost one is learned again).
  ghost predicate Crash(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>) {
    && h'.leader == NotLeader
    && h'.promised == h.promised && h'.votes == h.votes && h'.logStart == h.logStart
    && (forall slot | slot in h'.committed :: slot in h.committed && h'.committed[slot] == h.committed[slot])
    && sent == {}
  }

  // 13. Install a snapshot: jump the log start to t, dropping the votes and committed entries
  // below it, as Truncate does but without holding those slots committed (a host that lags
  // behind its peers' truncation point installs a peer's snapshot of the state those slots
  // produced; the snapshot's contents are the shim's, see TRUSTED.md). Dropping votes is safe:
  // the host then reports only the votes at or above t, with logStart t, and no leader
  // proposes below the logStart of a promise it uses.
  ghost predicate InstallSnapshot(c: Constants, i: HostId, h: Host, h': Host, sent: set<Message>, t: Slot) {
    && h.logStart <= t
    && h' == h.(logStart := t,
                votes := map slot | slot in h.votes && slot >= t :: h.votes[slot],
                committed := map slot | slot in h.committed && slot >= t :: h.committed[slot])
    && sent == {}
  }

  datatype Step =
    | StartPrepareStep(ghost bal: Ballot)
    | ReceivePrepareStep(ghost m: Message, ghost from: Slot)
    | ReceivePromiseStep(ghost m: Message)
    | SendAcceptStep(ghost slot: Slot, ghost val: Value)
    | ReceiveAcceptStep(ghost m: Message)
    | LearnChosenStep(ghost slot: Slot, ghost val: Value, ghost bal: Ballot, ghost q: set<HostId>)
    | ReceiveCommitStep(ghost m: Message)
    | SendCommitStep(ghost slot: Slot, ghost dst: HostId)
    | TruncateStep(ghost t: Slot)
    | StepDownStep
    | SendNoSafetyStep(ghost m: Message)
    | CrashStep
    | InstallSnapshotStep(ghost t: Slot)

  ghost predicate HostStep(c: Constants, i: HostId, h: Host, h': Host, net: set<Message>,
                           sent: set<Message>, step: Step) {
    match step
    case StartPrepareStep(bal) => StartPrepare(c, i, h, h', sent, bal)
    case ReceivePrepareStep(m, from) => ReceivePrepare(c, i, h, h', net, sent, m, from)
    case ReceivePromiseStep(m) => ReceivePromise(c, i, h, h', net, sent, m)
    case SendAcceptStep(slot, val) => SendAccept(c, i, h, h', net, sent, slot, val)
    case ReceiveAcceptStep(m) => ReceiveAccept(c, i, h, h', net, sent, m)
    case LearnChosenStep(slot, val, bal, q) => LearnChosen(c, i, h, h', net, sent, slot, val, bal, q)
    case ReceiveCommitStep(m) => ReceiveCommit(c, i, h, h', net, sent, m)
    case SendCommitStep(slot, dst) => SendCommit(c, i, h, h', sent, slot, dst)
    case TruncateStep(t) => Truncate(c, i, h, h', sent, t)
    case StepDownStep => StepDown(c, i, h, h', sent)
    case SendNoSafetyStep(m) => SendNoSafety(c, i, h, h', sent, m)
    case CrashStep => Crash(c, i, h, h', sent)
    case InstallSnapshotStep(t) => InstallSnapshot(c, i, h, h', sent, t)
  }

  // Host i takes `step`; every other host is unchanged; the network gains what i sent.
  ghost predicate NextStep(c: Constants, s: State, s': State, i: HostId, step: Step, sent: set<Message>) {
    && WF(c, s)
    && i < |s.hosts|
    && |s'.hosts| == |s.hosts|
    && s'.hosts == s.hosts[i := s'.hosts[i]]
    && s'.net == s.net + sent
    && HostStep(c, i, s.hosts[i], s'.hosts[i], s.net, sent, step)
  }

  // A client asks member i to decide val: the request enters the network. No host changes.
  ghost predicate ClientRequest(c: Constants, s: State, s': State, i: HostId, val: Value) {
    && WF(c, s)
    && i < c.n
    && s'.hosts == s.hosts
    && s'.net == s.net + {Request(i, i, val)}
  }

  ghost predicate Next(c: Constants, s: State, s': State) {
    || (exists i: HostId, step: Step, sent: set<Message> :: NextStep(c, s, s', i, step, sent))
    || (exists i: HostId, val: Value :: ClientRequest(c, s, s', i, val))
  }

  // A behavior: Init on the first state, Next between consecutive states.
  ghost predicate Reachable(c: Constants, behavior: seq<State>) {
    && |behavior| > 0
    && Init(c, behavior[0])
    && forall k {:trigger behavior[k]} | 0 <= k < |behavior| - 1 :: Next(c, behavior[k], behavior[k + 1])
  }
}
