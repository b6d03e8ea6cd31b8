// A candidate's ghost state (Impl's CandidateTied and TakeoverTied, part of Valid()): the
// promises it collected, tied to its promise flags and count (Tied), and the votes they report,
// tied to its takeover array (Takeover), with the lemmas each step uses; folding one Promise's
// report into the takeover map (TakeoverFold); and, from that map, why a new leader's proposals
// are safe (TakeoverSafe) and where their values come from (TakeoverValueSource).
module ImplCandidate {
  import opened Native
  import opened Ballots
  import opened BallotFacts
  import opened ImplTypes
  import Quorums
  import QuorumFacts
  import S = Spec
  import P = Protocol
  import R = ImplAbstraction
  import RM = ImplAbsMessages

  // ---- the promises collected (CandidateTied) ------------------------------------------------

  // CandidateTied over the values of the fields it reads.
  opaque ghost predicate Tied(role: Role, bal: Ballot, l: P.LeaderState, n: uint64, pf: seq<bool>, count: uint64) {
    && (role == Follower ==> l == P.NotLeader)
    && (role == Candidate ==>
          && l.Leading? && l.bal == bal && l.proposed == map[]
          && |pf| == n as int
          && (forall p | p in l.promises :: p.Promise? && p.src < n as nat && pf[p.src])
          && (forall j | 0 <= j < n as int && pf[j] :: j in P.Senders(l.promises))
          && |P.Senders(l.promises)| == count as nat
          && l.phase == (if Quorums.IsQuorum(S.Members(n as nat), P.Senders(l.promises)) then 2 else 1))
  }

  lemma TiedFollower(bal: Ballot, n: uint64, pf: seq<bool>, count: uint64)
    ensures Tied(Follower, bal, P.NotLeader, n, pf, count)
  {
    reveal Tied();
  }

  // A campaign starts with no promise, no flag and a count of 0.
  lemma TiedStart(bal: Ballot, n: uint64, pf: seq<bool>)
    requires |pf| == n as int && 1 <= n && forall j | 0 <= j < n as int :: !pf[j]
    ensures Tied(Candidate, bal, P.Leading(bal, 1, {}, map[]), n, pf, 0)
  {
    reveal Tied();
    assert P.Senders({}) == {};
    QuorumFacts.IndicesCardinality(n as nat);
  }

  // Nothing constrains a leader's tie here (LeaderTied does).
  lemma TiedLeader(bal: Ballot, l: P.LeaderState, n: uint64, pf: seq<bool>, count: uint64)
    ensures Tied(Leader, bal, l, n, pf, count)
  {
    reveal Tied();
  }

  // A follower's (or leader's) tie does not depend on the promise flags and count.
  lemma TiedNonCandidate(role: Role, bal: Ballot, l: P.LeaderState, n: uint64, pf: seq<bool>, count: uint64,
                         pf': seq<bool>, count': uint64)
    requires role != Candidate && Tied(role, bal, l, n, pf, count)
    ensures Tied(role, bal, l, n, pf', count')
  {
    reveal Tied();
  }

  // A candidate short of a quorum is in phase 1.
  lemma TiedPhase(bal: Ballot, l: P.LeaderState, n: uint64, pf: seq<bool>, count: uint64, quorum: uint64)
    requires Tied(Candidate, bal, l, n, pf, count) && quorum as nat == Quorums.QuorumSize(n as nat)
    ensures l.Leading? && l.bal == bal && l.proposed == map[]
    ensures (l.phase == 2) == (count >= quorum)
    ensures forall p | p in l.promises :: p.Promise?
  {
    reveal Tied();
    QuorumFacts.IndicesCardinality(n as nat);
    QuorumFacts.IndicesBound(n as nat);
    assert P.Senders(l.promises) <= S.Members(n as nat);
  }

