// The abstraction from the executable core (Impl.i.dfy, ImplTypes.s.dfy) to the protocol
// (Protocol.i.dfy), part 2 of 4: messages.
//
// * A concrete message refines an abstract one (MsgRefines). The relation fixes every field
//   the concrete message has. Accepted(bal, slot) and Learn(bal, slot) carry no value on the
//   wire; they stand for Accepted(bal, slot, val) and Commit(slot, val), where val is the
//   value of the unique Accept(bal, slot, val) (a system-level fact, AcceptUnique, so the
//   relation leaves the value open and the protocol step that sent the message fixes it).
// * Defined here: packets that are images of the messages protocol steps sent
//   (PacketsRefine), and a Learn backed by an Accepted of its value in the network
//   (LearnBacked). Proven here: a broadcast Prepare, Accept or Learn is the image of the
//   protocol's message to every member (PrepareBroadcastRefines, AcceptBroadcastRefines,
//   LearnBroadcastRefines).
//
// The other parts: the durable state (ImplAbsState.i.dfy), runs of protocol steps
// (ImplAbsRuns.i.dfy), the moves of each handler (ImplAbstraction.i.dfy). Everything here is
// ghost.
module ImplAbsMessages {
  import opened Native
  import opened Ballots
  import I = ImplTypes
  import S = Spec

  // ---------------------------------------------------------------------------------------
  // Messages.

  // The votes a Promise reports, as the protocol's map (a later entry for a slot wins; the
  // core reports each slot at most once, in increasing order).
  opaque ghost function SlotVotesMap(vs: seq<I.SlotVote>): map<S.Slot, S.Vote>
    decreases |vs|
  {
    if vs == [] then map[]
    else SlotVotesMap(vs[..|vs| - 1])[vs[|vs| - 1].slot as nat := S.Vote(vs[|vs| - 1].bal, vs[|vs| - 1].val)]
  }

  // The concrete message m, sent by src to dst, refines the abstract message a.
  // A Promise carries the slot its report starts at, max(logStart, fromSlot) (see
  // PROTOCOL.md), as its logStart. Accepted and Learn leave the value open (see the head of
  // this file).
  // HeartbeatAck has no protocol counterpart (it only confirms leadership for reads).
  ghost predicate MsgRefines(src: nat, dst: nat, m: I.Msg, a: S.Message) {
    && a.src == src && a.dst == dst
    && match m
       case Prepare(b, _) => a == S.Prepare(src, dst, b)
       case Promise(b, ls, vs) => a == S.Promise(src, dst, b, ls as nat, SlotVotesMap(vs))
       case Accept(b, slot, val) => a == S.Accept(src, dst, b, slot as nat, val)
       case Accepted(b, slot) => a.Accepted? && a.bal == b && a.slot == slot as nat
       case Learn(b, slot) => a.Commit? && a.slot == slot as nat
       case Commit(slot, val) => a == S.Commit(src, dst, slot as nat, val)
       case Nack(p) => a == S.Nack(src, dst, p)
       case Heartbeat(b, c, _) => a == S.Heartbeat(src, dst, b, c as nat)
       case HeartbeatAck(_, _) => false
       case CatchUp(from) => a == S.CatchUp(src, dst, from as nat)
  }

  // A message of net whose image m from src to dst is (a lemma, so that the Replica's methods
  // need no `:|` statement: see the head of Impl.i.dfy).
  lemma ImageIn(net: set<S.Message>, src: nat, dst: nat, m: I.Msg) returns (a: S.Message)
    requires exists a :: a in net && MsgRefines(src, dst, m, a)
    ensures a in net && MsgRefines(src, dst, m, a)
  {
    a :| a in net && MsgRefines(src, dst, m, a);
  }

  // Every packet the core sent is the image of a message the protocol steps sent (HeartbeatAck
  // excepted: it has no role in the protocol).
  ghost predicate PacketsRefine(pkts: seq<I.Packet>, sent: set<S.Message>) {
    forall k | 0 <= k < |pkts| :: PacketRefines(pkts[k], sent)
  }

