// The driver's contract: what the node around the core (the shim, which is not verified) must
// do with each Ready that a step of the core returns. The proofs take it as given of the code they do
// not cover; TRUSTED.md (items 3 and 4) names the runtime checks that guard it.
module Driver {
  import opened Native
  import opened ImplTypes

  // What the driver does: send a packet on the network, append a record to its write-ahead
  // log, make every appended record durable (fdatasync), apply a committed slot's value to the
  // key-value state.
  datatype Action = Send(p: Packet) | Append(r: Record) | Sync | Apply(c: Committed)

  ghost function Sends(ps: seq<Packet>): seq<Action> {
    seq(|ps|, k requires 0 <= k < |ps| => Send(ps[k]))
  }

  ghost function Appends(rs: seq<Record>): seq<Action> {
    seq(|rs|, k requires 0 <= k < |rs| => Append(rs[k]))
  }

  ghost function Applies(cs: seq<Committed>): seq<Action> {
    seq(|cs|, k requires 0 <= k < |cs| => Apply(cs[k]))
  }

  // Honouring one Ready, in this order: send its early packets (they depend on no record of the
  // step that needs a sync); append its records in order; if it says so, make them durable;
  // only then send its late packets and apply its commits, in order.
  ghost function Honour(r: Ready): seq<Action> {
    Sends(r.early) + Appends(r.records) + (if r.sync then [Sync] else []) + Sends(r.packets) + Applies(r.commits)
  }

  // A driver obeys the core when its actions are those of honouring each Ready in turn. The
  // protocol's model allows it more: the network may delay, lose, duplicate and reorder any
  // packet, and a commit record may become durable late (Protocol's Crash may forget committed
  // entries), so a driver may also send a packet later than this order, apply a commit later,
  // and make the records of several consecutive Readies durable with one Sync before any of
  // their late packets and commits (group commit). It may never send a late packet or apply a
  // commit before the records appended before it that need a sync (NeedsSync) are durable, nor
  // replay at start anything but the records it made durable, in order.
  ghost predicate Obeys(readies: seq<Ready>, actions: seq<Action>)
    decreases |readies|
  {
    if readies == [] then actions == []
    else
      var last := Honour(readies[|readies| - 1]);
      && |last| <= |actions|
      && actions[|actions| - |last|..] == last
      && Obeys(readies[..|readies| - 1], actions[..|actions| - |last|])
  }
}