  // A candidate's first promise from src: ReceivePromise adds it, and the phase is 2 once
  // the count reaches a quorum.
  lemma TiedPromise(c: P.Constants, bal: Ballot, l: P.LeaderState, n: uint64, pf: seq<bool>, count: uint64,
                    m: S.Message, quorum: uint64)
    requires Tied(Candidate, bal, l, n, pf, count) && c.n == n as nat && quorum as nat == Quorums.QuorumSize(n as nat)
    requires m.Promise? && |pf| == n as int && m.src < n as nat && !pf[m.src] && count < quorum
    ensures l.Leading? && l.phase == 1 && l.bal == bal && count < n
    ensures R.Collected(c, l, m) == l.(promises := l.promises + {m},
                                       phase := if count + 1 >= quorum then 2 else 1)
    ensures Tied(Candidate, bal, R.Collected(c, l, m), n, pf[m.src := true], count + 1)
  {
    TiedPhase(bal, l, n, pf, count, quorum);
    reveal Tied();
    R.SendersAdd(l.promises, m);
    var q := P.Senders(l.promises + {m});
    assert m.src !in P.Senders(l.promises);
    assert |q| == count as nat + 1;
    QuorumFacts.IndicesBound(n as nat);
    QuorumFacts.IndicesCardinality(n as nat);
    assert q <= S.Members(n as nat);
    QuorumFacts.SubsetCardinality(q, S.Members(n as nat));
    forall j | 0 <= j < n as int && pf[m.src := true][j] ensures j in q {
      if j != m.src as int {
        assert j in P.Senders(l.promises);
      }
    }
  }

  // ---- the takeover map (TakeoverTied) -------------------------------------------------------

  // TakeoverTied over the values of the fields it reads.
  opaque ghost predicate Takeover(role: Role, l: P.LeaderState, tk: map<S.Slot, S.Vote>, logStart: nat,
                                  maxLogStart: uint64, takeoverHi: uint64, overflow: bool) {
    role == Candidate && l.Leading? ==> TakeoverOf(l.promises, tk, logStart, maxLogStart, takeoverHi, overflow)
  }

  // The takeover map tk (read over the window) of the promises ps.
  ghost predicate TakeoverOf(ps: set<S.Message>, tk: map<S.Slot, S.Vote>, logStart: nat,
                             maxLogStart: uint64, takeoverHi: uint64, overflow: bool) {
    && (forall p | p in ps :: p.Promise? && p.logStart <= maxLogStart as nat)
    && (forall p, s | p in ps && p.Promise? && s in p.votes && s >= logStart :: Covered(p, s, tk, takeoverHi, overflow))
    && (forall s | s in tk :: exists p | p in ps :: p.Promise? && s in p.votes && p.votes[s] == tk[s])
  }

  // The vote p reports in slot s is in the takeover map, with a ballot at most the map's
  // (unless a vote overflowed the window).
  ghost predicate Covered(p: S.Message, s: nat, tk: map<S.Slot, S.Vote>, takeoverHi: uint64, overflow: bool)
    requires p.Promise? && s in p.votes
  {
    overflow || (s < takeoverHi as nat && s in tk && BalLe(p.votes[s].bal, tk[s].bal))
  }

  lemma TakeoverNonCandidate(role: Role, l: P.LeaderState, tk: map<S.Slot, S.Vote>, logStart: nat,
                             maxLogStart: uint64, takeoverHi: uint64, overflow: bool)
    requires role != Candidate
    ensures Takeover(role, l, tk, logStart, maxLogStart, takeoverHi, overflow)
  {
    reveal Takeover();
  }

  // A fresh campaign: no promise, an empty takeover map.
  lemma TakeoverStart(bal: Ballot, logStart: nat, maxLogStart: uint64, takeoverHi: uint64, overflow: bool)
    ensures Takeover(Candidate, P.Leading(bal, 1, {}, map[]), map[], logStart, maxLogStart, takeoverHi, overflow)
  {
    reveal Takeover();
  }

