// A leader's ghost state (Impl's AcksTied, ProposedTied and LeaderTied, part of Valid()): its
// acknowledgement flags stand for Accepted messages it received (Acks; a quorum of them for a
// slot: its proposal there was chosen, AcksQuorum); its proposed array agrees with the ghost
// leader state (ProposalsLed) and went out in Accepts to every member (ProposalsSent); and every
// slot from nextSlot on is free for any value (Leads), from the takeover map on (LeadsTakeover).
module ImplLeader {
  import opened Native
  import opened Ballots
  import opened ImplTypes
  import opened ImplBounds
  import Quorums
  import QuorumFacts
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import RS = ImplAbsState
  import RM = ImplAbsMessages
  import Cand = ImplCandidate

  // ---- the acknowledgements (AcksTied) -------------------------------------------------------

  // The flag of member j for the window slot s in acks (false off the array).
  ghost function AckAt(acks: seq<bool>, n: uint64, s: nat, j: uint64): bool {
    var k := (s % WINDOW as nat) * n as nat + j as nat;
    k < |acks| && acks[k]
  }

  // An Accepted message counted (in acked) is from j, for bal and slot s.
  ghost predicate AckedBy(acked: set<S.Message>, j: nat, bal: Ballot, s: nat) {
    exists x | x in acked :: x.Accepted? && x.src == j && x.bal == bal && x.slot == s
  }

  // AcksTied over the values of the fields it reads.
  opaque ghost predicate Acks(role: Role, bal: Ballot, acked: set<S.Message>, acks: seq<bool>, n: uint64, logStart: nat) {
    role != Follower ==>
      forall s: nat, j: uint64 {:trigger AckAt(acks, n, s, j)} |
        logStart <= s < logStart + WINDOW as nat && j < n && AckAt(acks, n, s, j) :: AckedBy(acked, j as nat, bal, s)
  }

  lemma AcksFollower(bal: Ballot, acked: set<S.Message>, acks: seq<bool>, n: uint64, logStart: nat)
    ensures Acks(Follower, bal, acked, acks, n, logStart)
  {
    reveal Acks();
  }

  lemma AcksNone(role: Role, bal: Ballot, acked: set<S.Message>, acks: seq<bool>, n: uint64, logStart: nat)
    requires forall k | 0 <= k < |acks| :: !acks[k]
    ensures Acks(role, bal, acked, acks, n, logStart)
  {
    reveal Acks();
  }

