// A checkpoint taken after a truncation: replaying records from a truncated host ends where
// replaying them from the host and truncating after does (ApplyAllTruncatedTo), when the
// records are ones the host emitted (each vote, commit and learn record of a slot in the window
// the host had when it emitted it: NotBeyondAll). That holds of the records a Replica emitted
// after a checkpoint taken after recovery (InWindowAfter: its Valid() carries ImplReplay's
// InWindowFrom of the records after the replayed ones, as Persist emits a vote, commit or learn
// record only for a slot of the window). The Replica's restart from such a checkpoint is the
// protocol's Truncate then Crash (Replica.TruncatedCheckpointRestartIsCrash, ImplRecovery).
//
// Everything here is ghost.
module ImplCheckpoint {
  import opened Native
  import I = ImplTypes
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import RS = ImplAbsState
  import RR = ImplAbsRuns
  import Rep = ImplReplay
  import opened ImplBounds

  // h truncated at t, unless its log starts at t or later already (what a truncation record
  // of t does, R.ApplyRecord, when t is within the limit).
  ghost function TruncatedTo(h: P.Host, t: nat): P.Host {
    if h.logStart < t then R.Truncated(h, t) else h
  }

  // What the checkpoint is taken of: the host a run of Truncate(t)'s moves ends at (the
  // postcondition of Replica.Truncate, whose `ok` is logStart < t when t <= commitUpto and
  // t <= SLOT_LIMIT) is the host truncated at t, and so is its durable part (CheckpointRecords
  // on the truncated copy then rebuilds TruncatedTo of the durable state).
  lemma TruncateRunEnds(c: P.Constants, i: S.HostId, h: P.Host, t: nat, ok: bool, h': P.Host)
    requires RR.Run(c, i, h, {}, R.TruncateMoves(h, t, ok), h') && (ok <==> h.logStart < t)
    ensures h' == TruncatedTo(h, t)
    ensures h'.(leader := P.NotLeader) == TruncatedTo(h.(leader := P.NotLeader), t)
  {
    reveal RR.Run();
    if ok {
      assert R.TruncateMoves(h, t, ok)[1..] == [];
    }
  }

  // The record's slot, if it has one, is not beyond h's window [logStart, logStart + w): the
  // core emits a vote, commit or learn record only for a slot of its window.
  ghost predicate NotBeyond(h: P.Host, rec: I.Record, w: nat) {
    (rec.RecVote? || rec.RecCommit? || rec.RecLearn?) ==> rec.slot as nat < h.logStart + w
  }

  // Every record of recs, replayed in order from h, is not beyond the window of the host it is
  // replayed on.
  ghost predicate NotBeyondAll(h: P.Host, recs: seq<I.Record>, w: nat, limit: nat) {
    forall k | 0 <= k < |recs| :: NotBeyond(R.ApplyAll(h, recs[..k], w, limit), recs[k], w)
  }

  // The records of recs after a prefix pre at least `from` long (a checkpoint's records, taken
  // after the replayed ones), up to any later point (pre + later a prefix of recs), are each not
  // beyond the window of the host they are replayed on, from the host pre rebuilds.
  lemma InWindowAfter(recs: seq<I.Record>, from: nat, pre: seq<I.Record>, later: seq<I.Record>)
    requires Rep.InWindowFrom(recs, from)
    requires from <= |pre| && |pre| + |later| <= |recs| && recs[..|pre| + |later|] == pre + later
    ensures NotBeyondAll(R.ApplyAll(Rep.InitHost(), pre, WINDOW as nat, SLOT_LIMIT as nat), later, WINDOW as nat, SLOT_LIMIT as nat)
  {
    var W, L, m := WINDOW as nat, SLOT_LIMIT as nat, |pre| + |later|;
    var x := R.ApplyAll(Rep.InitHost(), pre, W, L);
    forall k | 0 <= k < |later|
      ensures NotBeyond(R.ApplyAll(x, later[..k], W, L), later[k], W)
    {
      var j := |pre| + k;
      assert recs[..j] == pre + later[..k] by {
        assert recs[..j] == recs[..m][..j];
      }
      assert recs[j] == later[k] by {
        assert recs[j] == recs[..m][j];
      }
      reveal Rep.InWindowFrom();
      Rep.ApplyAllAppend(Rep.InitHost(), pre, later[..k]);
    }
  }

  // Truncating at t1, then at t2 >= t1, is truncating at t2.
  lemma TruncatedTwice(h: P.Host, t1: nat, t2: nat)
    requires t1 <= t2
    ensures R.Truncated(R.Truncated(h, t1), t2) == R.Truncated(h, t2)
  {
    assert P.VotesFrom(P.VotesFrom(h.votes, t1), t2) == P.VotesFrom(h.votes, t2);
    assert RS.CommittedFrom(RS.CommittedFrom(h.committed, t1), t2) == RS.CommittedFrom(h.committed, t2);
  }

  // TruncatedTo composes as the larger truncation: a truncation record of t2 <= t in the log
  // after a checkpoint truncated at t changes nothing more, one of t2 > t is the truncation.
  lemma TruncatedToTwice(h: P.Host, t1: nat, t2: nat)
    ensures TruncatedTo(TruncatedTo(h, t1), t2) == TruncatedTo(h, if t1 < t2 then t2 else t1)
  {
    if h.logStart < t1 && t1 < t2 {
      TruncatedTwice(h, t1, t2);
    }
  }

  // One record: replaying it on the host truncated at t is truncating at t after replaying it,
  // if it is not beyond the host's window. (A record beyond it is ignored by the host but not by
  // the truncated host, whose window reaches further.)
  lemma ApplyRecordTruncatedTo(h: P.Host, rec: I.Record, w: nat, limit: nat, t: nat)
    requires NotBeyond(h, rec, w)
    ensures R.ApplyRecord(TruncatedTo(h, t), rec, w, limit) == TruncatedTo(R.ApplyRecord(h, rec, w, limit), t)
  {
    var h' := R.ApplyRecord(h, rec, w, limit);
    if h.logStart < t {
      var y := R.Truncated(h, t);
      match rec {
        case RecPromised(b) =>
        case RecVote(slot, b, val) =>
          var s := slot as nat;
          if h.logStart <= s < h.logStart + w && s >= t {
            assert P.VotesFrom(h.votes[s := S.Vote(b, val)], t) == P.VotesFrom(h.votes, t)[s := S.Vote(b, val)];
          } else if h.logStart <= s < h.logStart + w {
            assert P.VotesFrom(h.votes[s := S.Vote(b, val)], t) == P.VotesFrom(h.votes, t);
          }
        case RecCommit(slot, val) =>
          var s := slot as nat;
          if h.logStart <= s < h.logStart + w && s !in h.committed && s >= t {
            assert RS.CommittedFrom(h.committed[s := val], t) == RS.CommittedFrom(h.committed, t)[s := val];
          } else if h.logStart <= s < h.logStart + w && s !in h.committed {
            assert RS.CommittedFrom(h.committed[s := val], t) == RS.CommittedFrom(h.committed, t);
          }
        case RecLearn(slot, b) =>
          var s := slot as nat;
          if h.logStart <= s < h.logStart + w && s !in h.committed && s in h.votes && h.votes[s].bal == b {
            var val := h.votes[s].val;
            if s >= t {
              assert RS.CommittedFrom(h.committed[s := val], t) == RS.CommittedFrom(h.committed, t)[s := val];
            } else {
              assert RS.CommittedFrom(h.committed[s := val], t) == RS.CommittedFrom(h.committed, t);
            }
          }
        case RecTruncate(upto) =>
          var u := upto as nat;
          if h.logStart < u <= limit {
            if u <= t {
              TruncatedTwice(h, u, t);
            } else {
              TruncatedTwice(h, t, u);
            }
          }
      }
    } else {
      assert TruncatedTo(h, t) == h;
      assert h.logStart <= h'.logStart;
    }
  }

  // Replaying records the host emitted (NotBeyondAll) on the host truncated at t is truncating
  // at t after replaying them: Truncate commutes with the host's later records. A truncation
  // record among them of t or later makes the truncation at t a no-op at the end.
  lemma ApplyAllTruncatedTo(h: P.Host, recs: seq<I.Record>, w: nat, limit: nat, t: nat)
    requires NotBeyondAll(h, recs, w, limit)
    ensures R.ApplyAll(TruncatedTo(h, t), recs, w, limit) == TruncatedTo(R.ApplyAll(h, recs, w, limit), t)
    decreases |recs|
  {
    if recs != [] {
      var init, r := recs[..|recs| - 1], recs[|recs| - 1];
      forall k | 0 <= k < |init|
        ensures NotBeyond(R.ApplyAll(h, init[..k], w, limit), init[k], w)
      {
        assert init[..k] == recs[..k];
      }
      ApplyAllTruncatedTo(h, init, w, limit, t);
      assert NotBeyond(R.ApplyAll(h, recs[..|recs| - 1], w, limit), r, w);
      ApplyRecordTruncatedTo(R.ApplyAll(h, init, w, limit), r, w, limit, t);
    }
  }

  // One more record, not beyond the window of the host the records before it rebuild (what
  // Persist's premise shows of a record of a window slot, whose replay keeps the log start).
  lemma NotBeyondAllSnoc(h: P.Host, recs: seq<I.Record>, r: I.Record, w: nat, limit: nat)
    requires NotBeyondAll(h, recs, w, limit) && NotBeyond(R.ApplyAll(h, recs, w, limit), r, w)
    ensures NotBeyondAll(h, recs + [r], w, limit)
  {
    forall k | 0 <= k < |recs + [r]|
      ensures NotBeyond(R.ApplyAll(h, (recs + [r])[..k], w, limit), (recs + [r])[k], w)
    {
      if k < |recs| {
        assert (recs + [r])[..k] == recs[..k];
      } else {
        assert (recs + [r])[..k] == recs;
      }
    }
  }

  // Replaying records moves the log start forward only, and keeps every committed slot at or
  // above the log start it ends with.
  lemma ApplyAllKeepsCommitted(h: P.Host, recs: seq<I.Record>, w: nat, limit: nat)
    ensures var h' := R.ApplyAll(h, recs, w, limit);
            h.logStart <= h'.logStart && forall s | s in h.committed && s >= h'.logStart :: s in h'.committed
    decreases |recs|
  {
    if recs != [] {
      ApplyAllKeepsCommitted(h, recs[..|recs| - 1], w, limit);
    }
  }
}