  // The window moves up to t: the takeover map keeps its slots from t on.
  lemma TakeoverTruncate(role: Role, l: P.LeaderState, tk: map<S.Slot, S.Vote>, logStart: nat,
                         maxLogStart: uint64, takeoverHi: uint64, overflow: bool, t: nat, hi': uint64)
    requires Takeover(role, l, tk, logStart, maxLogStart, takeoverHi, overflow) && logStart <= t && takeoverHi <= hi'
    ensures Takeover(role, l, P.VotesFrom(tk, t), t, maxLogStart, hi', overflow)
  {
    reveal Takeover();
  }

  // The phase-1 rule, from the takeover map: in a slot where no promise reports a vote, any
  // value; else the value of the highest vote reported (the map's).
  lemma TakeoverSafe(ps: set<S.Message>, tk: map<S.Slot, S.Vote>, logStart: nat, mls: uint64, hi: uint64,
                     s: nat, val: S.Value)
    requires TakeoverOf(ps, tk, logStart, mls, hi, false) && logStart <= s
    requires s in tk ==> val == tk[s].val
    ensures P.SafeToPropose(ps, s, val)
  {
    if s in tk {
      var p :| p in ps && p.Promise? && s in p.votes && p.votes[s] == tk[s];
      assert P.NoHigherVote(ps, s, tk[s].bal);
    } else {
      assert forall p | p in ps :: p.Promise? && s !in p.votes;
    }
  }

  // Where a value BecomeLeader proposes comes from (P.ValueSource): the vote the promises
  // report in the slot (the takeover map's), else the value this host committed there, else
  // the no-op.
  lemma TakeoverValueSource(h: P.Host, tk: map<S.Slot, S.Vote>, logStart: nat, mls: uint64, hi: uint64,
                            s: nat, val: S.Value)
    requires h.leader.Leading? && TakeoverOf(h.leader.promises, tk, logStart, mls, hi, false)
    requires s in tk ==> val == tk[s].val
    requires s !in tk ==> (s in h.committed && h.committed[s] == val) || val == S.NoOp
    ensures P.ValueSource({}, h, s, val)
  {
    if s in tk {
      var p :| p in h.leader.promises && p.Promise? && s in p.votes && p.votes[s] == tk[s];
    }
  }

  // ---- folding a Promise's report into the takeover map --------------------------------------

  // The slots of a Promise's report increase (the core reports each slot once, in order).
  ghost predicate Increasing(vs: seq<SlotVote>) {
    forall i, j | 0 <= i < j < |vs| :: vs[i].slot < vs[j].slot
  }

  // Whether a Promise's report is Increasing (checked before it is folded).
  method IncreasingSlots(vs: seq<SlotVote>) returns (ok: bool)
    ensures ok ==> Increasing(vs)
  {
    if vs == [] {
      return true;
    }
    var last := vs[0].slot;
    var rest := vs[1..];
    ghost var k: nat := 1;
    while rest != []
      invariant 1 <= k <= |vs| && rest == vs[k..] && last == vs[k - 1].slot
      invariant forall i, j | 0 <= i < j < k :: vs[i].slot < vs[j].slot
      decreases |rest|
    {
      if rest[0].slot <= last {
        return false;
      }
      last := rest[0].slot;
      rest := rest[1..];
      k := k + 1;
    }
    return true;
  }

  // The promise m with only the first k entries of its report.
  ghost function Part(m: S.Message, vs: seq<SlotVote>, k: nat): S.Message
    requires m.Promise? && k <= |vs|
  {
    m.(votes := RM.SlotVotesMap(vs[..k]))
  }

  // A promise with none of its report folded yet.
  lemma TakeoverAddEmpty(ps: set<S.Message>, m: S.Message, vs: seq<SlotVote>, tk: map<S.Slot, S.Vote>,
                         logStart: nat, mls: uint64, hi: uint64, ov: bool)
    requires m.Promise? && m.logStart <= mls as nat
    requires TakeoverOf(ps, tk, logStart, mls, hi, ov)
    ensures TakeoverOf(ps + {Part(m, vs, 0)}, tk, logStart, mls, hi, ov)
  {
    reveal RM.SlotVotesMap();
    assert vs[..0] == [];
    assert Part(m, vs, 0).votes == map[];
  }

  // One more entry of the report folded into the takeover map (tk'): a slot in the window
  // takes the entry's vote unless it holds a vote with a ballot at least as high; a slot
  // beyond the window sets the overflow flag; a slot below it is ignored.
  lemma TakeoverFold(ps: set<S.Message>, m: S.Message, vs: seq<SlotVote>, k: nat,
                     tk: map<S.Slot, S.Vote>, logStart: nat, w: nat, mls: uint64, hi: uint64, ov: bool,
                     tk': map<S.Slot, S.Vote>, hi': uint64, ov': bool)
    requires m.Promise? && k < |vs| && Increasing(vs) && m.votes == RM.SlotVotesMap(vs)
    requires TakeoverOf(ps + {Part(m, vs, k)}, tk, logStart, mls, hi, ov)
    requires forall s | s in tk :: logStart <= s < logStart + w
    requires var sv := vs[k]; var s := sv.slot as nat;
             if logStart <= s < logStart + w then
               && hi' as nat >= s + 1 && hi' >= hi && ov' == ov
               && tk' == if s !in tk || BalLt(tk[s].bal, sv.bal) then tk[s := S.Vote(sv.bal, sv.val)] else tk
             else if s >= logStart then ov' && tk' == tk && hi' == hi
             else tk' == tk && hi' == hi && ov' == ov
    ensures TakeoverOf(ps + {Part(m, vs, k + 1)}, tk', logStart, mls, hi', ov')
  {
    var sv := vs[k];
    var s := sv.slot as nat;
    var v := S.Vote(sv.bal, sv.val);
    var pm, pm' := Part(m, vs, k), Part(m, vs, k + 1);
    assert vs[..k + 1] == vs[..k] + [sv];
    R.SlotVotesMapAppend(vs[..k], sv);
    assert pm'.votes == pm.votes[s := v];
    R.SlotVotesMapKeys(vs[..k]);
    assert s !in pm.votes;
    var P, P' := ps + {pm}, ps + {pm'};
    forall p | p in P' ensures p.Promise? && p.logStart <= mls as nat {
      if p == pm' {
        assert pm in P;
      }
    }
    // Every vote reported is in the map (or overflows), with a ballot at most the map's.
    forall p: S.Message, t: nat | p in P' && p.Promise? && t in p.votes && t >= logStart
      ensures Covered(p, t, tk', hi', ov')
    {
      var q := if p == pm' && t != s then pm else p;
      assert q in P' || q in P;
      assert q.Promise? && t in q.votes && q.votes[t] == p.votes[t];
      if q in P {
        TakeoverVote(P, tk, logStart, mls, hi, ov, q, t);
      }
      assert q !in P ==> q == pm' && t == s && q.votes[t] == v;
      assert if logStart <= s < logStart + w then
               && hi' as nat >= s + 1 && hi' >= hi && ov' == ov
               && tk' == if s !in tk || BalLt(tk[s].bal, v.bal) then tk[s := v] else tk
             else if s >= logStart then ov' && tk' == tk && hi' == hi
             else tk' == tk && hi' == hi && ov' == ov;
      FoldVote(q, pm', s, v, t, tk, logStart, w, hi, ov, tk', hi', ov', q in P);
    }
    // Every vote of the map is one a promise reports.
    forall t | t in tk' ensures exists p | p in P' :: p.Promise? && t in p.votes && p.votes[t] == tk'[t] {
      if t == s && tk' != tk {
        assert pm' in P' && pm'.votes[s] == tk'[s];
      } else {
        assert t in tk && tk'[t] == tk[t];
        var q :| q in P && q.Promise? && t in q.votes && q.votes[t] == tk[t];
        if q == pm {
          assert t != s;
          assert pm' in P' && pm'.votes[t] == tk'[t];
        } else {
          assert q in P';
        }
      }
    }
  }