  lemma AcksRole(role: Role, role': Role, bal: Ballot, acked: set<S.Message>, acks: seq<bool>, n: uint64, logStart: nat)
    requires Acks(role, bal, acked, acks, n, logStart) && role != Follower
    ensures Acks(role', bal, acked, acks, n, logStart)
  {
    reveal Acks();
  }

  // Fewer flags keep it.
  lemma AcksFewer(role: Role, bal: Ballot, acked: set<S.Message>, acks: seq<bool>, acks': seq<bool>, n: uint64, logStart: nat)
    requires Acks(role, bal, acked, acks, n, logStart) && |acks'| == |acks|
    requires forall k | 0 <= k < |acks| :: acks'[k] ==> acks[k]
    ensures Acks(role, bal, acked, acks', n, logStart)
  {
    reveal Acks();
    if role != Follower {
      forall s: nat, j: uint64 | logStart <= s < logStart + WINDOW as nat && j < n && AckAt(acks', n, s, j)
        ensures AckedBy(acked, j as nat, bal, s)
      {
        assert AckAt(acks, n, s, j);
      }
    }
  }

  // One more flag, for (slot, src), with the Accepted it stands for counted.
  lemma AcksAdd(role: Role, bal: Ballot, acked: set<S.Message>, acks: seq<bool>, n: uint64, logStart: nat,
                slot: nat, src: uint64, a: S.Message)
    requires Acks(role, bal, acked, acks, n, logStart) && logStart <= slot < logStart + WINDOW as nat && src < n
    requires (slot % WINDOW as nat) * n as nat + src as nat < |acks|
    requires a.Accepted? && a.src == src as nat && a.bal == bal && a.slot == slot
    ensures Acks(role, bal, acked + {a}, acks[(slot % WINDOW as nat) * n as nat + src as nat := true], n, logStart)
  {
    reveal Acks();
    var k0 := (slot % WINDOW as nat) * n as nat + src as nat;
    var acks' := acks[k0 := true];
    if role != Follower {
      forall s: nat, j: uint64 | logStart <= s < logStart + WINDOW as nat && j < n && AckAt(acks', n, s, j)
        ensures AckedBy(acked + {a}, j as nat, bal, s)
      {
        var k := (s % WINDOW as nat) * n as nat + j as nat;
        if k == k0 {
          AckIndexSame(s % WINDOW as nat, j as nat, slot % WINDOW as nat, src as nat, n as nat);
          RS.WindowIndexUnique(s, slot, logStart, WINDOW as nat);
          assert a in acked + {a};
        } else {
          assert AckAt(acks, n, s, j);
          var x :| x in acked && x.Accepted? && x.src == j as nat && x.bal == bal && x.slot == s;
          assert x in acked + {a};
        }
      }
    }
  }

  // The window moves up to t: the flags of the slots [logStart, t) were cleared, the others
  // kept or cleared.
  lemma AcksTruncate(role: Role, bal: Ballot, acked: set<S.Message>, acks0: seq<bool>, acks: seq<bool>, n: uint64,
                     logStart: nat, t: nat)
    requires Acks(role, bal, acked, acks0, n, logStart) && logStart <= t <= logStart + WINDOW as nat
    requires |acks| == |acks0|
    requires forall s: nat, j: uint64 | logStart <= s < t && j < n :: !AckAt(acks, n, s, j)
    requires forall k | 0 <= k < |acks| :: acks[k] ==> acks0[k]
    ensures Acks(role, bal, acked, acks, n, t)
  {
    reveal Acks();
    if role != Follower {
      forall s: nat, j: uint64 | t <= s < t + WINDOW as nat && j < n && AckAt(acks, n, s, j)
        ensures AckedBy(acked, j as nat, bal, s)
      {
        if s >= logStart + WINDOW as nat {
          var s0: nat := s - WINDOW as nat;
          RS.ModShift(s0, WINDOW as nat);
          assert AckAt(acks, n, s0, j) == AckAt(acks, n, s, j);
          assert false;
        } else {
          assert AckAt(acks0, n, s, j);
        }
      }
    }
  }

  // A quorum that sent Accepted(bal, slot, v): one of them did.
  lemma AcksSome(acked: set<S.Message>, n: uint64, bal: Ballot, q: set<nat>, slot: nat, v: S.Value)
    requires S.ChosenAt(n as nat, acked, bal, q, slot, v)
    ensures RM.AcceptedAt(acked, bal, slot, v)
  {
    assert |q| >= Quorums.QuorumSize(|S.Members(n as nat)|) >= 1;
    var k :| k in q;
    assert S.SentAccepted(acked, k, bal, slot, v);
  }

  // The members whose flags are set for slot, a quorum of them, each sent Accepted(bal,
  // slot, v) (v the leader's proposal there, when the counted messages carry proposals).
  lemma AcksQuorum(bal: Ballot, acked: set<S.Message>, acks: seq<bool>, n: uint64, logStart: nat, slot: nat,
                   q: set<nat>, quorum: uint64, l: P.LeaderState, v: S.Value)
    requires Acks(Leader, bal, acked, acks, n, logStart) && logStart <= slot < logStart + WINDOW as nat
    requires forall k | k in q :: k < n as nat && AckAt(acks, n, slot, k as uint64)
    requires |q| >= quorum as nat && quorum as nat == Quorums.QuorumSize(n as nat)
    requires R.AckedValues(acked, l) && l.Leading? && l.bal == bal && slot in l.proposed && l.proposed[slot] == v
    ensures S.ChosenAt(n as nat, acked, bal, q, slot, v)
  {
    reveal Acks();
    QuorumFacts.IndicesBound(n as nat);
    QuorumFacts.IndicesCardinality(n as nat);
    assert q <= S.Members(n as nat);
    forall k | k in q ensures S.SentAccepted(acked, k, bal, slot, v) {
      assert AckAt(acks, n, slot, k as uint64);
      assert AckedBy(acked, k, bal, slot);
      var x :| x in acked && x.Accepted? && x.src == k && x.bal == bal && x.slot == slot;
      assert x.val == v;
    }
  }

  // ---- the proposals (ProposedTied) ----------------------------------------------------------

  // A leader's proposed array, read over the window, agrees with leaderAbs.proposed.
  opaque ghost predicate ProposalsLed(role: Role, props: map<S.Slot, S.Value>, l: P.LeaderState) {
    role == Leader ==> l.Leading? && forall s | s in props :: s in l.proposed && l.proposed[s] == props[s]
  }

  lemma ProposalsLedNonLeader(role: Role, props: map<S.Slot, S.Value>, l: P.LeaderState)
    requires role != Leader
    ensures ProposalsLed(role, props, l)
  {
    reveal ProposalsLed();
  }

  lemma ProposalsLedSub(role: Role, props: map<S.Slot, S.Value>, l: P.LeaderState, props': map<S.Slot, S.Value>)
    requires ProposalsLed(role, props, l) && forall s | s in props' :: s in props && props'[s] == props[s]
    ensures ProposalsLed(role, props', l)
  {
    reveal ProposalsLed();
  }

  lemma ProposalsLedStart(props: map<S.Slot, S.Value>, l: P.LeaderState)
    requires props == map[] && l.Leading?
    ensures ProposalsLed(Leader, props, l)
  {
    reveal ProposalsLed();
  }

  // A new proposal in a slot not proposed in yet: first in leaderAbs, then in the array.
  lemma ProposalsLedAdd(props: map<S.Slot, S.Value>, l: P.LeaderState, slot: nat, v: S.Value)
    requires ProposalsLed(Leader, props, l) && l.Leading? && slot !in l.proposed
    ensures ProposalsLed(Leader, props, l.(proposed := l.proposed[slot := v]))
    ensures ProposalsLed(Leader, props[slot := v], l.(proposed := l.proposed[slot := v]))
  {
    reveal ProposalsLed();
  }

  // The value a leader's array holds in a window slot is its proposal there.
  lemma ProposalsLedHas(props: map<S.Slot, S.Value>, l: P.LeaderState, s: nat)
    requires ProposalsLed(Leader, props, l) && s in props
    ensures l.Leading? && s in l.proposed && l.proposed[s] == props[s]
  {
    reveal ProposalsLed();
  }

  // Every value a leader's proposed array holds went out to every member (read over the window).
  opaque ghost predicate ProposalsSent(role: Role, props: map<S.Slot, S.Value>, me: uint64, n: uint64, bal: Ballot,
                                       log: seq<Packet>) {
    && (role == Candidate ==> props == map[])
    && (role == Leader ==> forall s: uint64, j: uint64 | j < n :: AcceptSent(log, me, j, bal, s, props))
  }

  // The packet from me to j carrying msg is in log.
  ghost predicate SentTo(log: seq<Packet>, me: uint64, j: uint64, msg: Msg) {
    Packet(me, j, msg) in log
  }

  // If props holds a value in slot s, Accept(bal, s, that value) from me to j is in log.
  ghost predicate AcceptSent(log: seq<Packet>, me: uint64, j: uint64, bal: Ballot, s: uint64, props: map<S.Slot, S.Value>) {
    s as nat in props ==> SentTo(log, me, j, Accept(bal, s, props[s as nat]))
  }

  lemma ProposalsSentFollower(props: map<S.Slot, S.Value>, me: uint64, n: uint64, bal: Ballot, log: seq<Packet>)
    ensures ProposalsSent(Follower, props, me, n, bal, log)
  {
    reveal ProposalsSent();
  }

  lemma ProposalsSentEmpty(role: Role, me: uint64, n: uint64, bal: Ballot, log: seq<Packet>)
    ensures ProposalsSent(role, map[], me, n, bal, log)
  {
    reveal ProposalsSent();
  }

  // More packets sent, or fewer proposals held, keep it.
  lemma ProposalsSentMono(role: Role, props: map<S.Slot, S.Value>, me: uint64, n: uint64, bal: Ballot, log: seq<Packet>,
                          props': map<S.Slot, S.Value>, log': seq<Packet>)
    requires ProposalsSent(role, props, me, n, bal, log) && log <= log'
    requires forall s | s in props' :: s in props && props'[s] == props[s]
    ensures ProposalsSent(role, props', me, n, bal, log')
  {
    reveal ProposalsSent();
    if role == Leader {
      forall s: uint64, j: uint64 | j < n ensures AcceptSent(log', me, j, bal, s, props') {
        if s as nat in props' {
          assert AcceptSent(log, me, j, bal, s, props);
          var k :| 0 <= k < |log| && log[k] == Packet(me, j, Accept(bal, s, props[s as nat]));
          assert log'[k] == log[k];
        }
      }
    }
  }

  // A leader's new proposal of v in slot, once Accept(bal, slot, v) went to every member.
  lemma ProposalsSentAdd(props: map<S.Slot, S.Value>, me: uint64, n: uint64, bal: Ballot, log: seq<Packet>,
                         slot: uint64, v: S.Value, log': seq<Packet>, msg: Msg)
    requires ProposalsSent(Leader, props, me, n, bal, log) && log <= log' && msg == Accept(bal, slot, v)
    requires forall j: uint64 | j < n :: SentTo(log', me, j, msg)
    ensures ProposalsSent(Leader, props[slot as nat := v], me, n, bal, log')
  {
    ProposalsSentMono(Leader, props, me, n, bal, log, props, log');
    reveal ProposalsSent();
    var props' := props[slot as nat := v];
    forall s: uint64, j: uint64 | j < n ensures AcceptSent(log', me, j, bal, s, props') {
      if s != slot {
        assert AcceptSent(log', me, j, bal, s, props);
      }
    }
  }

  // A candidate that becomes leader: nothing proposed yet.
  lemma ProposalsSentLead(props: map<S.Slot, S.Value>, me: uint64, n: uint64, bal: Ballot, log: seq<Packet>)
    requires ProposalsSent(Candidate, props, me, n, bal, log)
    ensures props == map[] && ProposalsSent(Leader, props, me, n, bal, log)
  {
    reveal ProposalsSent();
  }

  // A proposal held: its Accept went to every member.
  lemma ProposalsSentHas(props: map<S.Slot, S.Value>, me: uint64, n: uint64, bal: Ballot, log: seq<Packet>, s: uint64,
                         msg: Msg)
    requires ProposalsSent(Leader, props, me, n, bal, log) && s as nat in props && msg == Accept(bal, s, props[s as nat])
    ensures forall j: uint64 | j < n :: SentTo(log, me, j, msg)
  {
    reveal ProposalsSent();
    forall j: uint64 | j < n ensures SentTo(log, me, j, msg) {
      assert AcceptSent(log, me, j, bal, s, props);
    }
  }

  // ---- the free slots (LeaderTied) -----------------------------------------------------------

  // LeaderTied over the values of the fields it reads.
  opaque ghost predicate Leads(role: Role, bal: Ballot, l: P.LeaderState, nextSlot: nat, logStart: nat) {
    role == Leader ==>
      && l.Leading? && l.bal == bal && l.phase == 2
      && (forall p | p in l.promises :: p.Promise? && p.logStart <= nextSlot)
      && (forall p, s | p in l.promises && p.Promise? && s in p.votes :: s < nextSlot || s < logStart)
      && (forall s | s in l.proposed :: s < nextSlot)
  }

  lemma LeadsNonLeader(role: Role, bal: Ballot, l: P.LeaderState, nextSlot: nat, logStart: nat)
    requires role != Leader
    ensures Leads(role, bal, l, nextSlot, logStart)
  {
    reveal Leads();
  }

  lemma LeadsMono(role: Role, bal: Ballot, l: P.LeaderState, nextSlot: nat, logStart: nat, nextSlot': nat, logStart': nat)
    requires Leads(role, bal, l, nextSlot, logStart) && nextSlot <= nextSlot' && logStart <= logStart'
    ensures Leads(role, bal, l, nextSlot', logStart')
  {
    reveal Leads();
  }

  // The slot nextSlot (at or above logStart) is free: SendAccept may propose any value there.
  lemma LeadsFree(bal: Ballot, l: P.LeaderState, nextSlot: nat, logStart: nat, val: S.Value)
    requires Leads(Leader, bal, l, nextSlot, logStart) && logStart <= nextSlot
    ensures l.Leading? && l.bal == bal && l.phase == 2 && nextSlot !in l.proposed
    ensures forall p | p in l.promises :: p.Promise? && nextSlot >= p.logStart
    ensures P.SafeToPropose(l.promises, nextSlot, val)
  {
    reveal Leads();
  }

  // One more proposal below nextSlot keeps the tie.
  lemma LeadsPropose(bal: Ballot, l: P.LeaderState, nextSlot: nat, logStart: nat, slot: nat, val: S.Value)
    requires Leads(Leader, bal, l, nextSlot, logStart) && slot < nextSlot
    ensures l.Leading? && Leads(Leader, bal, l.(proposed := l.proposed[slot := val]), nextSlot, logStart)
  {
    reveal Leads();
  }

  // A candidate with the promises of a quorum, no vote reported beyond its window, and
  // nextSlot at or above every promise's logStart and every reported vote: a leader.
  lemma LeadsTakeover(bal: Ballot, l: P.LeaderState, tk: map<S.Slot, S.Vote>, logStart: nat, mls: uint64,
                      hi: uint64, nextSlot: nat)
    requires l.Leading? && l.bal == bal && l.phase == 2 && l.proposed == map[]
    requires Cand.TakeoverOf(l.promises, tk, logStart, mls, hi, false) && mls as nat <= nextSlot && hi as nat <= nextSlot
    ensures Leads(Leader, bal, l, nextSlot, logStart)
  {
    reveal Leads();
    forall p, s | p in l.promises && p.Promise? && s in p.votes ensures s < nextSlot || s < logStart {
      if s >= logStart {
        assert s < hi as nat;
      }
    }
  }

  lemma LeadsShape(bal: Ballot, l: P.LeaderState, nextSlot: nat, logStart: nat)
    requires Leads(Leader, bal, l, nextSlot, logStart)
    ensures l.Leading? && l.bal == bal && l.phase == 2
  {
    reveal Leads();
  }
}
