// The executable Multi-Paxos replica: the part of verikv that decides, compiled to C++.
// Sans-I/O and deterministic: inputs are a received message, a tick, a proposal or a durable
// record replayed at recovery; each step's output is one Ready (records to make durable,
// then packets to send, then committed slots to apply). It never reads a clock, a socket, a
// file or a random source. It follows dafny/PROTOCOL.md; every slot lives in a bounded window
// [logStart, logStart + WINDOW) of preallocated arrays, so no step allocates per slot.
//
// The class `Replica` is written in seven files, each a module that refines the one before and
// adds the members of one subject. Dafny verifies each member once, in the module that declares
// it, and compiles only this one, `Impl`, where the class is whole:
//   ImplState.i.dfy     the fields, Valid() and the ties of the concrete state to the protocol's
//                       ghost state (*Tied), the output primitives (Send, Broadcast, Persist)
//   ImplWindow.i.dfy    the slot window: its arrays reset, moved forward, cleared
//   ImplMoves.i.dfy     the host's own moves: promise, step down, commit, elect, lead, propose
//   ImplHandlers.i.dfy  one handler per kind of message received
//   ImplCuts.i.dfy      a step under way (StepOk) and the crash cuts of a whole step: the lemmas
//                       that keep every cut covered, and a crash part-way through one
//   ImplSteps.i.dfy     whole steps (Receive, Tick, Propose, ConfirmRead) and their Ready
//   ImplRecovery.i.dfy  start and restart (the constructor, Replay, FinishRecovery), snapshots
//                       (Truncate, InstallSnapshot, CheckpointRecords), restarts as Crash
// The proofs' parts that do not read a Replica (each invariant of Valid() stated over values,
// and its lemmas) are in ImplBounds, ImplOutTied, ImplCandidate, ImplLeader and ImplReplay.
//
// Dafny 4.11 stops with an internal error (a NullReferenceException in its precedence linter)
// on a module that refines one whose methods hold a `:|` statement over a function call, so the
// methods take such witnesses from lemmas instead (RM.ImageIn, RR.RunThatSent, Cr.PromiseAnswer,
// Cr.AcceptAnswer).
module Impl refines ImplRecovery {
}
