// The abstraction from the executable core (Impl.i.dfy, ImplTypes.s.dfy) to the protocol
// (Protocol.i.dfy), part 3 of 4: runs of protocol steps.
//
// * A handler of the core is a sequence of protocol steps of its host (a Run of Moves), and
//   its theorem is a Trail: that run, and every packet the handler sent is an image of a
//   message the run sent (ImplAbsMessages.i.dfy) or a re-send.
// * A whole step of the core runs handlers one after another and receives the messages the
//   host sends itself within the step: a RunG, whose steps read the network and what the steps
//   before them sent, and a StepTrail.
// * Proven here: runs and trails compose (RunAppend, TrailChain, RunGAppend, StepTrailChain),
//   read from any larger network (RunNetMonotone, TrailNet), and a leader's Heartbeat
//   broadcast is a run (BeatRefines).
//
// The other parts: the durable state (ImplAbsState.i.dfy), messages (ImplAbsMessages.i.dfy),
// the moves of each handler (ImplAbstraction.i.dfy). Everything here is ghost.
module ImplAbsRuns {
  import opened Native
  import opened Ballots
  import I = ImplTypes
  import S = Spec
  import P = Protocol
  import opened ImplAbsMessages

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

  // A message with no safety role, sent by a step that changes nothing.
  ghost function NoSafety(h: P.Host, m: S.Message): Move {
    Move(P.SendNoSafetyStep(m), {m}, h)
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
}
