"""Evidence that the proofs are not vacuous: each mutant breaks one rule the protocol needs,
and `dafny verify` must then fail on the proof that depends on that rule.

Usage: python -m verikv.verified_core.mutants [NAME ...]   (exit 1 if any mutant survives)

A mutant is applied to a copy of dafny/ in a temporary folder; the sources are never touched.
A mutant whose text is not found exactly once is an error, not a pass, so a stale mutant
cannot silently stop testing anything.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from verikv.verified_core import build


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to dafny/
    original: str
    mutated: str
    breaks: str  # the symbol whose proof must fail (passed to --filter-symbol)
    why: str


MUTANTS = [
    Mutant(
        name="minority-quorum",
        file="Quorums.s.dfy",
        original="    n / 2 + 1\n  }\n\n  ghost predicate IsQuorum",
        mutated="    n / 2\n  }\n\n  ghost predicate IsQuorum",
        breaks="QuorumFacts.QuorumsIntersect",
        why="with a quorum of n/2, two disjoint halves of an even member set are both quorums",
    ),
    Mutant(
        name="ballot-order-ignores-node",
        file="Ballots.s.dfy",
        original="a.round < b.round || (a.round == b.round && a.node < b.node)",
        mutated="a.round < b.round || (a.round == b.round && a.node <= b.node)",
        breaks="BallotFacts.BalLtIrreflexive",
        why="two leaders with the same round and node would compare as both smaller",
    ),
    Mutant(
        name="accept-below-promise",
        file="Protocol.i.dfy",
        original="if BalLe(h.promised, m.bal) && m.slot >= h.logStart then",
        mutated="if m.slot >= h.logStart then",
        breaks="InvariantProof.ReceiveAcceptOk",
        why="an acceptor that votes at a ballot below its promise breaks the promise it gave a "
            "newer leader, whose proposal was computed without that vote",
    ),
    Mutant(
        name="propose-ignores-highest-vote",
        file="Protocol.i.dfy",
        original="    && SafeToPropose(h.leader.promises, slot, val)\n",
        mutated="",
        breaks="InvariantProof.SendAcceptOk",
        why="a leader that proposes a fresh value in a slot where phase 1 reported a vote can "
            "overwrite a value that was already chosen",
    ),
    Mutant(
        name="impl-vote-below-promise",
        file="ImplHandlers.i.dfy",
        original="""    {
      if BalLt(b, promised) {
        Send(src, Nack(promised));
        assert sentLog[|old(sentLog)|..] == [Packet(me, src, Nack(promised))];  // no Learn
        assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);
        Cr.RefuseDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), b, old(logStart), slot, val);
        return;
      }
      assert {:split_here} true;
      if !InWindow(slot) {""",
        mutated="""    {
      assert {:split_here} true;
      if !InWindow(slot) {""",
        breaks="ImplHandlers.Replica.OnAccept",
        why="the executable acceptor would vote, and lower its promise, for a ballot below its promise",
    ),
    Mutant(
        name="impl-promise-any-ballot",
        file="ImplHandlers.i.dfy",
        original="      if role != Candidate || b != bal || src >= n || promiseFrom[src] || promiseCount >= quorum {\n",
        mutated="      if role != Candidate || src >= n || promiseFrom[src] || promiseCount >= quorum {\n",
        breaks="ImplHandlers.Replica.OnPromise",
        why="a candidate would count a promise made to another ballot toward its quorum, which "
            "the protocol's ReceivePromise never does",
    ),
    Mutant(
        name="impl-leader-ignores-reported-vote",
        file="ImplMoves.i.dfy",
        original="          var val := if v.Vote? then v.val else if c.Some? then c.val else [];\n",
        mutated="          var val := if c.Some? then c.val else [];\n",
        breaks="ImplMoves.Replica.BecomeLeader",
        why="a new leader would propose a fresh (empty) value in a slot where its quorum's "
            "promises report a vote, which may be a value already chosen",
    ),
    Mutant(
        name="impl-takeover-keeps-lower-vote",
        file="ImplHandlers.i.dfy",
        original="          if cur.NoVote? || BalLt(cur.bal, sv.bal) {\n",
        mutated="          if cur.NoVote? || BalLt(sv.bal, cur.bal) {\n",
        breaks="ImplHandlers.Replica.OnPromise",
        why="a candidate would keep the lower-ballot vote of two reported for a slot, and as "
            "leader propose a value that a later ballot may have replaced",
    ),
    Mutant(
        name="impl-learn-without-quorum",
        file="ImplHandlers.i.dfy",
        original="        j := j + 1;\n      }\n      if count >= quorum {\n",
        mutated="        j := j + 1;\n      }\n      if count >= 1 {\n",
        breaks="ImplHandlers.Replica.OnAccepted",
        why="a leader would announce a slot chosen after one acknowledgement, before a quorum "
            "accepted it",
    ),
    Mutant(
        name="impl-learn-any-own-vote",
        file="ImplHandlers.i.dfy",
        original="      if v.Vote? && v.bal == b {\n",
        mutated="      if v.Vote? {\n",
        breaks="ImplHandlers.Replica.OnLearn",
        why="a replica told that a slot was chosen at one ballot would commit its own vote from "
            "another ballot, which may hold a different value",
    ),
    Mutant(
        name="impl-self-delivery-wrong-sender",
        file="ImplSteps.i.dfy",
        original="        ghost var more := Dispatch(me, m, stk);\n",
        mutated="        ghost var more := Dispatch(0, m, stk);\n",
        breaks="ImplSteps.Replica.DrainSelf",
        why="a message a host sent itself would be handled as if member 0 sent it: a leader "
            "would count its own acknowledgement as member 0's",
    ),
    Mutant(
        name="impl-early-ignores-sync",
        file="ImplState.i.dfy",
        original="      } else if buffers.sync {\n        out := out.(packets := out.packets + [Packet(me, dst, msg)]);\n"
                 "        buffers := buffers.(late := Append(buffers.late, Packet(me, dst, msg)));\n      } else {\n",
        mutated="      } else {\n",
        breaks="ImplState.Replica.Send",
        why="every packet would leave before the step's records are durable: a Promise or an "
            "Accepted vote sent before its record, then a crash, and the restarted host promises "
            "a lower ballot or forgets its vote (the shim's EarlyBeforeSync check sees it too)",
    ),
    Mutant(
        name="impl-send-reports-another-packet",
        file="ImplState.i.dfy",
        original="        buffers := buffers.(late := Append(buffers.late, Packet(me, dst, msg)));\n",
        mutated="        buffers := buffers.(late := Append(buffers.late, Packet(dst, me, msg)));\n",
        breaks="ImplState.Replica.Send",
        why="the Ready would hand the node a packet other than the one the proof's packet log "
            "holds: the theorem would be about messages that are never sent",
    ),
    Mutant(
        name="impl-promise-reports-promised-ballot",
        file="ImplHandlers.i.dfy",
        original="          buf[k] := SlotVote(s, v.bal, v.val);\n",
        mutated="          buf[k] := SlotVote(s, promised, v.val);\n",
        breaks="ImplHandlers.Replica.ReportedVotes",
        why="a Promise would report each vote at the ballot just promised, above the vote's own: "
            "a new leader would prefer that value over one a quorum may have chosen since",
    ),
    Mutant(
        name="impl-buffer-reversed",
        file="Stacks.i.dfy",
        original="      i := i - 1;\n      a[i] := l.top;\n",
        mutated="      i := i - 1;\n      a[n - 1 - i] := l.top;\n",
        breaks="Stacks.Fill",
        why="a step's records and packets would reach the node newest first: a vote written "
            "before the promise it depends on, Accepts sent in the reverse of their slots' order",
    ),
    Mutant(
        name="impl-buffer-drops-the-item-past-its-short-part",
        file="Stacks.i.dfy",
        original="Long(b.small, Push(Empty, x))\n",
        mutated="Long(b.small, Empty)\n",
        breaks="Stacks.Append",
        why="the 33rd packet or record of a step would be lost: a vote never written, an Accept "
            "never sent, and the proof's logs would hold what the node never did",
    ),
    Mutant(
        name="impl-self-message-out-of-order",
        file="ImplSteps.i.dfy",
        original="      m := buffers.selfFront[0];\n",
        mutated="      m := buffers.selfFront[|buffers.selfFront| - 1];\n",
        breaks="ImplSteps.Replica.PopSelf",
        why="the messages a host sends itself would be handled out of order (its own Accept of "
            "a later slot before an earlier one's, a takeover's first vote not first)",
    ),
    Mutant(
        name="impl-replay-vote-ignores-ballot",
        file="ImplRecovery.i.dfy",
        original="        votes[Idx(slot)] := Vote(rec.bal, rec.val);\n",
        mutated="        votes[Idx(slot)] := Vote(promised, rec.val);\n",
        breaks="ImplRecovery.Replica.ReplayVote",
        why="a restarted host would report its vote at the ballot it last promised, which may be "
            "higher than the vote's: a new leader would prefer that value over a later chosen one",
    ),
    Mutant(
        name="impl-learn-record-names-another-value",
        file="ImplReplay.i.dfy",
        original="if v.Vote? && v.val == val then RecLearn(s, v.bal) else RecCommit(s, val)",
        mutated="if v.Vote? then RecLearn(s, v.bal) else RecCommit(s, val)",
        breaks="ImplMoves.Replica.CommitSlot",
        why="a commit record would name the host's vote in the slot even when the slot was "
            "committed with another value (learned from a Commit): a restart would apply its "
            "own vote's value, one that was not chosen",
    ),
    Mutant(
        name="impl-replay-learn-ignores-ballot",
        file="ImplRecovery.i.dfy",
        original="committed[Idx(slot)].None? && votes[Idx(slot)].Vote? && votes[Idx(slot)].bal == rec.bal {",
        mutated="committed[Idx(slot)].None? && votes[Idx(slot)].Vote? {",
        breaks="ImplRecovery.Replica.ReplayLearn",
        why="replaying a learn record would commit whatever vote the slot holds, not the vote "
            "the record names",
    ),
    Mutant(
        name="impl-checkpoint-forgets-promise",
        file="ImplRecovery.i.dfy",
        original="      var k: uint64 := 2;\n      ghost var g := [RecTruncate(logStart), RecPromised(promised)];\n",
        mutated="      var k: uint64 := 1;\n      ghost var g := [RecTruncate(logStart)];\n",
        breaks="ImplRecovery.Replica.CheckpointRecords",
        why="a host restarted after a snapshot would have forgotten its promise and could promise "
            "a lower ballot, letting an old leader choose a value the newer one overwrites",
    ),
    Mutant(
        name="truncation-drops-its-first-slot",
        file="ImplAbstraction.i.dfy",
        original="    h.(logStart := t, votes := P.VotesFrom(h.votes, t), committed := CommittedFrom(h.committed, t))\n",
        mutated="    h.(logStart := t, votes := P.VotesFrom(h.votes, t + 1), committed := CommittedFrom(h.committed, t))\n",
        breaks="ImplRecovery.Replica.TruncatedCheckpointRestartIsCrash",
        why="a checkpoint of a core truncated at t would lack the host's vote in slot t, which "
            "its Promises may have reported: a restart from it is not the protocol's Truncate "
            "then Crash, and a new leader could miss the vote",
    ),
    Mutant(
        name="replayed-records-count-as-emitted",
        file="ImplRecovery.i.dfy",
        original="      emitFrom := |recLog|;\n      Rep.InWindowFromEnd(recLog);\n",
        mutated="      Rep.InWindowFromEnd(recLog);\n",
        breaks="ImplRecovery.Replica.Replayed",
        why="a record replayed at recovery, which is whatever the restart read, would count as "
            "one the core emitted in its window: a vote beyond that window in the log would make a "
            "restart from a truncated checkpoint other than the protocol's Truncate then Crash",
    ),
    Mutant(
        name="impl-propose-empty-value",
        file="ImplSteps.i.dfy",
        original="        ghost var mv := ProposeAt(slot, val, req);\n",
        mutated="        ghost var mv := ProposeAt(slot, [], req);\n",
        breaks="ImplSteps.Replica.Propose",
        why="the leader would answer that the client's value got a slot while it proposed an empty "
            "batch there: an acknowledged write that is never applied",
    ),
    Mutant(
        name="impl-commit-reports-next-value",
        file="ImplWindow.i.dfy",
        original="        buf[s - base] := Committed(s, committed[Idx(s)].val);\n",
        mutated="        buf[s - base] := Committed(s, committed[Idx(s + 1)].val);\n",
        breaks="ImplWindow.Replica.CommitsFrom",
        why="the driver would apply, at a slot, the value committed at the next one: the key-value "
            "state would diverge from the chosen log",
    ),
    Mutant(
        name="impl-commit-reports-wrong-slot",
        file="ImplWindow.i.dfy",
        original="        buf[s - base] := Committed(s, committed[Idx(s)].val);\n",
        mutated="        buf[s - base] := Committed(s + 1, committed[Idx(s)].val);\n",
        breaks="ImplWindow.Replica.CommitsFrom",
        why="a committed value would be reported at the slot after its own: the driver's applied "
            "index would run one ahead of the log",
    ),
    Mutant(
        name="impl-commit-last-slot-unreported",
        file="ImplWindow.i.dfy",
        original="      while s < commitUpto\n        invariant base <= s <= commitUpto",
        mutated="      while s + 1 < commitUpto\n        invariant base <= s <= commitUpto",
        breaks="ImplWindow.Replica.CommitsFrom",
        why="the last slot a step commits would never be applied: an acknowledged write lost "
            "from the key-value state",
    ),
    Mutant(
        name="impl-commit-reported-twice",
        file="ImplSteps.i.dfy",
        original="      t := sofar.trace;\n      sofar := O.Step([], sentLog, recLog);\n      commitBase := commitUpto;\n",
        mutated="      t := sofar.trace;\n      sofar := O.Step([], sentLog, recLog);\n",
        breaks="ImplSteps.Replica.TakeReady",
        why="the next step would report this step's commits again: a committed command applied "
            "twice (a put or a transaction run again)",
    ),
    Mutant(
        name="impl-recovery-skips-a-slot",
        file="ImplRecovery.i.dfy",
        original="      commitBase := logStart;",
        mutated="      commitBase := if logStart < commitUpto then logStart + 1 else logStart;",
        breaks="ImplRecovery.Replica.FinishRecovery",
        why="a restarted node would rebuild its key-value state without the first committed slot "
            "of its log",
    ),
    Mutant(
        name="impl-snapshot-reports-below-it",
        file="ImplRecovery.i.dfy",
        original="        JumpTo(upto);\n        Persist(RecTruncate(upto));\n        AdvanceCommit();\n",
        mutated="        AdvanceCommit();\n        JumpTo(upto);\n        Persist(RecTruncate(upto));\n",
        breaks="ImplRecovery.Replica.InstallSnapshot",
        why="a node installing a snapshot would apply, on top of it, slots the snapshot already holds",
    ),
    Mutant(
        name="protocol-accept-any-value",
        file="Protocol.i.dfy",
        original="    && ValueSource(net, h, slot, val)\n",
        mutated="",
        breaks="ValidityProof.SendAcceptFromClient",
        why="a leader free to propose any value in a slot no promise reports could decide a value "
            "no client asked for",
    ),
    Mutant(
        name="impl-takeover-invents-value",
        file="ImplMoves.i.dfy",
        original="var val := if v.Vote? then v.val else if c.Some? then c.val else [];",
        mutated="var val := if v.Vote? then v.val else if c.Some? then c.val else [0];",
        breaks="ImplMoves.Replica.BecomeLeader",
        why="a new leader filling a gap with a value of its own instead of the no-op would commit "
            "a command no client sent",
    ),
    Mutant(
        name="vote-needs-no-sync",
        file="ImplTypes.s.dfy",
        original="    !r.RecCommit? && !r.RecLearn?\n",
        mutated="    !r.RecCommit? && !r.RecLearn? && !r.RecVote?\n",
        breaks="ImplCrash.CutLosesCommits",
        why="a vote record would not be made durable before the step's packets leave: its "
            "Accepted may be on the wire when a crash loses the vote, and the restarted host "
            "promises a newer leader without reporting it",
    ),
    Mutant(
        name="promise-needs-no-sync",
        file="ImplTypes.s.dfy",
        original="    !r.RecCommit? && !r.RecLearn?\n",
        mutated="    !r.RecCommit? && !r.RecLearn? && !r.RecPromised?\n",
        breaks="ImplCrash.CutLosesCommits",
        why="a promise record would not be made durable before its Promise leaves: a crash "
            "loses the promise, and the restarted host votes at a ballot below it",
    ),
    Mutant(
        name="system-crash-forgets-durable-state",
        file="ImplSystem.i.dfy",
        original="    && P.Crash(c, i, h', d, {})\n",
        mutated="    && d.leader == P.NotLeader\n",
        breaks="ImplSystem.CrashStepIsSteps",
        why="a restart that kept nothing of the host's durable state (a lost promise or vote) "
            "is no protocol step: the composition's crash must be the protocol's Crash",
    ),
    Mutant(
        name="impl-vote-recorded-before-promise",
        file="ImplHandlers.i.dfy",
        original="      SetPromised(b);\n      ghost var trace1 := sofar.trace;\n      if role != Follower && b != bal {\n        StepDown();\n      }\n      assert {:split_here} true;\n      assert InWindow(slot);\n      if src != me {\n        ticks := 0;\n      }\n      if b.node < n {\n        leaderHint := b.node;\n      }\n      votes[Idx(slot)] := Vote(b, val);\n      if slot + 1 > voteHi {\n        voteHi := slot + 1;\n      }\n      RS.AbsVotesUpdate(old(votes[..]), logStart as nat, slot as nat, b, val);\n      RS.AllBelowUpdate(RS.AbsVotes(old(votes[..]), logStart as nat), slot as nat, S.Vote(b, val), old(voteHi) as nat, voteHi as nat);\n      assert {:split_here} true;  // the vote's record and answer apart from the vote\n      ghost var trace0, queue0 := sofar.trace, selfQueue;\n      Persist(RecVote(slot, b, val));\n",
        mutated="      ghost var trace1 := sofar.trace;\n      if role != Follower && b != bal {\n        StepDown();\n      }\n      assert {:split_here} true;\n      assert InWindow(slot);\n      if src != me {\n        ticks := 0;\n      }\n      if b.node < n {\n        leaderHint := b.node;\n      }\n      votes[Idx(slot)] := Vote(b, val);\n      if slot + 1 > voteHi {\n        voteHi := slot + 1;\n      }\n      RS.AbsVotesUpdate(old(votes[..]), logStart as nat, slot as nat, b, val);\n      RS.AllBelowUpdate(RS.AbsVotes(old(votes[..]), logStart as nat), slot as nat, S.Vote(b, val), old(voteHi) as nat, voteHi as nat);\n      assert {:split_here} true;  // the vote's record and answer apart from the vote\n      ghost var trace0, queue0 := sofar.trace, selfQueue;\n      Persist(RecVote(slot, b, val));\n      SetPromised(b);\n",
        breaks="ImplHandlers.Replica.OnAccept",
        why="an acceptor raising its promise to vote would write the vote's record before the "
            "promise's: a crash between the two leaves a vote above the durable promise, a state "
            "no protocol step reaches (the step's trace is no longer Cr.AcceptTrace)",
    ),
    Mutant(
        name="impl-promise-sent-before-record",
        file="ImplHandlers.i.dfy",
        original='      SetPromised(b);\n      if role != Follower && b != bal {\n        StepDown();\n      }\n      if src != me {\n        ticks := 0;\n      }\n      assert {:split_here} true;  // the votes reported apart from the promise\'s update\n      var start := if fromSlot > logStart then fromSlot else logStart;\n      ghost var h0 := old(AbsHost());\n      assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);\n      var reported, s := ReportedVotes(start);\n      assert {:split_here} true;  // keeps each half of this proof small\n      ghost var trace0 := sofar.trace;\n      assert trace0 == old(sofar.trace) + (if BalLt(old(promised), b) then [O.Emitted(RecPromised(b))] else []);\n      Send(src, Promise(b, start, reported));\n',
        mutated='      if role != Follower && b != bal {\n        StepDown();\n      }\n      if src != me {\n        ticks := 0;\n      }\n      assert {:split_here} true;  // the votes reported apart from the promise\'s update\n      var start := if fromSlot > logStart then fromSlot else logStart;\n      ghost var h0 := old(AbsHost());\n      assert votes[..] == old(votes[..]) && committed[..] == old(committed[..]);\n      var reported, s := ReportedVotes(start);\n      assert {:split_here} true;  // keeps each half of this proof small\n      ghost var trace0 := sofar.trace;\n      assert trace0 == old(sofar.trace) + (if BalLt(old(promised), b) then [O.Emitted(RecPromised(b))] else []);\n      Send(src, Promise(b, start, reported));\n      SetPromised(b);\n',
        breaks="ImplHandlers.Replica.OnPrepare",
        why="a Promise would leave early, before its promise is durable: a crash then loses the "
            "promise the leader counted (the cut before the record is no longer Covered)",
    ),
    Mutant(
        name="truncate-emits-two-records",
        file="ImplRecovery.i.dfy",
        original="        DropBelow(upto);\n        Persist(RecTruncate(upto));\n",
        mutated="        DropBelow(upto);\n        Persist(RecTruncate(upto));\n        Persist(RecPromised(promised));\n",
        breaks="ImplRecovery.Replica.Truncate",
        why="a Truncate that emitted a second record needing a sync would have a cut between the "
            "two, which a crash part-way through it (TruncateThenCrash) may hit and no proof covers",
    ),
    Mutant(
        name="quiet-cut-of-any-records",
        file="ImplCluster.i.dfy",
        original="      requires RR.Run(c, i, h0, {}, moves, reps[i].AbsHost()) && Cr.AtMostOne(r0.records)\n",
        mutated="      requires RR.Run(c, i, h0, {}, moves, reps[i].AbsHost())\n",
        breaks="ImplCluster.Cluster.QuietCutStep",
        why="a crash part-way through a step that sends nothing is a crash step only at its cuts "
            "before or after its records that need a sync: with two of them, the cut between is not",
    ),
]


class MutantError(Exception):
    pass


def apply(mutant: Mutant, dafny_copy: Path) -> None:
    path = dafny_copy / mutant.file
    text = path.read_text()
    count = text.count(mutant.original)
    if count != 1:
        raise MutantError(f"mutant {mutant.name}: its original text occurs {count} times in {mutant.file}, "
                          "expected exactly once (update the mutant)")
    path.write_text(text.replace(mutant.original, mutant.mutated))


# A mutated proof that runs longer than this (each proof's own limit) counts as killed, as a
# time-out at the project's 900 s guard already did: every proof of the sources as they are
# takes under 15 s here, and one mutated proof (impl-snapshot-reports-below-it) ran into the
# guard, 15 minutes of the suite. The unmutated control run keeps the project's limit.
MUTANT_TIME_LIMIT_S = 180


def verify_copy(dafny_copy: Path, symbol: str | None, time_limit_s: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(build.find_dafny()), "verify", str(dafny_copy / "dfyconfig.toml"),
           "--solver-path", str(build.find_solver())]
    if symbol:
        cmd += ["--filter-symbol", symbol]
    if time_limit_s is not None:
        cmd += ["--verification-time-limit", str(time_limit_s)]
    return subprocess.run(cmd, env=build.dafny_env(), capture_output=True, text=True)


def run_mutant(mutant: Mutant) -> tuple[bool, str]:
    """Return (killed, verifier output). A mutant is killed when verification fails.

    As a control, the targeted proof is first verified unmutated: it must pass and the filter
    must select it, or the mutant proves nothing (MutantError).
    """
    with tempfile.TemporaryDirectory(prefix=f"verikv-mutant-{mutant.name}-") as tmp:
        copy = Path(tmp) / "dafny"
        shutil.copytree(build.DAFNY_DIR, copy, ignore=shutil.ignore_patterns("mutants"))
        control = verify_copy(copy, mutant.breaks)
        if control.returncode != 0 or " 0 verified" in control.stdout:
            raise MutantError(f"mutant {mutant.name}: unmutated, {mutant.breaks} does not verify on its own "
                              f"(or matches no symbol):\n{control.stdout}{control.stderr}")
        apply(mutant, copy)
        result = verify_copy(copy, mutant.breaks, MUTANT_TIME_LIMIT_S)
        output = result.stdout + result.stderr
        return result.returncode != 0 and "Error" in output, output


def main(argv: list[str] | None = None) -> int:
    names = set(argv if argv is not None else sys.argv[1:])
    survivors = 0
    for mutant in MUTANTS:
        if names and mutant.name not in names:
            continue
        started = time.monotonic()
        try:
            killed, output = run_mutant(mutant)
        except (MutantError, build.BuildError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        verdict = "killed (verification fails, as it must)" if killed else "SURVIVED: the proof did not notice"
        print(f"{mutant.name:32} {verdict}  [{time.monotonic() - started:.1f} s] — {mutant.why}")
        if not killed:
            survivors += 1
            print(output)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
