// A step's output (Impl's OutTied, part of Valid()): the output buffers and the packet and
// record logs are the step so far, its trace (StepOutput), stated over their values (OutTiedOf,
// opaque), with the lemmas Send, Persist and the step's start and end use; and a packet on the
// wire of a protocol state (SentOnWire).
module ImplOutTied {
  import opened Native
  import opened ImplTypes
  import S = Spec
  import RM = ImplAbsMessages
  import O = StepOutput
  import opened Stacks

  // OutTied over the values of the fields it reads.
  opaque ghost predicate OutTiedOf(t: seq<O.Out>, sentBase: seq<Packet>, recBase: seq<Record>,
                                   sentLog: seq<Packet>, recLog: seq<Record>, me: uint64,
                                   records: seq<Record>, early: seq<Packet>, late: seq<Packet>, sync: bool,
                                   earlyAfter: uint64)
  {
    && sentLog == sentBase + O.Sends(t) && recLog == recBase + O.Records(t)
    && records == O.Records(t) && sync == O.Synced(t)
    && early == O.Early(me, t) && late == O.Late(me, t)
    && EarlyAfterOk(records, earlyAfter)
  }

  // The first earlyAfter records need no sync (the shim checks it: EarlyBeforeSync).
  ghost predicate EarlyAfterOk(records: seq<Record>, earlyAfter: uint64) {
    earlyAfter as int <= |records| && forall i | 0 <= i < earlyAfter as int :: !NeedsSync(records[i])
  }

  lemma TiedIs(t: seq<O.Out>, sentBase: seq<Packet>, recBase: seq<Record>, sentLog: seq<Packet>,
               recLog: seq<Record>, me: uint64, records: seq<Record>, early: seq<Packet>,
               late: seq<Packet>, sync: bool, earlyAfter: uint64)
    requires OutTiedOf(t, sentBase, recBase, sentLog, recLog, me, records, early, late, sync, earlyAfter)
    ensures sentLog == sentBase + O.Sends(t) && recLog == recBase + O.Records(t)
    ensures records == O.Records(t) && sync == O.Synced(t) && early == O.Early(me, t) && late == O.Late(me, t)
    ensures EarlyAfterOk(records, earlyAfter)
  {
    reveal OutTiedOf();
  }

  // A step that has done nothing yet.
  lemma TiedNone(sentLog: seq<Packet>, recLog: seq<Record>, me: uint64)
    ensures OutTiedOf([], sentLog, recLog, sentLog, recLog, me, [], [], [], false, 0)
  {
    reveal OutTiedOf();
    O.Empty(me);
    assert sentLog + [] == sentLog && recLog + [] == recLog;
  }

  // A step that has done nothing: the logs are its bases and the buffers are empty.
  lemma TiedNothing(sentBase: seq<Packet>, recBase: seq<Record>, sentLog: seq<Packet>,
                    recLog: seq<Record>, me: uint64, records: seq<Record>, early: seq<Packet>,
                    late: seq<Packet>, sync: bool, earlyAfter: uint64)
    requires OutTiedOf([], sentBase, recBase, sentLog, recLog, me, records, early, late, sync, earlyAfter)
    ensures sentLog == sentBase && recLog == recBase && records == [] && early == [] && late == [] && !sync
    ensures earlyAfter == 0
  {
    reveal OutTiedOf();
    O.Empty(me);
    assert sentBase + [] == sentBase && recBase + [] == recBase;
  }

  // Sending p: to this host, the buffers stay; to another, it is early until the step has
  // emitted a record that needs a sync, late after.
  lemma TiedSend(t: seq<O.Out>, sentBase: seq<Packet>, recBase: seq<Record>, sentLog: seq<Packet>,
                 recLog: seq<Record>, me: uint64, records: seq<Record>, early: seq<Packet>,
                 late: seq<Packet>, sync: bool, earlyAfter: uint64, p: Packet, count: uint64)
    requires OutTiedOf(t, sentBase, recBase, sentLog, recLog, me, records, early, late, sync, earlyAfter)
    requires count as int <= |records|
    ensures p.dst == me ==> OutTiedOf(t + [O.Sent(p)], sentBase, recBase, sentLog + [p], recLog, me, records, early, late, sync, earlyAfter)
    ensures p.dst != me && !sync ==> OutTiedOf(t + [O.Sent(p)], sentBase, recBase, sentLog + [p], recLog, me, records, early + [p], late, sync, count)
    ensures p.dst != me && sync ==> OutTiedOf(t + [O.Sent(p)], sentBase, recBase, sentLog + [p], recLog, me, records, early, late + [p], sync, earlyAfter)
  {
    reveal OutTiedOf();
    O.Snoc(me, t, O.Sent(p));
    if !sync {
      O.UnsyncedRecords(t);
    }
    assert early + [] == early && late + [] == late && recLog + [] == recLog && records + [] == records;
    assert sentBase + O.Sends(t + [O.Sent(p)]) == sentBase + O.Sends(t) + [p];
  }

