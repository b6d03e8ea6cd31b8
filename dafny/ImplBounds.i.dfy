// The executable core's bounds (Impl.i.dfy): its window of slots, its members, the slot
// numbers, the ticks and the batches it sends; and the arithmetic over them that its proofs
// use: the cells of the slots-by-members flag array (acks) and the staggered election timeout.
module ImplBounds {
  import opened Native

  // Every slot lives in the window [logStart, logStart + WINDOW) of preallocated arrays.
  const WINDOW: uint64 := 16384
  const MAX_MEMBERS: uint64 := 64
  const CATCHUP_BATCH: uint64 := 64     // Commit messages answered per CatchUp
  const RETRANSMIT_BATCH: uint64 := 64  // Accepts re-sent per heartbeat
  const SELF_DELIVERY_LIMIT: uint64 := 0x10_0000
  const SLOT_LIMIT: uint64 := 0x4000_0000_0000_0000  // slots stay far below overflow
  const TICKS_LIMIT: uint64 := 0x1_0000_0000

  // ---- the arithmetic of the bounds ----------------------------------------------------------

  // Two cells of the slots-by-members flag array are one only for one slot and member.
  lemma AckIndexSame(a: nat, j: nat, b: nat, k: nat, n: nat)
    requires j < n && k < n && a * n + j == b * n + k
    ensures a == b && j == k
  {
    if a < b {
      MulMonotone(a + 1, b, n);
      assert (a + 1) * n == a * n + n;
    } else if b < a {
      MulMonotone(b + 1, a, n);
      assert (b + 1) * n == b * n + n;
    }
  }

  // A cell of the slots-by-members flag array is in the array.
  lemma AckIndexBound(idx: uint64, i: uint64, n: uint64, len: int)
    requires idx < WINDOW && i < n && len == WINDOW as int * n as int
    ensures idx as int * n as int + i as int < len
  {
    MulMonotone(idx as int + 1, WINDOW as int, n as int);
    assert (idx as int + 1) * n as int == idx as int * n as int + n as int;
  }

  lemma MulMonotone(a: int, b: int, c: int)
    requires 0 <= a <= b && 0 <= c
    ensures a * c <= b * c
  {
  }

  // An election timeout staggered by node id stays within the ticks.
  lemma StaggerBound(me: uint64, n: uint64, stagger: uint64, ticks: uint64)
    requires me < n && 1 <= n && stagger == ticks / n && ticks <= TICKS_LIMIT
    ensures me as int * stagger as int <= ticks as int
  {
    assert stagger as int * n as int <= ticks as int;
    assert me as int * stagger as int <= n as int * stagger as int;
  }
}
