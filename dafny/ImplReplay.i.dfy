// Recovery (Impl's Replays(), part of Valid()): the initial host that a restart replays the
// durable records from (R.ApplyAll), facts about replaying, and the state the first records of
// a snapshot's checkpoint rebuild (CheckpointStart).
module ImplReplay {
  import opened Native
  import opened Ballots
  import opened ImplTypes
  import opened ImplBounds
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import RS = ImplAbsState

  // The host a fresh core (Impl's constructor) is: the protocol's initial host.
  ghost function InitHost(): P.Host {
    P.Host(Zero, map[], 0, map[], P.NotLeader)
  }

  // Replaying a + b is replaying a, then b.
  lemma ApplyAllAppend(h: P.Host, a: seq<Record>, b: seq<Record>)
    ensures R.ApplyAll(h, a + b, WINDOW as nat, SLOT_LIMIT as nat)
            == R.ApplyAll(R.ApplyAll(h, a, WINDOW as nat, SLOT_LIMIT as nat), b, WINDOW as nat, SLOT_LIMIT as nat)
    decreases |b|
  {
    if b == [] {
      assert a + b == a;
    } else {
      var b0 := b[..|b| - 1];
      ApplyAllAppend(h, a, b0);
      assert (a + b)[..|a + b| - 1] == a + b0;
    }
  }

  // Replaying records from the initial host leads nothing.
  lemma ApplyAllKeepsNotLeader(recs: seq<Record>)
    ensures R.ApplyAll(InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat).leader == P.NotLeader
    decreases |recs|
  {
    if recs != [] {
      ApplyAllKeepsNotLeader(recs[..|recs| - 1]);
    }
  }

  // The records of recs from index `from` on are each of a slot, if they have one, below the
  // end of the window of the host the records before them rebuild (ImplCheckpoint.NotBeyond):
  // a Replica's records from emitFrom on, the ones its core emitted (Persist: a vote, commit or
  // learn record of a slot of its window only), after the ones it replayed at recovery (of any
  // slot). Opaque, so that Impl's Valid() carries it without its quantifier: only the steps
  // that add a record look inside.
  opaque ghost predicate InWindowFrom(recs: seq<Record>, from: nat) {
    && from <= |recs|
    && forall k | from <= k < |recs| ::
         (recs[k].RecVote? || recs[k].RecCommit? || recs[k].RecLearn?) ==>
         recs[k].slot as nat < R.ApplyAll(InitHost(), recs[..k], WINDOW as nat, SLOT_LIMIT as nat).logStart + WINDOW as nat
  }

  // From the end of recs on, there is no record: it holds (of [] from 0, at the start; of the
  // records so far, after a replayed one).
  lemma InWindowFromEnd(recs: seq<Record>)
    ensures InWindowFrom(recs, |recs|)
  {
    reveal InWindowFrom();
  }

  // One more record r, of a slot of the window [ls, ls + WINDOW) when it is a vote, commit or
  // learn record, which keeps the log start of the host the records before it rebuild at ls
  // (as such a record does): its slot is below the end of that host's window.
  lemma InWindowFromSnoc(recs: seq<Record>, from: nat, r: Record, ls: nat)
    requires InWindowFrom(recs, from)
    requires R.ApplyRecord(R.ApplyAll(InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat), r, WINDOW as nat, SLOT_LIMIT as nat).logStart == ls
    requires (r.RecVote? || r.RecCommit? || r.RecLearn?) ==> r.slot as nat < ls + WINDOW as nat
    ensures InWindowFrom(recs + [r], from)
  {
    reveal InWindowFrom();
    var recs' := recs + [r];
    forall k | from <= k < |recs'|
      ensures (recs'[k].RecVote? || recs'[k].RecCommit? || recs'[k].RecLearn?) ==>
              recs'[k].slot as nat < R.ApplyAll(InitHost(), recs'[..k], WINDOW as nat, SLOT_LIMIT as nat).logStart + WINDOW as nat
    {
      if k < |recs| {
        assert recs'[..k] == recs[..k] && recs'[k] == recs[k];
      } else {
        assert recs'[..k] == recs && recs'[k] == r;
      }
    }
  }

  // The entries of m at keys below s.
  ghost function Below<T>(m: map<nat, T>, s: nat): map<nat, T> {
    map k | k in m && k < s :: m[k]
  }

  lemma BelowNext<T>(m: map<nat, T>, s: nat)
    ensures Below(m, s + 1) == if s in m then Below(m, s)[s := m[s]] else Below(m, s)
  {
  }

  lemma BelowAll<T>(m: map<nat, T>, s: nat)
    requires forall k | k in m :: k < s
    ensures Below(m, s) == m
  {
  }

  // Replaying [RecTruncate(ls), RecPromised(p)] from the initial host.
  lemma CheckpointStart(ls: uint64, p: Ballot, V: map<nat, S.Vote>, C: map<nat, S.Value>)
    requires ls <= SLOT_LIMIT && (forall k | k in V :: k >= ls as nat) && (forall k | k in C :: k >= ls as nat)
    ensures R.ApplyAll(InitHost(), [RecTruncate(ls), RecPromised(p)], WINDOW as nat, SLOT_LIMIT as nat)
            == P.Host(p, Below(V, ls as nat), ls as nat, Below(C, ls as nat), P.NotLeader)
  {
    var recs := [RecTruncate(ls), RecPromised(p)];
    assert P.VotesFrom(map[], ls as nat) == map[];
    assert RS.CommittedFrom(map[], ls as nat) == map[];
    var h1 := R.ApplyRecord(InitHost(), RecTruncate(ls), WINDOW as nat, SLOT_LIMIT as nat);
    assert h1 == P.Host(Zero, map[], ls as nat, map[], P.NotLeader);
    assert [RecTruncate(ls)][..0] == [];
    assert R.ApplyAll(InitHost(), [RecTruncate(ls)], WINDOW as nat, SLOT_LIMIT as nat) == h1;
    assert recs[..1] == [RecTruncate(ls)];
    assert R.ApplyAll(InitHost(), recs, WINDOW as nat, SLOT_LIMIT as nat) == h1.(promised := p);
    assert Below(V, ls as nat) == map[];
    assert Below(C, ls as nat) == map[];
  }

  // The record of slot s committed with val, when the host's vote there is v: the vote named,
  // if it holds val (the value is then on the disk once), else the value.
  function CommitRecord(s: uint64, v: Vote, val: Value): Record {
    if v.Vote? && v.val == val then RecLearn(s, v.bal) else RecCommit(s, val)
  }

  // A checkpoint's commit record of slot s, after its records of the slots below s and of s's
  // vote, adds s's committed value.
  lemma CheckpointCommit(p: Ballot, V: map<nat, S.Vote>, ls: uint64, C: map<nat, S.Value>, s: uint64, v: Vote, val: Value)
    requires ls as nat <= s as nat < ls as nat + WINDOW as nat
    requires s as nat in C && C[s as nat] == val
    requires v.Vote? ==> s as nat in V && V[s as nat] == S.Vote(v.bal, v.val)
    ensures R.ApplyRecord(P.Host(p, Below(V, s as nat + 1), ls as nat, Below(C, s as nat), P.NotLeader),
                          CommitRecord(s, v, val), WINDOW as nat, SLOT_LIMIT as nat)
            == P.Host(p, Below(V, s as nat + 1), ls as nat, Below(C, s as nat + 1), P.NotLeader)
  {
    BelowNext(C, s as nat);
  }
}
