// The abstraction from the executable core (Impl.i.dfy, ImplTypes.s.dfy) to the protocol
// (Protocol.i.dfy), part 1 of 4: the durable state.
//
// * The durable arrays: slot s lives at index s % WINDOW, valid for s in the window
//   [logStart, logStart + WINDOW). The protocol's maps are the window's non-empty entries
//   (AbsVotes, AbsCommitted).
// * Proven here: writing the index of one window slot changes the maps at that slot only
//   (AbsVotesUpdate, AbsCommittedUpdate) and emptying one only removes slots; moving the
//   window from lo to lo' after emptying [lo, lo') drops the slots below lo' and adds none
//   (AbsVotesTruncate, AbsCommittedTruncate); the index arithmetic behind them
//   (WindowIndexUnique, ModShift, ModUnique); and the committed prefix (HasAll: every slot
//   in [lo, hi) is committed).
//
// The other parts: messages (ImplAbsMessages.i.dfy), runs of protocol steps
// (ImplAbsRuns.i.dfy), the moves of each handler (ImplAbstraction.i.dfy). Everything here is
// ghost.
module ImplAbsState {
  import opened Ballots
  import I = ImplTypes
  import S = Spec
  import P = Protocol

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
}
