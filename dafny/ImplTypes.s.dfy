// The interface between the core and its driver: wire messages, durable records and step
// outputs (what Driver.s.dfy says the driver must do with them), all over bounded integers and
// non-generic datatypes (what Dafny's C++ backend compiles).
// Encoding to bytes is done once, in the extension's glue (verified_core/glue), and checked
// by a round trip at run time; see dafny/TRUSTED.md.
module ImplTypes {
  import opened Native
  import opened Ballots

  type Value = seq<uint8>

  datatype OptValue = None | Some(val: Value)

  // A vote held by an acceptor for one slot.
  datatype Vote = NoVote | Vote(bal: Ballot, val: Value)

  // One entry of a Promise: the acceptor's vote in `slot`.
  datatype SlotVote = SlotVote(slot: uint64, bal: Ballot, val: Value)

  datatype Msg =
    | Prepare(bal: Ballot, fromSlot: uint64)
    | Promise(bal: Ballot, logStart: uint64, votes: seq<SlotVote>)
    | Accept(bal: Ballot, slot: uint64, val: Value)
    | Accepted(bal: Ballot, slot: uint64)
    | Learn(bal: Ballot, slot: uint64)  // slot is chosen with the value of Accept(bal, slot)
    | Commit(slot: uint64, val: Value)  // slot is chosen with val (catch-up)
    | Nack(promised: Ballot)
    | Heartbeat(bal: Ballot, commitUpto: uint64, readSeq: uint64)
    | HeartbeatAck(bal: Ballot, readSeq: uint64)
    | CatchUp(fromSlot: uint64)

  datatype Packet = Packet(src: uint64, dst: uint64, msg: Msg)

  // Durable records: the shim appends them to its write-ahead log and makes them durable
  // before it sends any packet of the same step (persist-before-send).
  datatype Record =
    | RecPromised(bal: Ballot)
    | RecVote(slot: uint64, bal: Ballot, val: Value)
    | RecCommit(slot: uint64, val: Value)
    | RecTruncate(logStart: uint64)
    // slot is committed with the value of this host's vote there, cast at bal (the vote's
    // record came before it): a commit record that does not carry the value again
    | RecLearn(slot: uint64, bal: Ballot)

  datatype Committed = Committed(slot: uint64, val: Value)

  datatype Role = Follower | Candidate | Leader

  datatype Status = Status(
    role: Role,
    bal: Ballot,          // the ballot this host leads or campaigns with (Zero when following)
    promised: Ballot,
    leaderHint: uint64,   // the node believed to lead; == n when unknown
    commitUpto: uint64,   // every slot below is committed here
    logStart: uint64,
    nextSlot: uint64,     // leader: the next slot it will propose in
    readConfirmed: uint64 // leader: highest read sequence number confirmed by a quorum
  )

  // Everything one step produces, in the order the shim must honour it:
  // 1. `early` packets may be sent at once: they depend on no record of this step that needs a
  //    sync (they were sent before the first; `earlyAfter` records came before the last of them);
  // 2. append `records` in order; if `sync`, they must be durable before 3 and 4 (and before
  //    anything of a later step); if not, they may become durable later (commit records only:
  //    losing one loses no chosen value, the slot is learned again);
  // 3. send `packets`; 4. apply `commits` (contiguous, in order).
  datatype Ready = Ready(
    records: seq<Record>,
    packets: seq<Packet>,
    commits: seq<Committed>,
    accepted: bool,  // propose(): the value got a slot; false when not leader or the window is full
    early: seq<Packet>,
    sync: bool,
    needSnapshot: seq<uint64>,  // members that asked for slots this host has truncated: send them a snapshot
    earlyAfter: uint64          // how many of `records` the step emitted before its last early packet
  )

  // Records that must be durable before the step's packets leave: promises, votes and
  // truncations. A commit record (RecCommit, RecLearn) may lag.
  predicate NeedsSync(r: Record) {
    !r.RecCommit? && !r.RecLearn?
  }
}
