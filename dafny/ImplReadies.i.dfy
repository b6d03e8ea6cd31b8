// The values a node applies: the commits of the Readies its steps return. A whole step's
// Ready carries commits that are committed values of its host's abstraction (CommitsAre, so
// ReadyCommitted: Replica.CommitsAreCommitted in ImplState.i.dfy). Here: every such commit,
// taken at any state of a reachable run, was chosen in the network, which only grows, so the
// commits of all Readies of a run agree per slot and are requested values or the no-op
// (ReadiesAgree).
//
// Everything here is ghost.
module ImplReadies {
  import opened Native
  import S = Spec
  import P = Protocol
  import I = ImplTypes
  import RS = ImplAbsState
  import OT = ImplOutTied
  import RR = ImplAbsRuns
  import A = AgreementProof
  import PI = ProtocolInvariant
  import opened ImplSystem

  // Every commit of r is a value committed in h's committed map at its slot.
  ghost predicate ReadyCommitted(r: I.Ready, h: P.Host) {
    forall k | 0 <= k < |r.commits| ::
      r.commits[k].slot as nat in h.committed && h.committed[r.commits[k].slot as nat] == r.commits[k].val
  }

  // The commits of the slots [lo, hi) of C, when C holds all of them, are C's values.
  lemma CommitsOfCommitted(C: map<S.Slot, S.Value>, lo: uint64, hi: uint64)
    requires RS.HasAll(C, lo as nat, hi as nat)
    ensures var cs := OT.CommitsOf(C, lo, hi);
            forall k | 0 <= k < |cs| :: cs[k].slot as nat in C && C[cs[k].slot as nat] == cs[k].val
    decreases hi
  {
    reveal OT.CommitsOf();
    if lo < hi {
      RS.HasAllSub(C, lo as nat, hi as nat, lo as nat, (hi - 1) as nat);
      CommitsOfCommitted(C, lo, hi - 1);
      reveal RS.HasAll();
      assert (hi - 1) as nat in C;
    }
  }

  // ---------------------------------------------------------------------------------------
  // The network only grows along a run (and what is chosen stays chosen: PI.ChosenMonotone).

  // Every system step keeps the network's messages: a host's step and a crashed step add what
  // the run sent, a client's request adds the request.
  lemma NextNetGrows(c: P.Constants, s: Sys, s': Sys)
    requires ImplNext(c, s, s')
    ensures s.abs.net <= s'.abs.net
  {
    if i: nat, val: S.Value :| ClientSends(c, s, s', i, val) {
    } else if i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host, pkts: seq<I.Packet>, d: P.Host :|
                ImplCrashStep(c, s, s', i, recv, moves, h', pkts, d) {
    } else {
      var i: nat, recv: set<S.Message>, moves: seq<RR.Move>, h': P.Host, pkts: seq<I.Packet> :|
        ImplStep(c, s, s', i, recv, moves, h', pkts);
    }
  }

  // A state's network is in the network of every later state of the run.
  lemma RunNetGrows(c: P.Constants, run: seq<Sys>, k: nat, j: nat)
    requires ImplReachable(c, run) && k <= j < |run|
    ensures run[k].abs.net <= run[j].abs.net
    decreases j - k
  {
    if k < j {
      assert ImplNext(c, run[j - 1], run[j]);
      NextNetGrows(c, run[j - 1], run[j]);
      RunNetGrows(c, run, k, j - 1);
    }
  }

  // Every prefix of a reachable run is a reachable run.
  lemma PrefixReachable(c: P.Constants, run: seq<Sys>, k: nat)
    requires ImplReachable(c, run) && k < |run|
    ensures ImplReachable(c, run[..k + 1])
  {
    var p := run[..k + 1];
    assert p[0] == run[0];
    forall j | 0 <= j < |p| - 1 ensures ImplNext(c, p[j], p[j + 1]) {
      assert p[j] == run[j] && p[j + 1] == run[j + 1];
    }
  }

  // A value a host has committed at any state of a run is chosen in the run's last network
  // (ImplAgreement on the prefix ending there; the network grows from there on).
  lemma CommittedChosenAtEnd(c: P.Constants, run: seq<Sys>, k: nat, i: nat, slot: S.Slot)
    requires ImplReachable(c, run) && k < |run|
    requires i < |run[k].abs.hosts| && slot in run[k].abs.hosts[i].committed
    ensures S.Chosen(c.n, run[|run| - 1].abs.net, slot, run[k].abs.hosts[i].committed[slot])
  {
    var p := run[..k + 1];
    PrefixReachable(c, run, k);
    assert p[|p| - 1] == run[k];
    ImplAgreement(c, p, i, i, slot);
    RunNetGrows(c, run, k, |run| - 1);
    PI.ChosenMonotone(c.n, run[k].abs.net, run[|run| - 1].abs.net, slot, run[k].abs.hosts[i].committed[slot]);
  }

  // The run's last network satisfies Agreement and Validity.
  lemma AgreementValidityAtEnd(c: P.Constants, run: seq<Sys>)
    requires ImplReachable(c, run)
    ensures S.Agreement(c.n, run[|run| - 1].abs.net) && S.Validity(c.n, run[|run| - 1].abs.net)
  {
    var behavior := ImplReachableIsProtocolReachable(c, run);
    A.AgreementInEveryReachableState(c, behavior);
    ImplValidity(c, run, 0, 0);
  }

  // THEOREM: what the driver applies is safe. Take any two Readies of a reachable run, r1 of
  // host i1 at state k1 and r2 of host i2 at state k2 (a whole step's Ready, with the host's
  // state after the step: CommitsAre gives ReadyCommitted). Every value a node applies from
  // them agrees with every other node's in the same slot, whatever the steps that returned
  // them, and was requested by a client (or is the no-op).
  lemma ReadiesAgree(c: P.Constants, run: seq<Sys>, k1: nat, i1: nat, r1: I.Ready, x1: nat,
                     k2: nat, i2: nat, r2: I.Ready, x2: nat)
    requires ImplReachable(c, run)
    requires k1 < |run| && i1 < |run[k1].abs.hosts| && ReadyCommitted(r1, run[k1].abs.hosts[i1])
    requires k2 < |run| && i2 < |run[k2].abs.hosts| && ReadyCommitted(r2, run[k2].abs.hosts[i2])
    requires x1 < |r1.commits| && x2 < |r2.commits|
    ensures r1.commits[x1].slot == r2.commits[x2].slot ==> r1.commits[x1].val == r2.commits[x2].val
    ensures var net := run[|run| - 1].abs.net;
            && (r1.commits[x1].val == S.NoOp || S.Requested(net, r1.commits[x1].val))
            && (r2.commits[x2].val == S.NoOp || S.Requested(net, r2.commits[x2].val))
  {
    var net := run[|run| - 1].abs.net;
    var e1, e2 := r1.commits[x1], r2.commits[x2];
    CommittedChosenAtEnd(c, run, k1, i1, e1.slot as nat);
    CommittedChosenAtEnd(c, run, k2, i2, e2.slot as nat);
    assert S.Chosen(c.n, net, e1.slot as nat, e1.val);
    assert S.Chosen(c.n, net, e2.slot as nat, e2.val);
    AgreementValidityAtEnd(c, run);
  }
}
