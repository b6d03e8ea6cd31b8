// The Replica (Impl.i.dfy), part 6 of 7: whole steps, what the driver calls (Receive, Tick,
// Propose, ConfirmRead). A step dispatches its input, then delivers the messages the host sent
// itself (DrainSelf), and returns one Ready that is exactly what it did (ReadyIs, CommitsAre),
// every cut of it covered (Cr.EveryCutCovered). The lemmas that prove its cuts covered, and
// that a crash at one is a system step, are in ImplCuts.i.dfy, the module this one refines,
// with StepOk (a step under way), which they are stated over.
abstract module ImplSteps refines ImplCuts {
  class Replica ... {
    // What a step relies on of the protocol state this host is part of (ImplSystem: the abstraction of
    // a reachable state): the protocol's invariant holds, this host is at AbsHost(), and the
    // Accepted messages it counted are in the network.
    ghost predicate Within(st: P.State)
      reads this, votes, committed
    {
      && PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == AbsHost() && acked <= st.net
    }

    // Every packet this host sent is on the wire of a state with network net.
    ghost predicate SentOnWire(net: set<S.Message>)
      reads this
    {
      forall p | p in sentLog :: OT.OnWire(p, net)
    }

    // The message m from src, in a state st the host is part of, whose wire carries it: a
    // trail of this host's protocol steps reading st.net (each handler's theorem, its premise
    // discharged by the protocol's invariant: ImplSystem.AckedValuesFromInv, LearnValueFromInv).
    method Dispatch(src: uint64, m: Msg, ghost st: P.State) returns (ghost moves: seq<RR.Move>)
      requires Valid() && src < n
      modifies Repr
      ensures Valid() && StepGrows() && SameConfig()
      ensures old(Within(st)) && OT.OnWire(Packet(src, me, m), st.net) ==>
                && acked <= st.net
                && RR.Trail(Consts(), me as nat, old(AbsHost()), old(sentLog), st.net, moves, AbsHost(), sentLog)
      ensures m.Prepare? ==> exists q: Packet :: sofar.trace == old(sofar.trace) + Cr.PromiseTrace(BalLt(old(promised), m.bal), m.bal, q)
      ensures m.Prepare? && src != me ==> selfQueue == old(selfQueue)
      ensures m.Promise? ==> recLog == old(recLog)
      ensures m.Promise? && old(selfQueue) == [] ==> selfQueue == [] || FirstRecord(selfQueue[0], promised, logStart) != []
      ensures m.Accept? ==> Cr.AcceptDid(old(sofar.trace), sofar.trace, old(selfQueue), selfQueue, me, src, old(promised), m.bal,
                                          old(logStart), m.slot, m.val)
      // Every other message: only commit records.
      ensures !m.Prepare? && !m.Accept? ==> QuietSince()
    {
      ghost var ok := Within(st) && OT.OnWire(Packet(src, me, m), st.net);
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      ghost var src', me' := src as nat, me as nat;
      ghost var follower := role == Follower;
      ghost var bal0, commit0, cool0 := bal, commitUpto, catchUpCooldown;
      moves := [];
      match m {
        case Prepare(b, fromSlot) =>
          OnPrepare(src, b, fromSlot);
          ghost var a := S.Prepare(src', me', b);
          moves := R.PrepareMoves(me', h0, !follower && b != bal0, a, fromSlot as nat);
          if ok {
            RM.NoLearnsBacked(sentLog[|log0|..], RR.SentBy(moves), {a});
            RR.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
            RR.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Promise(b, ls, reported) =>
          moves := OnPromise(src, b, ls, reported);
          if ok {
            ghost var a := S.Promise(src', me', b, ls as nat, RM.SlotVotesMap(reported));
            RR.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Accept(b, slot, val) =>
          OnAccept(src, b, slot, val);
          ghost var a := S.Accept(src', me', b, slot as nat, val);
          moves := R.AcceptMoves(me', h0, h0.logStart + WINDOW as nat, !follower && b != bal0, a);
          if ok {
            RM.NoLearnsBacked(sentLog[|log0|..], RR.SentBy(moves), {a});
            RR.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
            RR.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Accepted(b, slot) =>
          // Its image: some Accepted(b, slot, v) from src in the network (OnWire).
          ghost var a: S.Message := S.Accepted(src', me', b, slot as nat, []);
          if ok {
            assert RM.PacketRefines(Packet(src, me, m), st.net);
            a := RM.ImageIn(st.net, src', me', m);
            Sy.AckedValuesFromInv(c, st, me', acked + {a});
          }
          ghost var acked0 := acked;
          moves := OnAccepted(src, b, slot, a);
          if ok {
            assert acked <= acked0 + {a} && acked0 + {a} <= st.net;
            assert R.AckedValues(acked, leaderAbs);
            RR.TrailNet(c, me', h0, log0, acked, st.net, moves, AbsHost(), sentLog);
          }
        case Learn(b, slot) =>
          ghost var hv := h0.votes;
          if ok && slot as nat in hv && hv[slot as nat].bal == b {
            Sy.LearnValueFromInv(c, st, Packet(src, me, m));
          }
          OnLearn(b, slot, src);
          if ok {
            if slot as nat in hv && hv[slot as nat].bal == b {
              ghost var a := S.Commit(src', me', slot as nat, hv[slot as nat].val);
              moves := R.CommitMoves(h0, h0.logStart + WINDOW as nat, a);
              assert sentLog[|log0|..] == [];
              RR.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
              RR.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
            } else {
              RR.TrailNil(c, me', h0, log0, st.net);
            }
          }
        case Commit(slot, val) =>
          OnCommit(slot, val, src);
          ghost var a := S.Commit(src', me', slot as nat, val);
          moves := R.CommitMoves(h0, h0.logStart + WINDOW as nat, a);
          if ok {
            assert sentLog[|log0|..] == [];
            RR.TrailOf(c, me', h0, log0, {a}, moves, AbsHost(), sentLog);
            RR.TrailNet(c, me', h0, log0, {a}, st.net, moves, AbsHost(), sentLog);
          }
        case Nack(pr) =>
          OnNack(pr);
          moves := R.StepDownMoves(h0, !follower && BalLt(bal0, pr));
          if ok {
            assert sentLog[|log0|..] == [];
            RR.TrailOf(c, me', h0, log0, {}, moves, AbsHost(), sentLog);
            RR.TrailNet(c, me', h0, log0, {}, st.net, moves, AbsHost(), sentLog);
          }
        case Heartbeat(b, cu, rs) =>
          OnHeartbeat(src, b, cu, rs);
          moves := R.HeartbeatMoves(me', h0, src', b, !follower && b != bal0, cu > commit0 && cool0 == 0, commit0 as nat);
          if ok {
            RM.NoLearnsBacked(sentLog[|log0|..], RR.SentBy(moves), {});
            RR.TrailOf(c, me', h0, log0, {}, moves, AbsHost(), sentLog);
            RR.TrailNet(c, me', h0, log0, {}, st.net, moves, AbsHost(), sentLog);
          }
        case HeartbeatAck(b, rs) =>
          OnHeartbeatAck(src, b, rs);
          RR.TrailNil(c, me', h0, log0, st.net);
        case CatchUp(fromSlot) =>
          OnCatchUp(src, fromSlot);
          moves := RR.RunThatSent(c, me', h0, AbsHost(), sentLog[|log0|..]);
          if ok {
            RM.NoLearnsBacked(sentLog[|log0|..], RR.SentBy(moves), {});
            RR.TrailOf(c, me', h0, log0, {}, moves, AbsHost(), sentLog);
            RR.TrailNet(c, me', h0, log0, {}, st.net, moves, AbsHost(), sentLog);
          }
      }
    }

    // The next message this host sent itself, taken off its queue: from the front, refilled
    // from the Buf of those sent since when it is empty (each message is moved once).
    method PopSelf() returns (m: Msg)
      requires Valid() && selfQueue != []
      modifies this
      ensures Valid() && Unchanged() && sentLog == old(sentLog) && recLog == old(recLog) && EmitFromKept()
      ensures sofar == old(sofar) && out == old(out) && commitBase == old(commitBase)
      ensures m == old(selfQueue[0]) && selfQueue == old(selfQueue[1..]) && Packet(me, me, m) in sentLog
      ensures AbsHost() == old(AbsHost())
    {
      assert Packet(me, me, selfQueue[0]) in sentLog;  // SelfLogged
      OT.BuffersTiedIs(out, selfQueue, buffers);
      if |buffers.selfFront| == 0 {
        // the messages sent since the front was filled, in the order sent
        var front := OT.MsgsOf(buffers.selfBack);
        buffers := buffers.(selfFront := front, selfBack := OT.NoBuffers.selfBack);
      }
      m := buffers.selfFront[0];
      selfQueue := selfQueue[1..];
      buffers := buffers.(selfFront := buffers.selfFront[1..]);
      OT.BuffersTiedMake(out, selfQueue, buffers);
    }

    method SelfPending() returns (pending: bool)
      requires BuffersTied()
      ensures pending == (selfQueue != [])
    {
      OT.BuffersTiedIs(out, selfQueue, buffers);
      pending := |buffers.selfFront| > 0 || |buffers.selfBack.small| > 0 || (buffers.selfBack.Long? && buffers.selfBack.big.Push?);
    }

    // The self-messages are all gone (handled, or dropped past the limit).
    method DropSelf()
      requires Valid()
      modifies this
      ensures Valid() && Unchanged() && sentLog == old(sentLog) && recLog == old(recLog) && EmitFromKept()
      ensures sofar == old(sofar) && out == old(out) && commitBase == old(commitBase) && AbsHost() == old(AbsHost())
      ensures selfQueue == [] && (old(selfQueue) == [] ==> unchanged(this))
    {
      var pending := SelfPending();
      if pending {
        OT.BuffersTiedIs(out, selfQueue, buffers);
        selfQueue := [];
        buffers := buffers.(selfFront := OT.NoBuffers.selfFront, selfBack := OT.NoBuffers.selfBack);
        OT.BuffersTiedMake(out, selfQueue, buffers);
      }
    }

    // Handle the messages this host sent to itself during the step (bounded: a chain of
    // self-deliveries is short; past the limit they are dropped, like lost messages). Each is
    // on the wire of the state the step has reached (sent before the step, or by its moves so
    // far), where the protocol's invariant holds (ImplSystem.InvAfterRun): the step's trail
    // grows by the handler's.
    method DrainSelf(ghost st: P.State, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves0: seq<RR.Move>)
      returns (ghost moves: seq<RR.Move>)
      requires Valid()
      modifies Repr
      ensures Valid() && StepGrows() && SameConfig()
      ensures old(selfQueue) == [] ==> unchanged(this, votes, committed)
      ensures old(selfQueue) == [] ==> AbsHost() == old(AbsHost()) && sentLog == old(sentLog) && SameConfig()
      ensures old(StepOk(st, h0, log0, moves0)) ==> StepOk(st, h0, log0, moves)
      ensures moves0 <= moves
      // A first self-message whose handling begins with a record that needs a sync (its own
      // vote, its own promise): the step's early packets are those it had sent before.
      ensures old(selfQueue) != [] && FirstRecord(old(selfQueue)[0], old(promised), old(logStart)) != [] ==>
                out.sync && out.early == old(out.early)
      // Every cut of the step stays covered: each message it sent itself is handled at a point.
      ensures old(StepOk(st, h0, log0, moves0)) && log0 == old(sofar.sentBase)
              && old(Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace)) ==>
                Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace)
    {
      ghost var ok := StepOk(st, h0, log0, moves0);
      ghost var recs0 := sofar.recBase;
      ghost var cov := ok && log0 == sofar.sentBase && Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, recs0, sofar.trace);
      ghost var c := Consts();
      ghost var t0, q0, pr0, ls0, e0 := sofar.trace, selfQueue, promised, logStart, out.early;
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      moves := moves0;
      var fuel := SELF_DELIVERY_LIMIT;
      var pending := SelfPending();
      while pending && fuel > 0
        invariant BalLe(old(promised), promised) && SameConfig() && Consts() == c && SameBases()
        invariant Valid()
        invariant old(selfQueue) == [] ==> unchanged(this, votes, committed)
        invariant ok ==> StepOk(st, h0, log0, moves)
        invariant moves0 <= moves
        invariant fuel == SELF_DELIVERY_LIMIT ==> selfQueue == q0 && sofar.trace == t0 && promised == pr0 && logStart == ls0
        invariant fuel < SELF_DELIVERY_LIMIT && q0 != [] && FirstRecord(q0[0], pr0, ls0) != [] ==> out.sync && out.early == e0
        decreases fuel
        invariant pending == (selfQueue != [])
        invariant cov ==> Cr.EveryCutCovered(c, me, h0, log0, st.net, recs0, sofar.trace)
      {
        var m := PopSelf();
        ghost var p := Packet(me, me, m);
        ghost var h1, log1 := AbsHost(), sentLog;
        ghost var stk := if ok then P.State(st.hosts[me := h1], st.net + RR.SentBy(moves)) else st;
        if ok {
          RR.StepTrailIs(c, me as nat, h0, log0, st.net, moves, h1, log1);
          Sy.InvAfterRun(c, st, me as nat, st.net, moves, h1);
          RR.StepTrailHas(c, me as nat, h0, log0, st.net, moves, h1, log1, p);
          if p in log0 {
            RR.PacketRefinesMono(p, st.net, stk.net);
            RM.LearnBackedMono(p, st.net, st.net, stk.net, stk.net);
          } else {
            RR.PacketRefinesMono(p, RR.SentBy(moves), stk.net);
            RM.LearnBackedMono(p, RR.SentBy(moves), st.net + RR.SentBy(moves), stk.net, stk.net);
          }
          assert Within(stk) && OT.OnWire(p, stk.net);
        }
        ghost var first, sq1 := fuel == SELF_DELIVERY_LIMIT, selfQueue;
        assert AbsHost() == h1 && sentLog == log1;
        // The point before its handling.
        ghost var t1, rl1, e1, s1, pr1, ls1 := sofar.trace, recLog, out.early, out.sync, promised, logStart;
        ghost var pt1 := Cr.Point(moves, h1, t1);
        if cov {
          PointHere(st, h0, log0, moves);
          if m.Accept? {
            SelfAcceptNotAbove(stk, m);
          }
        }
        assert {:split_here} true;  // the handling apart from what came before it
        ghost var more := Dispatch(me, m, stk);
        if cov {
          HandledCovered(st, h0, log0, recs0, m, t1, pt1, rl1, e1, s1, sq1, pr1, ls1);
        }
        assert {:split_here} true;  // the trail and FirstRecord apart from the cuts
        if first && FirstRecord(m, pr0, ls0) != [] {
          FirstRecordDid(m, t0, sq1, pr0, ls0);
          FirstRecordSyncs(t0, m, pr0, ls0);
        }
        if ok {
          RR.StepTrailChain(c, me as nat, h0, log0, st.net, moves, h1, log1, more, AbsHost(), sentLog);
          RR.SentByAppend(moves, more);
          moves := moves + more;
        }
        fuel := fuel - 1;
        pending := SelfPending();
      }
      DropSelf();  // past the limit, the rest are dropped, like lost messages
    }

    // A step begins with empty output buffers and an empty trace, from the logs as they are.
    method BeginStep()
      requires Valid()
      modifies this
      ensures Valid() && BalLe(old(promised), promised) && acked <= old(acked) && EmitFromKept()
      ensures out.records == [] && out.packets == [] && out.commits == [] && out.early == []
      ensures Unchanged() && selfQueue == [] && sentLog == old(sentLog) && recLog == old(recLog)
      ensures sofar.trace == [] && sofar.sentBase == sentLog && sofar.recBase == recLog && commitBase == commitUpto
    {
      OT.TiedNone(sentLog, recLog, me);
      sofar := O.Step([], sentLog, recLog);
      commitBase := commitUpto;
      out := NoOutput;
      selfQueue := [];
      buffers := OT.NoBuffers;
      OT.BuffersTiedMake(out, selfQueue, buffers);
    }

    // The step's Ready: its output buffers, which are all it did (ReadyIs). They are emptied,
    // and the next step starts from here.
    method TakeReady(accepted: bool) returns (r: Ready, ghost t: seq<O.Out>)
      requires Valid()
      modifies this
      ensures Valid() && Unchanged() && sentLog == old(sentLog) && recLog == old(recLog) && selfQueue == old(selfQueue) && EmitFromKept()
      ensures ReadyIs(r, t, old(sofar.sentBase), old(sofar.recBase)) && r.accepted == accepted
      ensures CommitsAre(r, old(commitBase))
      ensures sofar.trace == [] && sofar.sentBase == sentLog && sofar.recBase == recLog && commitBase == commitUpto
      ensures t == old(sofar.trace) && r.early == old(out.early)
    {
      var commits := CommitsFrom(commitBase);
      OT.BuffersTiedIs(out, selfQueue, buffers);
      var records := OT.RecordsOf(buffers.records);
      var early := OT.PacketsOf(buffers.early);
      var late := OT.PacketsOf(buffers.late);
      r := Ready(records, late, commits, accepted, early, buffers.sync, buffers.needSnapshot, buffers.earlyAfter);
      assert r == out.(accepted := accepted, commits := commits);
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      OT.TiedNone(sentLog, recLog, me);
      RS.HasAllSub(RS.AbsCommitted(committed[..], logStart as nat), logStart as nat, commitUpto as nat,
                   commitBase as nat, commitUpto as nat);
      t := sofar.trace;
      sofar := O.Step([], sentLog, recLog);
      commitBase := commitUpto;
      out := NoOutput;
      // emptied from a constant: an empty sequence written here would be allocated each step
      buffers := OT.NoBuffers.(selfFront := buffers.selfFront, selfBack := buffers.selfBack);
      OT.BuffersTiedMake(out, selfQueue, buffers);
    }

    // A step ends by handling what it sent itself; its Ready is all it did (ReadyIs), and the
    // next step starts from here.
    method EndStep(accepted: bool, ghost st: P.State, ghost h0: P.Host, ghost log0: seq<Packet>, ghost moves0: seq<RR.Move>)
      returns (r: Ready, ghost moves: seq<RR.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && EmitFromKept()
      ensures old(selfQueue) == [] ==> AbsHost() == old(AbsHost()) && sentLog == old(sentLog) && SameConfig() && acked == old(acked)
      ensures old(StepOk(st, h0, log0, moves0)) ==> StepOk(st, h0, log0, moves)
      ensures ReadyIs(r, t, old(sofar.sentBase), old(sofar.recBase)) && r.accepted == accepted
      ensures CommitsAre(r, old(commitBase))
      ensures sofar.trace == [] && sofar.sentBase == sentLog && sofar.recBase == recLog && commitBase == commitUpto
      ensures moves0 <= moves
      ensures old(selfQueue) == [] ==> t == old(sofar.trace)
      ensures SameConfig()
      ensures old(selfQueue) != [] && FirstRecord(old(selfQueue)[0], old(promised), old(logStart)) != [] ==>
                r.early == old(out.early)
      ensures old(StepOk(st, h0, log0, moves0)) && log0 == old(sofar.sentBase)
              && old(Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, sofar.recBase, sofar.trace)) ==>
                Cr.EveryCutCovered(Consts(), me, h0, log0, st.net, old(sofar.recBase), t)
    {
      moves := DrainSelf(st, h0, log0, moves0);
      ghost var h, log, ack := AbsHost(), sentLog, acked;
      r, t := TakeReady(accepted);
      assert AbsHost() == h && sentLog == log && acked == ack;
    }

    // ---- the step API (what the extension exposes) --------------------------------------
    // Each step is given, as a ghost argument, the protocol state st its host is part of (in
    // ImplSystem: the abstraction of a reachable state, whose wire holds every packet sent).
    // Then the step is a run of its host's protocol steps from there (StepOk: RR.StepTrail,
    // ImplStep's premise, see ImplSystem.StepTrailIsImplStep), after which the Accepted
    // messages the host counted are in the network it reached.

    // What a step relies on of st: the host is part of it, and every packet it sent is on its
    // wire.
    ghost predicate StepFrom(st: P.State)
      reads this, votes, committed
    {
      Within(st) && SentOnWire(st.net)
    }

    // A step that ran a trail from st (where the host was at h0, its packet log at log0).
    lemma StepStart(st: P.State, h0: P.Host, log0: seq<Packet>, moves: seq<RR.Move>)
      requires PI.Inv(Consts(), st) && me as nat < |st.hosts| && st.hosts[me] == h0 && forall p | p in log0 :: OT.OnWire(p, st.net)
      requires RR.Trail(Consts(), me as nat, h0, log0, st.net, moves, AbsHost(), sentLog) && acked <= st.net
      ensures StepOk(st, h0, log0, moves)
    {
      RR.StepTrailNil(Consts(), me as nat, h0, log0, st.net);
      assert st.net + RR.SentBy([]) == st.net;
      RR.StepTrailChain(Consts(), me as nat, h0, log0, st.net, [], h0, log0, moves, AbsHost(), sentLog);
      assert [] + moves == moves;
    }

    method Receive(p: Packet, ghost st: P.State) returns (r: Ready, ghost moves: seq<RR.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && EmitFromKept() && SameConfig()
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures old(StepFrom(st)) && OT.OnWire(p, st.net) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
      // A Prepare from another member: every cut of its records is Covered (CrashPartWay).
      ensures p.dst == me && p.src < n && p.src != me && p.msg.Prepare? ==> Cr.AllCovered(r.records, r.early, old(sentLog))
      // An Accept from another member (not at this host's own ballot): every cut is Covered but
      // the one between a raised promise's record and the vote's, a PromiseCut (Cr.CrashAtPromise).
      ensures p.dst == me && p.src < n && p.src != me && p.msg.Accept? && p.msg.bal.node != me ==>
                forall k: nat | k <= |r.records| ::
                  Cr.Covered(r.records, r.early, old(sentLog), k) || Cr.PromiseCut(r.records, r.early, old(sentLog), k, old(promised))
      // A Promise from another member, which may make this host the leader: the cut before its
      // first vote (the takeover's Accepts sent early) is a crash after its takeover (Cr.CutAtPoint).
      ensures p.dst == me && p.src < n && p.src != me && p.msg.Promise? && old(StepFrom(st)) && OT.OnWire(p, st.net) ==>
                exists pt :: Cr.PointOf(Consts(), me as nat, old(AbsHost()), old(sentLog), st.net, old(recLog), t, pt)
                             && Cr.CutAtPoint(me, t, old(sentLog), pt, 0)
      // Every cut of the step is covered (Cr.EveryCutIsCrashStep).
      ensures old(StepFrom(st)) && OT.OnWire(p, st.net) ==>
                Cr.EveryCutCovered(Consts(), me, old(AbsHost()), old(sentLog), st.net, old(recLog), t)
    {
      ghost var ok := StepFrom(st) && OT.OnWire(p, st.net);
      BeginStep();
      ghost var h0, log0 := AbsHost(), sentLog;
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      if ok {
        RR.TrailNil(Consts(), me as nat, h0, log0, st.net);
      }
      ghost var q: Packet, pr0, ls0, rl0 := p, promised, logStart, recLog;
      assert rl0 == sofar.recBase;
      if p.dst == me && p.src < n && p.src != me {
        moves := Dispatch(p.src, p.msg, st);
        if p.msg.Prepare? {
          q := Cr.PromiseAnswer(sofar.trace, [], BalLt(pr0, p.msg.bal), p.msg.bal);
        }
        if p.msg.Accept? {
          Cr.AcceptDidIs([], sofar.trace, [], selfQueue, me, p.src, pr0, p.msg.bal, ls0, p.msg.slot, p.msg.val);
          q := Cr.AcceptAnswer(sofar.trace, [], BalLt(p.msg.bal, pr0), ls0, BalLt(pr0, p.msg.bal), p.msg.bal, p.msg.slot, p.msg.val);
        }
      }
      if ok {
        StepStart(st, h0, log0, moves);
        if p.dst == me && p.src < n && p.src != me {
          ReceivedCovered(st, h0, log0, p, pr0, ls0, rl0);
        } else {
          StartCovered(st, h0, log0);
        }
      }
      // The point after a Promise's handling, before the messages this host sent itself.
      ghost var promise := ok && p.dst == me && p.src < n && p.src != me && p.msg.Promise?;
      ghost var pt := Cr.Point(moves, AbsHost(), sofar.trace);
      ghost var e1 := out.early;
      if promise {
        OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
        assert e1 == O.Early(me, pt.trace);
        assert RR.StepTrail(Consts(), me as nat, h0, log0, st.net, pt.moves, pt.host, log0 + O.Sends(pt.trace));
        assert recLog == old(recLog) + O.Records(pt.trace) && recLog == old(recLog);
        assert O.Records(pt.trace) == [];
        assert Cr.Rebuilt(old(recLog) + O.Records(pt.trace)) == pt.host.(leader := P.NotLeader);
      }
      ghost var trace := sofar.trace;
      r, moves, t := EndStep(false, st, h0, log0, moves);
      if promise {
        assert O.Early(me, t) == r.early == e1 == O.Early(me, pt.trace);
        forall e | e in O.Early(me, t) ensures e in O.Sends(pt.trace) {
          Cr.EarlyIsSent(me, pt.trace, e);
        }
        assert Cr.PointOf(Consts(), me as nat, h0, log0, st.net, old(recLog), t, pt);
        assert Cr.CutAtPoint(me, t, log0, pt, 0);
      }
      if p.dst == me && p.src < n && p.src != me && p.msg.Prepare? {
        assert t == Cr.PromiseTrace(BalLt(pr0, p.msg.bal), p.msg.bal, q);
        Cr.PromiseTraceCovered(me, BalLt(pr0, p.msg.bal), p.msg.bal, q, log0);
      }
      if p.dst == me && p.src < n && p.src != me && p.msg.Accept? && p.msg.bal.node != me {
        assert t == Cr.AcceptTrace(BalLt(p.msg.bal, pr0), ls0, BalLt(pr0, p.msg.bal), p.msg.bal, p.msg.slot, p.msg.val, q);
        Cr.AcceptTraceCovered(me, BalLt(p.msg.bal, pr0), ls0, BalLt(pr0, p.msg.bal), p.msg.bal, p.msg.slot, p.msg.val, q, log0, pr0);
      }
    }

    method Tick(ghost st: P.State) returns (r: Ready, ghost moves: seq<RR.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && EmitFromKept() && SameConfig()
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures old(StepFrom(st)) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
      // Every cut of the step is covered: the one record of its own that needs a sync, an
      // election's promise, comes first; then its messages to itself (Cr.EveryCutIsCrashStep).
      ensures old(StepFrom(st)) ==> Cr.EveryCutCovered(Consts(), me, old(AbsHost()), old(sentLog), st.net, old(recLog), t)
    {
      ghost var ok := StepFrom(st);
      BeginStep();
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      RR.TrailNil(c, me as nat, h0, log0, {});
      ghost var rl0 := recLog;
      assert rl0 == sofar.recBase && out.early == [];
      if ticks < TICKS_LIMIT * 4 {
        ticks := ticks + 1;
      }
      if catchUpCooldown > 0 {
        catchUpCooldown := catchUpCooldown - 1;
      }
      assert AbsHost() == h0 && sentLog == log0 && acked == old(acked);
      if role == Leader {
        if ticks >= heartbeatTicks {
          moves := SendHeartbeats();
        }
      } else if ticks >= electionTimeout {
        ghost var seen := BalMax(promised, maxSeen);
        ghost var okb := seen.round < UINT64_MAX - 1;
        moves := R.ElectionMoves(me as nat, n as nat, h0, if okb then NextBallot(seen, me) else Zero, okb);
        StartElection();
        RM.NoLearnsBacked(sentLog[|log0|..], RR.SentBy(moves), {});
        RR.TrailOf(c, me as nat, h0, log0, {}, moves, AbsHost(), sentLog);
      }
      if ok {
        RR.TrailNet(c, me as nat, h0, log0, {}, st.net, moves, AbsHost(), sentLog);
        StepStart(st, h0, log0, moves);
        assert rl0 == sofar.recBase;
        StartCovered(st, h0, log0);
      }
      r, moves, t := EndStep(false, st, h0, log0, moves);
    }

    method Propose(val: Value, ghost st: P.State) returns (r: Ready, ghost moves: seq<RR.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && EmitFromKept() && SameConfig()
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      // An accepted value is proposed as it is: the step's first protocol move sends Accepts of val.
      ensures r.accepted ==> |moves| > 0 && moves[0].step.SendAcceptStep? && moves[0].step.val == val
      // The step receives the client's request for val (ImplSystem.ClientSends).
      ensures old(StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
      // The cut before its own vote is a crash after its SendAccept, its Accepts sent (Cr.CutAtPoint).
      ensures r.accepted && old(StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net) ==>
                exists pt :: Cr.PointOf(Consts(), me as nat, old(AbsHost()), old(sentLog), st.net, old(recLog), t, pt)
                             && Cr.CutAtPoint(me, t, old(sentLog), pt, 0)
      // Every cut of the step is covered (Cr.EveryCutIsCrashStep).
      ensures old(StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net) ==>
                Cr.EveryCutCovered(Consts(), me, old(AbsHost()), old(sentLog), st.net, old(recLog), t)
    {
      ghost var ok0 := StepFrom(st) && S.Request(me as nat, me as nat, val) in st.net;
      ghost var req := {S.Request(me as nat, me as nat, val)};
      BeginStep();
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok0 ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      RR.TrailNil(c, me as nat, h0, log0, req);
      var ok := false;
      ghost var slot0 := nextSlot;
      if role == Leader && promised == bal && nextSlot - logStart < WINDOW {
        var slot := nextSlot;
        Lead.LeadsFree(bal, leaderAbs, slot as nat, logStart as nat, val);
        Lead.LeadsMono(role, bal, leaderAbs, slot as nat, logStart as nat, slot as nat + 1, logStart as nat);
        nextSlot := nextSlot + 1;
        assert AbsHost() == h0 && sentLog == log0;
        assert S.Requested(req, val);
        ghost var mv := ProposeAt(slot, val, req);
        RM.NoLearnsBacked(sentLog[|log0|..], mv.sent, req);
        RR.TrailSnoc(c, me as nat, h0, log0, req, [], h0, log0, mv, sentLog);
        assert [] + [mv] == [mv];
        moves := [mv];
        ok := true;
      }
      ghost var pt := Cr.Point(moves, AbsHost(), sofar.trace);
      ghost var q1, pr1, ls1, e1 := selfQueue, promised, logStart, out.early;
      OT.TiedIs(sofar.trace, sofar.sentBase, sofar.recBase, sentLog, recLog, me, out.records, out.early, out.packets, out.sync, out.earlyAfter);
      assert e1 == O.Early(me, pt.trace);
      if ok0 {
        RR.TrailNet(c, me as nat, h0, log0, req, st.net, moves, AbsHost(), sentLog);
        StepStart(st, h0, log0, moves);
        assert RR.StepTrail(c, me as nat, h0, log0, st.net, pt.moves, pt.host, log0 + O.Sends(pt.trace));
        assert Replays() && recLog == old(recLog) + O.Records(pt.trace);
        assert Cr.Rebuilt(old(recLog) + O.Records(pt.trace)) == pt.host.(leader := P.NotLeader);
        StartCovered(st, h0, log0);
      }
      r, moves, t := EndStep(ok, st, h0, log0, moves);
      if ok && ok0 {
        // The point after its Accepts left, before its vote: the vote is the first record.
        assert q1 == [Accept(pr1, slot0, val)] && q1[0] == Accept(pr1, slot0, val);
        assert FirstRecord(q1[0], pr1, ls1) == [O.Emitted(RecVote(slot0, pr1, val))];
        assert O.Early(me, t) == r.early == e1 == O.Early(me, pt.trace);
        forall p | p in O.Early(me, t) ensures p in O.Sends(pt.trace) {
          Cr.EarlyIsSent(me, pt.trace, p);
        }
        assert O.Records(pt.trace) == [];
        assert Cr.PointOf(c, me as nat, h0, log0, st.net, old(recLog), t, pt);
        assert Cr.CutAtPoint(me, t, log0, pt, 0);
      }
    }

    // Leader: start confirming that it still leads; reads that arrived before this call may be
    // served once readConfirmed >= the returned number and commitUpto >= the returned slot.
    method ConfirmRead(ghost st: P.State) returns (r: Ready, seqNo: uint64, readSlot: uint64, ghost moves: seq<RR.Move>, ghost t: seq<O.Out>)
      requires Valid()
      modifies Repr
      ensures Valid() && BalLe(old(promised), promised) && EmitFromKept() && SameConfig()
      ensures ReadyIs(r, t, old(sentLog), old(recLog))
      ensures CommitsAre(r, old(commitUpto))  // the slots newly committed, each once, in order
      ensures old(StepFrom(st)) ==>
                StepOk(st, old(AbsHost()), old(sentLog), moves)
      // Every cut of the step is covered (Cr.EveryCutIsCrashStep).
      ensures old(StepFrom(st)) ==> Cr.EveryCutCovered(Consts(), me, old(AbsHost()), old(sentLog), st.net, old(recLog), t)
    {
      ghost var ok := StepFrom(st);
      BeginStep();
      ghost var h0, log0, c := AbsHost(), sentLog, Consts();
      assert h0 == old(AbsHost()) && log0 == old(sentLog);
      assert ok ==> Within(st) && forall q | q in log0 :: OT.OnWire(q, st.net);
      moves := [];
      RR.TrailNil(c, me as nat, h0, log0, {});
      ghost var rl0 := recLog;
      seqNo := 0;
      readSlot := nextSlot;
      if role == Leader && readSeq < UINT64_MAX {
        Lead.LeadsShape(bal, leaderAbs, nextSlot as nat, logStart as nat);
        readSeq := readSeq + 1;
        seqNo := readSeq;
        readAck[me] := readSeq;
        assert AbsHost() == h0 && sentLog == log0;
        // The Heartbeats: a SendNoSafety step each (read confirmation has no protocol role).
        Broadcast(Heartbeat(bal, commitUpto, readSeq), false);
        RR.BeatRefines(c, h0, {}, me, n, bal, commitUpto, readSeq, sentLog[|log0|..]);
        moves := RR.BeatMoves(h0, me as nat, n as nat, bal, commitUpto as nat);
        RR.TrailOf(c, me as nat, h0, log0, {}, moves, h0, sentLog);
        UpdateReadConfirmed();
        ticks := 0;
      }
      if ok {
        RR.TrailNet(c, me as nat, h0, log0, {}, st.net, moves, AbsHost(), sentLog);
        StepStart(st, h0, log0, moves);
        assert rl0 == sofar.recBase && recLog == rl0;
        StartCovered(st, h0, log0);
      }
      r, moves, t := EndStep(false, st, h0, log0, moves);
    }

    // A ReadIndex request from member src, which had promised exactly b when it sent it (after
    // the reads it asks for arrived there). With three members (a quorum of two), this leader
    // and src are a quorum neither of which had promised a ballot above this leader's when
    // those reads arrived; a newer leader needs the promise of one of them, so none committed
    // anything before the reads, and nextSlot covers every slot this leader may have committed
    // or re-proposed: the reads may be served once applied up to the returned slot, with no
    // heartbeat round. Returns 0 when that does not hold (confirm with ConfirmRead instead).
    // No state changes: the method only answers.
    method ReadIndexAttested(src: uint64, b: Ballot) returns (readSlot: uint64)
      requires Valid()
      ensures readSlot != 0 ==> && role == Leader && b == bal && promised == bal && quorum == 2
                                && src < n && src != me && readSlot == nextSlot
    {
      readSlot := 0;
      if role == Leader && b == bal && promised == bal && quorum == 2 && src < n && src != me {
        readSlot := nextSlot;
      }
    }
  }
}