  lemma TiedPersist(t: seq<O.Out>, sentBase: seq<Packet>, recBase: seq<Record>, sentLog: seq<Packet>,
                    recLog: seq<Record>, me: uint64, records: seq<Record>, early: seq<Packet>,
                    late: seq<Packet>, sync: bool, earlyAfter: uint64, r: Record)
    requires OutTiedOf(t, sentBase, recBase, sentLog, recLog, me, records, early, late, sync, earlyAfter)
    ensures OutTiedOf(t + [O.Emitted(r)], sentBase, recBase, sentLog, recLog + [r], me, records + [r],
                      early, late, sync || NeedsSync(r), earlyAfter)
  {
    reveal OutTiedOf();
    O.Snoc(me, t, O.Emitted(r));
    assert sentBase + O.Sends(t + [O.Emitted(r)]) == sentBase + O.Sends(t) + [];
    assert recBase + O.Records(t + [O.Emitted(r)]) == recBase + O.Records(t) + [r];
  }

  // ---- the step's commits (Impl's CommitsAre and CommitsFrom) ----------------------------

  // The commits of the slots [lo, hi), in order, each with the value C holds there.
  opaque ghost function CommitsOf(C: map<S.Slot, S.Value>, lo: uint64, hi: uint64): seq<Committed>
    decreases hi
  {
    if hi <= lo then [] else CommitsOf(C, lo, hi - 1) + [Committed(hi - 1, if (hi - 1) as nat in C then C[(hi - 1) as nat] else [])]
  }

  lemma CommitsNil(C: map<S.Slot, S.Value>, lo: uint64, hi: uint64)
    requires hi <= lo
    ensures CommitsOf(C, lo, hi) == []
  {
    reveal CommitsOf();
  }

  // One more slot, hi, with its value in C.
  lemma CommitsSnoc(C: map<S.Slot, S.Value>, lo: uint64, hi: uint64)
    requires lo <= hi < 0xFFFF_FFFF_FFFF_FFFF && hi as nat in C
    ensures CommitsOf(C, lo, hi + 1) == CommitsOf(C, lo, hi) + [Committed(hi, C[hi as nat])]
  {
    reveal CommitsOf();
  }

  // ---- the output buffers (Impl's BuffersTied) --------------------------------------------

  // The replica's output buffers, each item appended in constant time (Stacks.Buf), and its
  // self-messages: a front to take them from, then a Buf of those sent since.
  datatype Buffers = Buffers(records: Buf<Record>, recordCount: uint64, early: Buf<Packet>, late: Buf<Packet>,
                             sync: bool, earlyAfter: uint64, needSnapshot: seq<uint64>,
                             selfFront: seq<Msg>, selfBack: Buf<Msg>)

  const NoBuffers := Buffers(Short([]), 0, Short([]), Short([]), false, 0, [], [], Short([]))

  // The items of a Buf of each type, in order, in linear time.
  method RecordsOf(b: Buf<Record>) returns (r: seq<Record>)
    ensures r == Contents(b)
  {
    if b.Short? { return b.small; }
    var n := Count(b.big);
    if n == UINT64_MAX { var rest := Collect(b.big); return b.small + rest; }
    var a := new Record[n];
    Fill(b.big, a, n);
    r := b.small + a[..];
  }

  method PacketsOf(b: Buf<Packet>) returns (r: seq<Packet>)
    ensures r == Contents(b)
  {
    if b.Short? { return b.small; }
    var n := Count(b.big);
    if n == UINT64_MAX { var rest := Collect(b.big); return b.small + rest; }
    var a := new Packet[n];
    Fill(b.big, a, n);
    r := b.small + a[..];
  }

  method MsgsOf(b: Buf<Msg>) returns (r: seq<Msg>)
    ensures r == Contents(b)
  {
    if b.Short? { return b.small; }
    var n := Count(b.big);
    if n == UINT64_MAX { var rest := Collect(b.big); return b.small + rest; }
    var a := new Msg[n];
    Fill(b.big, a, n);
    r := b.small + a[..];
  }

  // The buffers hold the ghost Ready so far and the self-messages; recordCount is
  // |out.records|, at most 2^32.
  ghost predicate BuffersAre(out: Ready, selfQueue: seq<Msg>, b: Buffers) {
    && Contents(b.records) == out.records
    && b.recordCount as int == (if |out.records| < 0x1_0000_0000 then |out.records| else 0x1_0000_0000)
    && Contents(b.early) == out.early && Contents(b.late) == out.packets
    && b.sync == out.sync && b.earlyAfter == out.earlyAfter && b.needSnapshot == out.needSnapshot
    && selfQueue == b.selfFront + Contents(b.selfBack)
  }

  opaque ghost predicate BuffersTiedOf(out: Ready, selfQueue: seq<Msg>, b: Buffers) {
    BuffersAre(out, selfQueue, b)
  }

  lemma BuffersTiedIs(out: Ready, selfQueue: seq<Msg>, b: Buffers)
    requires BuffersTiedOf(out, selfQueue, b)
    ensures BuffersAre(out, selfQueue, b)
  {
    reveal BuffersTiedOf();
  }

  lemma BuffersTiedMake(out: Ready, selfQueue: seq<Msg>, b: Buffers)
    requires BuffersAre(out, selfQueue, b)
    ensures BuffersTiedOf(out, selfQueue, b)
  {
    reveal BuffersTiedOf();
  }

  // The packet is on the wire of st: its image is in the network (a Learn: backed).
  ghost predicate OnWire(p: Packet, net: set<S.Message>) {
    RM.PacketRefines(p, net) && RM.LearnBacked(p, net, net)
  }
}
