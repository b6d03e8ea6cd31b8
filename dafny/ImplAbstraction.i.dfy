// The abstraction from the executable core (Impl.i.dfy, ImplTypes.i.dfy) to the protocol
// (Protocol.i.dfy), and the vocabulary its refinement postconditions are written in.
//
// * The durable arrays: slot s lives at index s % WINDOW, valid for s in the window
//   [logStart, logStart + WINDOW). The protocol's maps are the window's non-empty entries.
// * Messages: a concrete message refines an abstract one (MsgRefines). The relation fixes
//   every field the concrete message has. Accepted(bal, slot) and Learn(bal, slot) carry no
//   value on the wire; they stand for Accepted(bal, slot, val) and Commit(slot, val), where
//   val is the value of the unique Accept(bal, slot, val) (a system-level fact, AcceptUnique,
//   so the relation leaves the value open and the protocol step that sent the message fixes it).
// * A handler of the core is a sequence of protocol steps of its host (a Run of Moves).
//
// Everything here is ghost.
module ImplAbstraction {
  import opened Native
  import opened Ballots
  import I = ImplTypes
  import S = Spec
  import P = Protocol
  import Quorums
  import QuorumFacts

  // ---------------------------------------------------------------------------------------
  // The durable state.

  // The votes held in the window [logStart, logStart + |votes|) of the array `votes`.
  opaque ghost function AbsVotes(votes: seq<I.Vote>, logStart: nat): map<S.Slot, S.Vote> {
    if |votes| == 0 then map[] else
    map s: S.Slot | logStart <= s < logStart + |votes| && votes[s % |votes|].Vote? ::
      S.Vote(votes[s % |votes|].bal, votes[s % |votes|].val)
  }

  // The committed values held in the window [logStart, logStart + |committed|).
  opaque ghost function AbsCommitted(committed: seq<I.OptValue>, logStart: nat): map<S.Slot, S.Value> {
    if |committed| == 0 then map[] else
    map s: S.Slot | logStart <= s < logStart + |committed| && committed[s % |committed|].Some? ::
      committed[s % |committed|].val
  }

  // Two slots of one window never share an index.
  lemma WindowIndexUnique(s: int, t: int, lo: int, w: int)
    requires 0 < w && lo <= s < lo + w && lo <= t < lo + w && s % w == t % w
    ensures s == t
  {
    var d := s / w - t / w;
    calc {
      s - t;
      (s / w) * w + s % w - ((t / w) * w + t % w);
      (s / w) * w - (t / w) * w;
      { MulSub(s / w, t / w, w); }
      d * w;
    }
    if d > 0 {
      MulAtLeast(d, w);
    } else if d < 0 {
      MulAtLeast(-d, w);
      assert (-d) * w == -(d * w);
    }
  }

  lemma MulSub(a: int, b: int, w: int)
    ensures a * w - b * w == (a - b) * w
  {
  }

  lemma MulAtLeast(d: int, w: int)
    requires 1 <= d && 0 < w
    ensures w <= d * w
    decreases d
  {
    if d > 1 {
      MulAtLeast(d - 1, w);
      assert d * w == (d - 1) * w + w;
    }
  }