  // The packet p is the image of a message in sent: MsgRefines, spelt out for the messages
  // whose image is fixed by their fields.
  ghost predicate PacketRefines(p: I.Packet, sent: set<S.Message>) {
    var src, dst := p.src as nat, p.dst as nat;
    match p.msg
    case Prepare(b, _) => S.Prepare(src, dst, b) in sent
    case Accept(b, slot, val) => S.Accept(src, dst, b, slot as nat, val) in sent
    case Commit(slot, val) => S.Commit(src, dst, slot as nat, val) in sent
    case Nack(pr) => S.Nack(src, dst, pr) in sent
    case Heartbeat(b, c, _) => S.Heartbeat(src, dst, b, c as nat) in sent
    case CatchUp(from) => S.CatchUp(src, dst, from as nat) in sent
    case Promise(b, ls, vs) => S.Promise(src, dst, b, ls as nat, SlotVotesMap(vs)) in sent
    case HeartbeatAck(_, _) => true
    case _ => exists a | a in sent :: MsgRefines(src, dst, p.msg, a)  // Accepted, Learn
  }

  // A Learn(b, slot) stands for Commit(slot, v) with v the value chosen at b: its image, in
  // sent, carries a value some member accepted at b in slot (an Accepted in net; with
  // AcceptedHasAccept and AcceptUnique, the value of every Accept at b in slot). What makes a
  // receiver's own vote at b the Learn's value (ImplSystem.LearnValueHolds). Other messages:
  // nothing more.
  ghost predicate LearnBacked(p: I.Packet, sent: set<S.Message>, net: set<S.Message>) {
    p.msg.Learn? ==>
      exists v {:trigger AcceptedAt(net, p.msg.bal, p.msg.slot as nat, v)} ::
        S.Commit(p.src as nat, p.dst as nat, p.msg.slot as nat, v) in sent && AcceptedAt(net, p.msg.bal, p.msg.slot as nat, v)
  }

  // Some member accepted v at b in slot.
  ghost predicate AcceptedAt(net: set<S.Message>, b: Ballot, slot: nat, v: S.Value) {
    exists a :: a in net && a.Accepted? && a.bal == b && a.slot == slot && a.val == v
  }

  ghost predicate LearnsBacked(pkts: seq<I.Packet>, sent: set<S.Message>, net: set<S.Message>) {
    forall k | 0 <= k < |pkts| :: LearnBacked(pkts[k], sent, net)
  }

  // None of the packets is a Learn (so they are all backed).
  ghost predicate NoLearns(pkts: seq<I.Packet>) {
    forall k | 0 <= k < |pkts| :: !pkts[k].msg.Learn?
  }

  lemma NoLearnsBacked(pkts: seq<I.Packet>, sent: set<S.Message>, net: set<S.Message>)
    requires NoLearns(pkts)
    ensures LearnsBacked(pkts, sent, net)
  {
  }