  // What TakeoverOf says of one vote a promise reports.
  lemma TakeoverVote(ps: set<S.Message>, tk: map<S.Slot, S.Vote>, logStart: nat, mls: uint64, hi: uint64, ov: bool,
                     p: S.Message, t: nat)
    requires TakeoverOf(ps, tk, logStart, mls, hi, ov) && p in ps && p.Promise? && t in p.votes && t >= logStart
    ensures ov || (t < hi as nat && t in tk && BalLe(p.votes[t].bal, tk[t].bal))
  {
  }

  // TakeoverFold for one vote q reports in slot t: q is a promise folded before (old), or
  // pm', whose vote in s, v, is the one just folded.
  lemma FoldVote(q: S.Message, pm': S.Message, s: nat, v: S.Vote, t: nat,
                 tk: map<S.Slot, S.Vote>, logStart: nat, w: nat, hi: uint64, ov: bool,
                 tk': map<S.Slot, S.Vote>, hi': uint64, ov': bool, before: bool)
    requires q.Promise? && t in q.votes && t >= logStart
    requires before ==> ov || (t < hi as nat && t in tk && BalLe(q.votes[t].bal, tk[t].bal))
    requires !before ==> q == pm' && t == s && q.votes[t] == v
    requires if logStart <= s < logStart + w then
               && hi' as nat >= s + 1 && hi' >= hi && ov' == ov
               && tk' == if s !in tk || BalLt(tk[s].bal, v.bal) then tk[s := v] else tk
             else if s >= logStart then ov' && tk' == tk && hi' == hi
             else tk' == tk && hi' == hi && ov' == ov
    ensures ov' || (t < hi' as nat && t in tk' && BalLe(q.votes[t].bal, tk'[t].bal))
  {
    if !ov' {
      if !before {
        if s in tk && !BalLt(tk[s].bal, v.bal) {
          BalLtTotal(tk[s].bal, v.bal);
        }
      } else if t == s && logStart <= s < logStart + w && (s !in tk || BalLt(tk[s].bal, v.bal)) {
        BalLeTransitive(q.votes[t].bal, tk[t].bal, v.bal);
      }
    }
  }
}