  // Writing a vote at the index of a window slot changes the abstraction at that slot only.
  lemma AbsVotesUpdate(votes: seq<I.Vote>, logStart: nat, slot: nat, b: Ballot, v: S.Value)
    requires 0 < |votes| && logStart <= slot < logStart + |votes|
    ensures AbsVotes(votes[slot % |votes| := I.Vote(b, v)], logStart)
         == AbsVotes(votes, logStart)[slot := S.Vote(b, v)]
  {
    reveal AbsVotes();
    var w := |votes|;
    var votes' := votes[slot % w := I.Vote(b, v)];
    var m, m' := AbsVotes(votes, logStart), AbsVotes(votes', logStart);
    forall s | logStart <= s < logStart + w && s != slot
      ensures votes'[s % w] == votes[s % w]
    {
      if s % w == slot % w {
        WindowIndexUnique(s, slot, logStart, w);
      }
    }
    assert m' == m[slot := S.Vote(b, v)];
  }

  // Writing a committed value at the index of a window slot changes the abstraction at that
  // slot only.
  lemma AbsCommittedUpdate(committed: seq<I.OptValue>, logStart: nat, slot: nat, v: S.Value)
    requires 0 < |committed| && logStart <= slot < logStart + |committed|
    ensures AbsCommitted(committed[slot % |committed| := I.Some(v)], logStart)
         == AbsCommitted(committed, logStart)[slot := v]
  {
    reveal AbsCommitted();
    var w := |committed|;
    var committed' := committed[slot % w := I.Some(v)];
    var m, m' := AbsCommitted(committed, logStart), AbsCommitted(committed', logStart);
    forall s | logStart <= s < logStart + w && s != slot
      ensures committed'[s % w] == committed[s % w]
    {
      if s % w == slot % w {
        WindowIndexUnique(s, slot, logStart, w);
      }
    }
    assert m' == m[slot := v];
  }

  // Emptying an index only removes slots.
  lemma AbsVotesClear(votes: seq<I.Vote>, logStart: nat, idx: nat, hi: nat)
    requires idx < |votes| && AllBelow(AbsVotes(votes, logStart), hi)
    ensures AllBelow(AbsVotes(votes[idx := I.NoVote], logStart), hi)
  {
    reveal AbsVotes();
    reveal AllBelow();
    var votes' := votes[idx := I.NoVote];
    forall s | s in AbsVotes(votes', logStart) ensures s < hi {
      assert s in AbsVotes(votes, logStart);
    }
  }

  // An array of empty entries holds no vote.
  lemma AbsVotesEmpty(votes: seq<I.Vote>, logStart: nat)
    requires forall j | 0 <= j < |votes| :: votes[j].NoVote?
    ensures AbsVotes(votes, logStart) == map[]
  {
    reveal AbsVotes();
  }

  lemma ModShift(t: nat, w: nat)
    requires 0 < w
    ensures (t + w) % w == t % w
  {
    var q := t / w;
    assert t == q * w + t % w;
    assert t + w == (q + 1) * w + t % w by { assert (q + 1) * w == q * w + w; }
    ModUnique(t + w, q + 1, t % w, w);
  }

  // The remainder is unique.
  lemma ModUnique(a: int, q: int, r: int, w: int)
    requires 0 < w && 0 <= r < w && a == q * w + r
    ensures a % w == r
  {
    var d := q - a / w;
    assert a == (a / w) * w + a % w;
    assert d * w == a % w - r by { MulSub(q, a / w, w); }
    if d > 0 {
      MulAtLeast(d, w);
    } else if d < 0 {
      MulAtLeast(-d, w);
      assert (-d) * w == -(d * w);
    }
  }

  // Every vote of the map is at a slot below hi.
  opaque ghost predicate AllBelow(votes: map<S.Slot, S.Vote>, hi: nat) {
    forall s | s in votes :: s < hi
  }

  lemma AllBelowEmpty(hi: nat)
    ensures AllBelow(map[], hi)
  {
    reveal AllBelow();
  }

  lemma AllBelowUpdate(votes: map<S.Slot, S.Vote>, slot: nat, v: S.Vote, hi: nat, hi': nat)
    requires AllBelow(votes, hi) && hi <= hi' && slot < hi'
    ensures AllBelow(votes[slot := v], hi')
  {
    reveal AllBelow();
  }

  // The indices of the slots [lo, hi) are empty.
  ghost predicate Emptied(votes: seq<I.Vote>, lo: nat, hi: nat) {
    0 < |votes| && forall t: nat {:trigger Entry(votes, t)} | lo <= t < hi :: Entry(votes, t).NoVote?
  }

  // Emptying the index of slot hi extends the emptied range [lo, hi) by one.
  lemma EmptiedExtend(votes: seq<I.Vote>, votes': seq<I.Vote>, lo: nat, hi: nat)
    requires Emptied(votes, lo, hi) && votes' == votes[hi % |votes| := I.NoVote]
    ensures Emptied(votes', lo, hi + 1)
  {
    forall t: nat | lo <= t < hi + 1 ensures Entry(votes', t).NoVote? {
      if t < hi && t % |votes| != hi % |votes| {
        assert Entry(votes, t).NoVote?;
      }
    }
  }

  // The entry of slot t.
  ghost function Entry<T>(a: seq<T>, t: nat): T
    requires 0 < |a|
  {
    a[t % |a|]
  }

  // The committed-value indices of the slots [lo, hi) are empty.
  ghost predicate EmptiedC(committed: seq<I.OptValue>, lo: nat, hi: nat) {
    0 < |committed| && forall t: nat {:trigger Entry(committed, t)} | lo <= t < hi :: Entry(committed, t).None?
  }

  lemma EmptiedCExtend(committed: seq<I.OptValue>, committed': seq<I.OptValue>, lo: nat, hi: nat)
    requires EmptiedC(committed, lo, hi) && committed' == committed[hi % |committed| := I.None]
    ensures EmptiedC(committed', lo, hi + 1)
  {
    forall t: nat | lo <= t < hi + 1 ensures Entry(committed', t).None? {
      if t < hi && t % |committed| != hi % |committed| {
        assert Entry(committed, t).None?;
      }
    }
  }

  // a and b hold the same entries for the slots [lo, hi).
  ghost predicate Same<T>(a: seq<T>, b: seq<T>, lo: nat, hi: nat) {
    0 < |a| == |b| && forall t: nat {:trigger Entry(a, t)} | lo <= t < hi :: Entry(a, t) == Entry(b, t)
  }

  // Writing the entry of slot s, the lowest of a window's range [s, hi), keeps the others.
  lemma SameStep<T>(a: seq<T>, a': seq<T>, b: seq<T>, lo: nat, s: nat, hi: nat, x: T)
    requires Same(a, b, s, hi) && a' == a[s % |a| := x] && lo <= s && hi <= lo + |a|
    ensures Same(a', b, s + 1, hi)
  {
    forall t: nat | s + 1 <= t < hi ensures Entry(a', t) == Entry(b, t) {
      if t % |a| == s % |a| {
        WindowIndexUnique(t, s, lo, |a|);
      }
      assert Entry(a, t) == Entry(b, t);
    }
  }

  lemma SameRefl<T>(a: seq<T>, lo: nat, hi: nat)
    requires 0 < |a|
    ensures Same(a, a, lo, hi)
  {
  }

  // Truncating: the window moves from lo to lo' after the indices of [lo, lo') were emptied
  // and the rest kept; the abstraction loses the slots below lo' and gains none.
  lemma AbsVotesTruncate(v0: seq<I.Vote>, v: seq<I.Vote>, lo: nat, lo': nat)
    requires lo <= lo' <= lo + |v| && Emptied(v, lo, lo') && Same(v, v0, lo', lo + |v|)
    ensures AbsVotes(v, lo') == P.VotesFrom(AbsVotes(v0, lo), lo')
  {
    reveal AbsVotes();
    var w := |v|;
    var a, b := AbsVotes(v, lo'), P.VotesFrom(AbsVotes(v0, lo), lo');
    forall s | s in a ensures s in b && a[s] == b[s] {
      if s >= lo + w {
        var t: nat := s - w;
        ModShift(t, w);
        assert Entry(v, t).NoVote?;
        assert false;
      }
      assert Entry(v, s) == Entry(v0, s);
    }
    forall s | s in b ensures s in a {
      assert Entry(v, s) == Entry(v0, s);
    }
    assert a == b;
  }

  // The committed values at slots >= t.
  ghost function CommittedFrom(committed: map<S.Slot, S.Value>, t: nat): map<S.Slot, S.Value> {
    map slot | slot in committed && slot >= t :: committed[slot]
  }

  lemma AbsCommittedTruncate(c0: seq<I.OptValue>, c: seq<I.OptValue>, lo: nat, lo': nat)
    requires lo <= lo' <= lo + |c| && EmptiedC(c, lo, lo') && Same(c, c0, lo', lo + |c|)
    ensures AbsCommitted(c, lo') == CommittedFrom(AbsCommitted(c0, lo), lo')
  {
    reveal AbsCommitted();
    var w := |c|;
    var a, b := AbsCommitted(c, lo'), CommittedFrom(AbsCommitted(c0, lo), lo');
    forall s | s in a ensures s in b && a[s] == b[s] {
      if s >= lo + w {
        var t: nat := s - w;
        ModShift(t, w);
        assert Entry(c, t).None?;
        assert false;
      }
      assert Entry(c, s) == Entry(c0, s);
    }
    forall s | s in b ensures s in a {
      assert Entry(c, s) == Entry(c0, s);
    }
    assert a == b;
  }

  lemma AllBelowFrom(votes: map<S.Slot, S.Vote>, t: nat, hi: nat, hi': nat)
    requires AllBelow(votes, hi) && hi <= hi'
    ensures AllBelow(P.VotesFrom(votes, t), hi')
  {
    reveal AllBelow();
  }

  // ---------------------------------------------------------------------------------------
  // The committed prefix: every slot in [lo, hi) is committed.

  opaque ghost predicate HasAll(committed: map<S.Slot, S.Value>, lo: nat, hi: nat) {
    forall s: nat | lo <= s < hi :: s in committed
  }

  lemma HasAllSub(committed: map<S.Slot, S.Value>, lo: nat, hi: nat, lo': nat, hi': nat)
    requires HasAll(committed, lo, hi) && lo <= lo' && (hi' <= hi || hi' <= lo')
    ensures HasAll(committed, lo', hi')
  {
    reveal HasAll();
  }

  lemma HasAllEmpty(committed: map<S.Slot, S.Value>, lo: nat)
    ensures HasAll(committed, lo, lo)
  {
    reveal HasAll();
  }

  lemma HasAllAdd(committed: map<S.Slot, S.Value>, lo: nat, hi: nat, slot: nat, v: S.Value)
    requires HasAll(committed, lo, hi)
    ensures HasAll(committed[slot := v], lo, hi)
  {
    reveal HasAll();
  }

  lemma HasAllExtend(committed: map<S.Slot, S.Value>, lo: nat, hi: nat)
    requires HasAll(committed, lo, hi) && hi in committed
    ensures HasAll(committed, lo, hi + 1)
  {
    reveal HasAll();
  }

  lemma HasAllFrom(committed: map<S.Slot, S.Value>, t: nat, lo: nat, hi: nat)
    requires HasAll(committed, lo, hi) && t <= lo
    ensures HasAll(CommittedFrom(committed, t), lo, hi)
  {
    reveal HasAll();
  }

  lemma HasAllCovers(committed: map<S.Slot, S.Value>, lo: nat, hi: nat)
    requires HasAll(committed, lo, hi)
    ensures forall s | lo <= s < hi :: s in committed
  {
    reveal HasAll();
  }

  // The abstraction of committed values at one window slot.
  lemma AbsCommittedAt(committed: seq<I.OptValue>, logStart: nat, slot: nat)
    requires 0 < |committed| && logStart <= slot < logStart + |committed|
    ensures slot in AbsCommitted(committed, logStart) <==> committed[slot % |committed|].Some?
    ensures slot in AbsCommitted(committed, logStart) ==>
              AbsCommitted(committed, logStart)[slot] == committed[slot % |committed|].val
  {
    reveal AbsCommitted();
  }

  lemma AbsCommittedEmpty(committed: seq<I.OptValue>, logStart: nat)
    requires forall j | 0 <= j < |committed| :: committed[j].None?
    ensures AbsCommitted(committed, logStart) == map[]
  {
    reveal AbsCommitted();
  }

  // The abstraction holds window slots only.
  lemma AbsVotesKeys(votes: seq<I.Vote>, logStart: nat)
    ensures forall s | s in AbsVotes(votes, logStart) :: logStart <= s < logStart + |votes|
  {
    reveal AbsVotes();
  }

  lemma AbsCommittedKeys(committed: seq<I.OptValue>, logStart: nat)
    ensures forall s | s in AbsCommitted(committed, logStart) :: logStart <= s < logStart + |committed|
  {
    reveal AbsCommitted();
  }

  // The abstraction at one window slot.
  lemma AbsVotesAt(votes: seq<I.Vote>, logStart: nat, slot: nat)
    requires 0 < |votes| && logStart <= slot < logStart + |votes|
    ensures slot in AbsVotes(votes, logStart) <==> votes[slot % |votes|].Vote?
    ensures slot in AbsVotes(votes, logStart) ==>
              AbsVotes(votes, logStart)[slot] == S.Vote(votes[slot % |votes|].bal, votes[slot % |votes|].val)
  {
    reveal AbsVotes();
  }

  // An empty entry at the index of a window slot: the slot is absent from the abstraction.
  lemma AbsCommittedNone(committed: seq<I.OptValue>, logStart: nat, slot: nat)
    requires 0 < |committed| && logStart <= slot < logStart + |committed|
    ensures committed[slot % |committed|].None? <==> slot !in AbsCommitted(committed, logStart)
  {
    reveal AbsCommitted();
  }

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

  // ---------------------------------------------------------------------------------------
  // Runs: sequences of protocol steps of one host.

  // One protocol step: which step, what it sent, and the host's state after it.
  datatype Move = Move(ghost step: P.Step, ghost sent: set<S.Message>, ghost post: P.Host)

  // Host i goes from h to h' by the steps `moves`; every message they receive is in net.
  opaque ghost predicate Run(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, moves: seq<Move>, h': P.Host)
    decreases |moves|
  {
    if moves == [] then h' == h
    else P.HostStep(c, i, h, moves[0].post, net, moves[0].sent, moves[0].step)
         && Run(c, i, moves[0].post, net, moves[1..], h')
  }

  // Everything the steps sent.
  ghost function SentBy(moves: seq<Move>): set<S.Message>
    decreases |moves|
  {
    if moves == [] then {} else moves[0].sent + SentBy(moves[1..])
  }

  // Runs from h to h' that sent the images of pkts, one of them named (a lemma, so that the
  // Replica's methods need no `:|` statement: see the head of Impl.i.dfy).
  lemma RunThatSent(c: P.Constants, i: S.HostId, h: P.Host, h': P.Host, pkts: seq<I.Packet>) returns (moves: seq<Move>)
    requires exists moves :: Run(c, i, h, {}, moves, h') && PacketsRefine(pkts, SentBy(moves))
    ensures Run(c, i, h, {}, moves, h') && PacketsRefine(pkts, SentBy(moves))
  {
    moves :| Run(c, i, h, {}, moves, h') && PacketsRefine(pkts, SentBy(moves));
  }

  lemma RunNil(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>)
    ensures Run(c, i, h, net, [], h) && SentBy([]) == {}
  {
    reveal Run();
  }

  lemma RunOne(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, mv: Move)
    requires P.HostStep(c, i, h, mv.post, net, mv.sent, mv.step)
    ensures Run(c, i, h, net, [mv], mv.post) && SentBy([mv]) == mv.sent
  {
    reveal Run();
    assert [mv][1..] == [];
  }

  lemma RunCons(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, mv: Move, rest: seq<Move>, h': P.Host)
    requires P.HostStep(c, i, h, mv.post, net, mv.sent, mv.step)
    requires Run(c, i, mv.post, net, rest, h')
    ensures Run(c, i, h, net, [mv] + rest, h') && SentBy([mv] + rest) == mv.sent + SentBy(rest)
  {
    reveal Run();
    assert ([mv] + rest)[1..] == rest;
  }

  // A run extended by one more step.
  lemma RunSnoc(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, moves: seq<Move>, h1: P.Host, mv: Move)
    requires Run(c, i, h, net, moves, h1)
    requires P.HostStep(c, i, h1, mv.post, net, mv.sent, mv.step)
    ensures Run(c, i, h, net, moves + [mv], mv.post) && SentBy(moves + [mv]) == SentBy(moves) + mv.sent
    decreases |moves|
  {
    reveal Run();
    if moves == [] {
      RunOne(c, i, h, net, mv);
      assert moves + [mv] == [mv];
    } else {
      RunSnoc(c, i, moves[0].post, net, moves[1..], h1, mv);
      assert (moves + [mv])[1..] == moves[1..] + [mv];
    }
  }

  // Two runs, one after the other.
  lemma RunAppend(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, moves: seq<Move>, h1: P.Host,
                  moves': seq<Move>, h2: P.Host)
    requires Run(c, i, h, net, moves, h1) && Run(c, i, h1, net, moves', h2)
    ensures Run(c, i, h, net, moves + moves', h2) && SentBy(moves + moves') == SentBy(moves) + SentBy(moves')
    decreases |moves|
  {
    reveal Run();
    if moves == [] {
      assert moves + moves' == moves';
    } else {
      RunAppend(c, i, moves[0].post, net, moves[1..], h1, moves', h2);
      assert (moves + moves')[1..] == moves[1..] + moves';
    }
  }

  // A trail: from h0, with the host's packet log at log0, the steps `moves` (receiving only
  // from net) lead to h, and every packet sent since (log[|log0|..]) is an image of a message
  // they sent (a Learn: backed by an Accepted in net, LearnBacked), or a packet the host had
  // sent before (a re-send: its image is in the network already). A handler's theorem is a
  // trail from its entry state to its exit state.
  opaque ghost predicate Trail(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                               moves: seq<Move>, h: P.Host, log: seq<I.Packet>) {
    && log0 <= log
    && Run(c, i, h0, net, moves, h)
    && forall k | |log0| <= k < |log| ::
         (PacketRefines(log[k], SentBy(moves)) && LearnBacked(log[k], SentBy(moves), net)) || log[k] in log0
  }

  lemma TrailNil(c: P.Constants, i: S.HostId, h: P.Host, log: seq<I.Packet>, net: set<S.Message>)
    ensures Trail(c, i, h, log, net, [], h, log)
  {
    reveal Trail();
    RunNil(c, i, h, net);
  }

  // A run whose packets are all images of what it sent is a trail.
  lemma TrailOf(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                moves: seq<Move>, h: P.Host, log: seq<I.Packet>)
    requires log0 <= log && Run(c, i, h0, net, moves, h) && PacketsRefine(log[|log0|..], SentBy(moves))
    requires LearnsBacked(log[|log0|..], SentBy(moves), net)
    ensures Trail(c, i, h0, log0, net, moves, h, log)
  {
    reveal Trail();
    forall k | |log0| <= k < |log| ensures PacketRefines(log[k], SentBy(moves)) && LearnBacked(log[k], SentBy(moves), net) {
      assert log[|log0|..][k - |log0|] == log[k];
    }
  }

  // What a trail says.
  lemma TrailIs(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                moves: seq<Move>, h: P.Host, log: seq<I.Packet>)
    requires Trail(c, i, h0, log0, net, moves, h, log)
    ensures log0 <= log && Run(c, i, h0, net, moves, h)
    ensures forall k | |log0| <= k < |log| ::
              (PacketRefines(log[k], SentBy(moves)) && LearnBacked(log[k], SentBy(moves), net)) || log[k] in log0
  {
    reveal Trail();
  }

  // A packet a trail's log holds is one sent before it, or the image of a message it sent.
  lemma TrailHas(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                 moves: seq<Move>, h: P.Host, log: seq<I.Packet>, p: I.Packet)
    requires Trail(c, i, h0, log0, net, moves, h, log) && p in log
    ensures p in log0 || (PacketRefines(p, SentBy(moves)) && LearnBacked(p, SentBy(moves), net))
  {
    reveal Trail();
    var k :| 0 <= k < |log| && log[k] == p;
    if k < |log0| {
      assert log0[k] == p;
    }
  }

  lemma TrailChain(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                   moves: seq<Move>, h1: P.Host, log1: seq<I.Packet>, moves': seq<Move>, h2: P.Host, log2: seq<I.Packet>)
    requires Trail(c, i, h0, log0, net, moves, h1, log1) && Trail(c, i, h1, log1, net, moves', h2, log2)
    ensures Trail(c, i, h0, log0, net, moves + moves', h2, log2)
  {
    reveal Trail();
    RunAppend(c, i, h0, net, moves, h1, moves', h2);
    var all := SentBy(moves + moves');
    forall k | |log0| <= k < |log2| ensures (PacketRefines(log2[k], all) && LearnBacked(log2[k], all, net)) || log2[k] in log0 {
      if k < |log1| {
        assert log2[k] == log1[k];
        if log1[k] !in log0 {
          PacketRefinesMono(log1[k], SentBy(moves), all);
          LearnBackedMono(log1[k], SentBy(moves), net, all, net);
        }
      } else if PacketRefines(log2[k], SentBy(moves')) && LearnBacked(log2[k], SentBy(moves'), net) {
        PacketRefinesMono(log2[k], SentBy(moves'), all);
        LearnBackedMono(log2[k], SentBy(moves'), net, all, net);
      } else {
        TrailHas(c, i, h0, log0, net, moves, h1, log1, log2[k]);
        if log2[k] !in log0 {
          PacketRefinesMono(log2[k], SentBy(moves), all);
          LearnBackedMono(log2[k], SentBy(moves), net, all, net);
        }
      }
    }
  }

  // One more step, which sent what the packets appended since log1 are images of.
  lemma TrailSnoc(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                  moves: seq<Move>, h1: P.Host, log1: seq<I.Packet>, mv: Move, log2: seq<I.Packet>)
    requires Trail(c, i, h0, log0, net, moves, h1, log1)
    requires P.HostStep(c, i, h1, mv.post, net, mv.sent, mv.step)
    requires log1 <= log2 && PacketsRefine(log2[|log1|..], mv.sent) && LearnsBacked(log2[|log1|..], mv.sent, net)
    ensures Trail(c, i, h0, log0, net, moves + [mv], mv.post, log2)
  {
    RunOne(c, i, h1, net, mv);
    TrailOf(c, i, h1, log1, net, [mv], mv.post, log2);
    TrailChain(c, i, h0, log0, net, moves, h1, log1, [mv], mv.post, log2);
  }

  // Packets sent again: the host is unchanged, and every packet appended is one it sent before.
  lemma TrailResend(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                    moves: seq<Move>, h: P.Host, log1: seq<I.Packet>, log2: seq<I.Packet>)
    requires Trail(c, i, h0, log0, net, moves, h, log1)
    requires log1 <= log2 && forall k | |log1| <= k < |log2| :: log2[k] in log1
    ensures Trail(c, i, h0, log0, net, moves, h, log2)
  {
    reveal Trail();
    RunNil(c, i, h, net);
    assert moves + [] == moves;
    TrailChain(c, i, h0, log0, net, moves, h, log1, [], h, log2);
  }

  // A trail may receive from any larger network.
  lemma TrailNet(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>, net': set<S.Message>,
                 moves: seq<Move>, h: P.Host, log: seq<I.Packet>)
    requires Trail(c, i, h0, log0, net, moves, h, log) && net <= net'
    ensures Trail(c, i, h0, log0, net', moves, h, log)
  {
    reveal Trail();
    RunNetMonotone(c, i, h0, net, net', moves, h);
    forall k | |log0| <= k < |log| && log[k] !in log0 ensures LearnBacked(log[k], SentBy(moves), net') {
      LearnBackedMono(log[k], SentBy(moves), net, SentBy(moves), net');
    }
  }

  // Heartbeat(b, cu) from i to the members below n, one SendNoSafety step each.
  ghost function BeatMoves(h: P.Host, i: nat, n: nat, b: Ballot, cu: nat): seq<Move>
    decreases n
  {
    if n == 0 then [] else BeatMoves(h, i, n - 1, b, cu) + [NoSafety(h, S.Heartbeat(i, n - 1, b, cu))]
  }

  // A leader of b broadcasting Heartbeat(b, cu, _) takes the steps BeatMoves.
  lemma BeatRefines(c: P.Constants, h: P.Host, net: set<S.Message>, src: uint64, n: uint64, b: Ballot, cu: uint64,
                    rs: uint64, pkts: seq<I.Packet>)
    requires n as nat <= c.n && h.leader.Leading? && h.leader.bal == b
    requires Broadcasts(pkts, src, n, I.Heartbeat(b, cu, rs))
    ensures Run(c, src as nat, h, net, BeatMoves(h, src as nat, n as nat, b, cu as nat), h)
    ensures PacketsRefine(pkts, SentBy(BeatMoves(h, src as nat, n as nat, b, cu as nat)))
  {
    BeatSteps(c, src as nat, h, net, n as nat, b, cu as nat);
    forall k | 0 <= k < |pkts| ensures PacketRefines(pkts[k], SentBy(BeatMoves(h, src as nat, n as nat, b, cu as nat))) {
      assert S.Heartbeat(src as nat, pkts[k].dst as nat, b, cu as nat) in SentBy(BeatMoves(h, src as nat, n as nat, b, cu as nat));
    }
  }

  lemma BeatSteps(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, n: nat, b: Ballot, cu: nat)
    requires n <= c.n && h.leader.Leading? && h.leader.bal == b
    ensures Run(c, i, h, net, BeatMoves(h, i, n, b, cu), h)
    ensures forall j: nat | j < n :: S.Heartbeat(i, j, b, cu) in SentBy(BeatMoves(h, i, n, b, cu))
    decreases n
  {
    if n == 0 {
      RunNil(c, i, h, net);
    } else {
      BeatSteps(c, i, h, net, n - 1, b, cu);
      var mv := NoSafety(h, S.Heartbeat(i, n - 1, b, cu));
      assert P.HostStep(c, i, h, mv.post, net, mv.sent, mv.step);
      RunSnoc(c, i, h, net, BeatMoves(h, i, n - 1, b, cu), h, mv);
    }
  }

  // Packets sent one after the other.
  lemma PacketsRefineAppend(ps: seq<I.Packet>, qs: seq<I.Packet>, sent: set<S.Message>, sent': set<S.Message>)
    requires PacketsRefine(ps, sent) && PacketsRefine(qs, sent')
    ensures PacketsRefine(ps + qs, sent + sent')
  {
    forall k | 0 <= k < |ps + qs| ensures PacketRefines((ps + qs)[k], sent + sent') {
      if k < |ps| {
        PacketRefinesMono(ps[k], sent, sent + sent');
      } else {
        PacketRefinesMono(qs[k - |ps|], sent', sent + sent');
      }
    }
  }

  lemma PacketRefinesMono(p: I.Packet, sent: set<S.Message>, sent': set<S.Message>)
    requires PacketRefines(p, sent) && sent <= sent'
    ensures PacketRefines(p, sent')
  {
    if p.msg.Promise? || p.msg.Accepted? || p.msg.Learn? {
      var a :| a in sent && MsgRefines(p.src as nat, p.dst as nat, p.msg, a);
      assert a in sent';
    }
  }

  // A run can receive from any larger network (receiving never removes a message).
  lemma RunNetMonotone(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, net': set<S.Message>,
                       moves: seq<Move>, h': P.Host)
    requires net <= net' && Run(c, i, h, net, moves, h')
    ensures Run(c, i, h, net', moves, h')
    decreases |moves|
  {
    reveal Run();
    if moves != [] {
      var mv := moves[0];
      if mv.step.LearnChosenStep? {
        var st := mv.step;
        forall a | a in st.q ensures S.SentAccepted(net', a, st.bal, st.slot, st.val) {
          assert S.SentAccepted(net, a, st.bal, st.slot, st.val);
          var x :| x in net && x.Accepted? && x.src == a && x.bal == st.bal && x.slot == st.slot && x.val == st.val;
          assert x in net';
        }
      }
      RunNetMonotone(c, i, mv.post, net, net', moves[1..], h');
    }
  }

  // One step reading net reads as well from a larger network.
  lemma HostStepNetMonotone(c: P.Constants, i: S.HostId, h: P.Host, h': P.Host, net: set<S.Message>,
                            net': set<S.Message>, sent: set<S.Message>, step: P.Step)
    requires net <= net' && P.HostStep(c, i, h, h', net, sent, step)
    ensures P.HostStep(c, i, h, h', net', sent, step)
  {
    var mv := Move(step, sent, h');
    RunOne(c, i, h, net, mv);
    RunNetMonotone(c, i, h, net, net', [mv], h');
    reveal Run();
  }

  lemma SentByAppend(moves: seq<Move>, moves': seq<Move>)
    ensures SentBy(moves + moves') == SentBy(moves) + SentBy(moves')
    decreases |moves|
  {
    if moves == [] {
      assert moves + moves' == moves';
    } else {
      assert (moves + moves')[1..] == moves[1..] + moves';
      SentByAppend(moves[1..], moves');
    }
  }

  // ---------------------------------------------------------------------------------------
  // A whole step of the core: the handlers it runs, one after another, each a trail; the
  // messages the host sends itself during the step are received within it, so a step of the
  // run reads, besides the network it started from, what the steps before it sent.

  // Host i goes from h to h' by `moves`; each step receives from net or from what the steps
  // before it sent.
  opaque ghost predicate RunG(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, moves: seq<Move>, h': P.Host)
    decreases |moves|
  {
    if moves == [] then h' == h
    else P.HostStep(c, i, h, moves[0].post, net, moves[0].sent, moves[0].step)
         && RunG(c, i, moves[0].post, net + moves[0].sent, moves[1..], h')
  }

  // A run reading from net0 <= net is such a run.
  lemma RunGOf(c: P.Constants, i: S.HostId, h: P.Host, net0: set<S.Message>, net: set<S.Message>, moves: seq<Move>, h': P.Host)
    requires Run(c, i, h, net0, moves, h') && net0 <= net
    ensures RunG(c, i, h, net, moves, h')
    decreases |moves|
  {
    reveal Run();
    reveal RunG();
    if moves != [] {
      HostStepNetMonotone(c, i, h, moves[0].post, net0, net, moves[0].sent, moves[0].step);
      RunGOf(c, i, moves[0].post, net0, net + moves[0].sent, moves[1..], h');
    }
  }

  // Two such runs, the second reading as well what the first sent.
  lemma RunGAppend(c: P.Constants, i: S.HostId, h: P.Host, net: set<S.Message>, moves: seq<Move>, h1: P.Host,
                   moves': seq<Move>, h2: P.Host)
    requires RunG(c, i, h, net, moves, h1) && RunG(c, i, h1, net + SentBy(moves), moves', h2)
    ensures RunG(c, i, h, net, moves + moves', h2)
    decreases |moves|
  {
    reveal RunG();
    if moves == [] {
      assert moves + moves' == moves';
      assert net + SentBy(moves) == net;
    } else {
      assert net + SentBy(moves) == (net + moves[0].sent) + SentBy(moves[1..]);
      RunGAppend(c, i, moves[0].post, net + moves[0].sent, moves[1..], h1, moves', h2);
      assert (moves + moves')[1..] == moves[1..] + moves';
    }
  }

  // A step's trail: a trail whose run is a RunG, its Learns backed by what the network held
  // or the step sent.
  opaque ghost predicate StepTrail(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                                   moves: seq<Move>, h: P.Host, log: seq<I.Packet>) {
    && log0 <= log
    && RunG(c, i, h0, net, moves, h)
    && forall k | |log0| <= k < |log| ::
         (PacketRefines(log[k], SentBy(moves)) && LearnBacked(log[k], SentBy(moves), net + SentBy(moves))) || log[k] in log0
  }

  lemma StepTrailNil(c: P.Constants, i: S.HostId, h: P.Host, log: seq<I.Packet>, net: set<S.Message>)
    ensures StepTrail(c, i, h, log, net, [], h, log)
  {
    reveal StepTrail();
    reveal RunG();
  }

  // What a step's trail says.
  lemma StepTrailIs(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                    moves: seq<Move>, h: P.Host, log: seq<I.Packet>)
    requires StepTrail(c, i, h0, log0, net, moves, h, log)
    ensures log0 <= log && RunG(c, i, h0, net, moves, h)
    ensures forall k | |log0| <= k < |log| ::
              (PacketRefines(log[k], SentBy(moves)) && LearnBacked(log[k], SentBy(moves), net + SentBy(moves))) || log[k] in log0
  {
    reveal StepTrail();
  }

  // A packet a step's trail's log holds is one sent before it, or the image of a message it sent.
  lemma StepTrailHas(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                     moves: seq<Move>, h: P.Host, log: seq<I.Packet>, p: I.Packet)
    requires StepTrail(c, i, h0, log0, net, moves, h, log) && p in log
    ensures p in log0 || (PacketRefines(p, SentBy(moves)) && LearnBacked(p, SentBy(moves), net + SentBy(moves)))
  {
    reveal StepTrail();
    var k :| 0 <= k < |log| && log[k] == p;
    if k < |log0| {
      assert log0[k] == p;
    }
  }

  // A run that sends nothing (Truncate, InstallSnapshot) is a step's trail.
  lemma RunStepTrail(c: P.Constants, i: S.HostId, h0: P.Host, net0: set<S.Message>, net: set<S.Message>,
                     moves: seq<Move>, h: P.Host, log: seq<I.Packet>)
    requires Run(c, i, h0, net0, moves, h) && net0 <= net
    ensures StepTrail(c, i, h0, log, net, moves, h, log)
  {
    RunGOf(c, i, h0, net0, net, moves, h);
    reveal StepTrail();
  }

  // A step's trail followed by a handler's trail that reads the network and what the step sent.
  lemma StepTrailChain(c: P.Constants, i: S.HostId, h0: P.Host, log0: seq<I.Packet>, net: set<S.Message>,
                       moves: seq<Move>, h1: P.Host, log1: seq<I.Packet>, moves': seq<Move>, h2: P.Host, log2: seq<I.Packet>)
    requires StepTrail(c, i, h0, log0, net, moves, h1, log1)
    requires Trail(c, i, h1, log1, net + SentBy(moves), moves', h2, log2)
    ensures StepTrail(c, i, h0, log0, net, moves + moves', h2, log2)
  {
    StepTrailIs(c, i, h0, log0, net, moves, h1, log1);
    TrailIs(c, i, h1, log1, net + SentBy(moves), moves', h2, log2);
    RunGOf(c, i, h1, net + SentBy(moves), net + SentBy(moves), moves', h2);
    RunGAppend(c, i, h0, net, moves, h1, moves', h2);
    SentByAppend(moves, moves');
    var all := SentBy(moves + moves');
    var netAll := net + all;
    reveal StepTrail();
    forall k | |log0| <= k < |log2| ensures (PacketRefines(log2[k], all) && LearnBacked(log2[k], all, netAll)) || log2[k] in log0 {
      var p := log2[k];
      if k < |log1| {
        assert p == log1[k];
        if p !in log0 {
          PacketRefinesMono(p, SentBy(moves), all);
          LearnBackedMono(p, SentBy(moves), net + SentBy(moves), all, netAll);
        }
      } else if PacketRefines(p, SentBy(moves')) && LearnBacked(p, SentBy(moves'), net + SentBy(moves)) {
        PacketRefinesMono(p, SentBy(moves'), all);
        LearnBackedMono(p, SentBy(moves'), net + SentBy(moves), all, netAll);
      } else {
        assert p in log1;
        StepTrailHas(c, i, h0, log0, net, moves, h1, log1, p);
        if p !in log0 {
          PacketRefinesMono(p, SentBy(moves), all);
          LearnBackedMono(p, SentBy(moves), net + SentBy(moves), all, netAll);
        }
      }
    }
  }

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

  // A message with no safety role, sent by a step that changes nothing.
  ghost function NoSafety(h: P.Host, m: S.Message): Move {
    Move(P.SendNoSafetyStep(m), {m}, h)
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
  // state is not proven yet.

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
    && forall k | |recs'| <= k < |recs| :: recs[k].RecCommit?
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