  lemma LearnBackedMono(p: I.Packet, sent: set<S.Message>, net: set<S.Message>, sent': set<S.Message>, net': set<S.Message>)
    requires LearnBacked(p, sent, net) && sent <= sent' && net <= net'
    ensures LearnBacked(p, sent', net')
  {
    if p.msg.Learn? {
      var v :| S.Commit(p.src as nat, p.dst as nat, p.msg.slot as nat, v) in sent && AcceptedAt(net, p.msg.bal, p.msg.slot as nat, v);
      var a :| a in net && a.Accepted? && a.bal == p.msg.bal && a.slot == p.msg.slot as nat && a.val == v;
      assert a in net';
      assert AcceptedAt(net', p.msg.bal, p.msg.slot as nat, v);
      assert S.Commit(p.src as nat, p.dst as nat, p.msg.slot as nat, v) in sent';
    }
  }

  // One packet, the image of a sent message.
  lemma PacketsRefineOne(p: I.Packet, a: S.Message, sent: set<S.Message>)
    requires a in sent && MsgRefines(p.src as nat, p.dst as nat, p.msg, a)
    ensures PacketsRefine([p], sent)
  {
  }

  // Packets from src, each carrying msg, to members (below n).
  ghost predicate Broadcasts(pkts: seq<I.Packet>, src: uint64, n: uint64, msg: I.Msg) {
    forall k | 0 <= k < |pkts| :: pkts[k].src == src && pkts[k].dst < n && pkts[k].msg == msg
  }

  // A broadcast Prepare(b, _) is the image of the protocol's Prepare(b) to every member.
  lemma PrepareBroadcastRefines(pkts: seq<I.Packet>, src: uint64, n: uint64, b: Ballot, from: uint64)
    requires Broadcasts(pkts, src, n, I.Prepare(b, from))
    ensures PacketsRefine(pkts, PrepareAll(src as nat, n as nat, b))
  {
    forall k | 0 <= k < |pkts| ensures PacketRefines(pkts[k], PrepareAll(src as nat, n as nat, b)) {
      PrepareAllHas(src as nat, n as nat, b, pkts[k].dst as nat);
    }
  }

  // A broadcast Accept(b, slot, val) is the image of the protocol's Accept to every member.
  lemma AcceptBroadcastRefines(pkts: seq<I.Packet>, src: uint64, n: uint64, b: Ballot, slot: uint64, val: S.Value)
    requires Broadcasts(pkts, src, n, I.Accept(b, slot, val))
    ensures PacketsRefine(pkts, AcceptAll(src as nat, n as nat, b, slot as nat, val))
  {
    forall k | 0 <= k < |pkts| ensures PacketRefines(pkts[k], AcceptAll(src as nat, n as nat, b, slot as nat, val)) {
      AcceptAllHas(src as nat, n as nat, b, slot as nat, val, pkts[k].dst as nat);
    }
  }

  // Accept(b, slot, val) from i to every member: what the protocol's SendAccept sends.
  ghost function AcceptAll(i: nat, n: nat, b: Ballot, slot: nat, val: S.Value): set<S.Message> {
    set j: nat | j < n :: S.Accept(i, j, b, slot, val)
  }

  lemma AcceptAllHas(i: nat, n: nat, b: Ballot, slot: nat, val: S.Value, j: nat)
    requires j < n
    ensures S.Accept(i, j, b, slot, val) in AcceptAll(i, n, b, slot, val)
  {
  }

  // A broadcast Learn(b, slot) is the image of the protocol's Commit(slot, v) to every member,
  // for any v (MsgRefines leaves a Learn's value open).
  // When some member accepted v at b in slot, those Learns are backed.
  lemma LearnBroadcastRefines(pkts: seq<I.Packet>, src: uint64, n: uint64, b: Ballot, slot: uint64, v: S.Value,
                              net: set<S.Message>)
    requires Broadcasts(pkts, src, n, I.Learn(b, slot))
    ensures PacketsRefine(pkts, CommitAll(src as nat, n as nat, slot as nat, v))
    ensures AcceptedAt(net, b, slot as nat, v) ==> LearnsBacked(pkts, CommitAll(src as nat, n as nat, slot as nat, v), net)
  {
    forall k | 0 <= k < |pkts| ensures PacketRefines(pkts[k], CommitAll(src as nat, n as nat, slot as nat, v)) {
      var a := S.Commit(src as nat, pkts[k].dst as nat, slot as nat, v);
      assert a in CommitAll(src as nat, n as nat, slot as nat, v);
      assert MsgRefines(pkts[k].src as nat, pkts[k].dst as nat, pkts[k].msg, a);
    }
    if AcceptedAt(net, b, slot as nat, v) {
      forall k | 0 <= k < |pkts| ensures LearnBacked(pkts[k], CommitAll(src as nat, n as nat, slot as nat, v), net) {
        var a := S.Commit(src as nat, pkts[k].dst as nat, slot as nat, v);
        assert a in CommitAll(src as nat, n as nat, slot as nat, v);
      }
    }
  }

  // Commit(slot, v) from i to every member: what the protocol's LearnChosen sends.
  ghost function CommitAll(i: nat, n: nat, slot: nat, v: S.Value): set<S.Message> {
    set j: nat | j < n :: S.Commit(i, j, slot, v)
  }

  // Prepare(b) from i to every member.
  ghost function PrepareAll(i: nat, n: nat, b: Ballot): set<S.Message> {
    set j: nat | j < n :: S.Prepare(i, j, b)
  }

  lemma PrepareAllHas(i: nat, n: nat, b: Ballot, j: nat)
    requires j < n
    ensures S.Prepare(i, j, b) in PrepareAll(i, n, b)
  {
  }
}
