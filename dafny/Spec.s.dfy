// The specification of verikv's consensus core, for a human to read and trust.
// It names the vocabulary (values, slots, votes, the messages hosts exchange) and says what it
// means for a value to be chosen and what Agreement promises. Everything here is ghost: the
// datatypes' fields are ghost, so the C++ build never sees an unbounded integer.
module Spec {
  import opened Native
  import opened Ballots
  import Quorums

  type Value = seq<uint8>   // opaque bytes; the core only compares them for equality
  type Slot = nat           // a log position
  type HostId = nat         // a member's index, 0 .. n-1

  datatype Vote = Vote(ghost bal: Ballot, ghost val: Value)

  // Every message names its sender and its receiver. The fields are those of PROTOCOL.md.
  datatype Message =
    | Prepare(ghost src: HostId, ghost dst: HostId, ghost bal: Ballot)
    | Promise(ghost src: HostId, ghost dst: HostId, ghost bal: Ballot, ghost logStart: Slot,
              ghost votes: map<Slot, Vote>)
    | Accept(ghost src: HostId, ghost dst: HostId, ghost bal: Ballot, ghost slot: Slot, ghost val: Value)
    | Accepted(ghost src: HostId, ghost dst: HostId, ghost bal: Ballot, ghost slot: Slot, ghost val: Value)
    | Commit(ghost src: HostId, ghost dst: HostId, ghost slot: Slot, ghost val: Value)
    | Nack(ghost src: HostId, ghost dst: HostId, ghost promised: Ballot)
    | Heartbeat(ghost src: HostId, ghost dst: HostId, ghost bal: Ballot, ghost commitUpto: Slot)
    | CatchUp(ghost src: HostId, ghost dst: HostId, ghost fromSlot: Slot)
    // A client's request that `val` be decided, as it reached member dst (clients are not
    // members: src == dst). Clients put requests in the network (Protocol.ClientRequest); no
    // member step sends one.
    | Request(ghost src: HostId, ghost dst: HostId, ghost val: Value)

  // The value a leader proposes in a slot it must fill and where no value is known: empty.
  const NoOp: Value := []

  // The configuration: members 0 .. n-1.
  ghost function Members(n: nat): set<HostId> {
    Quorums.Indices(n)
  }

  // Member `a` sent Accepted(b, slot, val): it voted `val` in `slot` at ballot `b`.
  ghost predicate SentAccepted(net: set<Message>, a: HostId, b: Ballot, slot: Slot, val: Value) {
    exists m {:trigger m in net} :: m in net && m.Accepted? && m.src == a && m.bal == b && m.slot == slot && m.val == val
  }

  // Every member of the quorum `q` sent Accepted(b, slot, val).
  ghost predicate ChosenAt(n: nat, net: set<Message>, b: Ballot, q: set<HostId>, slot: Slot, val: Value) {
    && Quorums.IsQuorum(Members(n), q)
    && forall a {:trigger a in q} :: a in q ==> SentAccepted(net, a, b, slot, val)
  }

  // `val` is chosen in `slot`: some ballot and some quorum have Accepted(b, slot, val) from
  // every member of the quorum in the network.
  ghost predicate Chosen(n: nat, net: set<Message>, slot: Slot, val: Value) {
    exists b: Ballot, q: set<HostId> :: ChosenAt(n, net, b, q, slot, val)
  }

  // Some client requested val.
  ghost predicate Requested(net: set<Message>, val: Value) {
    exists m {:trigger m in net} :: m in net && m.Request? && m.val == val
  }

  // Agreement: at most one value is ever chosen in a slot.
  ghost predicate Agreement(n: nat, net: set<Message>) {
    forall slot: Slot, v1: Value, v2: Value {:trigger Chosen(n, net, slot, v1), Chosen(n, net, slot, v2)} ::
      Chosen(n, net, slot, v1) && Chosen(n, net, slot, v2) ==> v1 == v2
  }

  // Validity: every chosen value is a value some client requested, or the no-op.
  ghost predicate Validity(n: nat, net: set<Message>) {
    forall slot: Slot, v: Value {:trigger Chosen(n, net, slot, v)} ::
      Chosen(n, net, slot, v) ==> v == NoOp || Requested(net, v)
  }
}
