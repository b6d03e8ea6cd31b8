// A step's output buffers, built in time linear in what the step emits. Appending to a
// sequence copies it (the C++ runtime's sequences are flat arrays), so a step that sent k
// packets one append at a time cost k^2: a takeover of 4,000 slots (8,000 Accepts to the
// other members, 4,000 votes, 4,000 Accepts to itself) took 1.75 s in one step. A Stack is a
// list, newest item first: pushing one is constant time, and Count then Fill turn it into
// the sequence of its items, oldest first, in two passes (ImplOutTied's ...Of methods). A
// Buf appends to a short sequence first: most steps emit a few items, and a short sequence
// costs less to append to and nothing to hand over than a Stack's nodes (a proposal's steps
// on three replicas took 26 us with Stacks alone, 17 us with sequences).
module Stacks {
  import opened Native

  datatype Stack<T> = Empty | Push(rest: Stack<T>, top: T)

  // The items, oldest first.
  ghost function Items<T>(s: Stack<T>): seq<T>
    decreases s
  {
    if s.Empty? then [] else Items(s.rest) + [s.top]
  }

  // The number of items of s, or UINT64_MAX if there are as many or more.
  method Count<T>(s: Stack<T>) returns (n: uint64)
    ensures n == UINT64_MAX || n as nat == |Items(s)|
  {
    n := 0;
    var l := s;
    while l.Push? && n < UINT64_MAX
      invariant |Items(s)| == n as nat + |Items(l)|
      decreases l
    {
      n := n + 1;
      l := l.rest;
    }
  }

  // Writes the items of s, oldest first, into a, from the last: one pass. (The caller makes
  // the array, of n elements: Dafny's C++ backend cannot make an array of a type parameter.)
  method Fill<T>(s: Stack<T>, a: array<T>, n: uint64)
    requires a.Length == n as nat == |Items(s)|
    modifies a
    ensures a[..] == Items(s)
  {
    var l := s;
    var i := n;
    while l.Push?
      invariant i <= n && i as nat == |Items(l)| && Items(l) == Items(s)[..i] && a[i..] == Items(s)[i..]
      decreases l
    {
      i := i - 1;
      a[i] := l.top;
      l := l.rest;
    }
  }

  // The items of s, oldest first, one at a time (quadratic: for a Stack too long to Count).
  method Collect<T>(s: Stack<T>) returns (r: seq<T>)
    ensures r == Items(s)
  {
    r := [];
    var l := s;
    while l.Push?
      invariant Items(s) == Items(l) + r
      decreases l
    {
      r := [l.top] + r;
      l := l.rest;
    }
  }

  // The items a Buf holds: those of its short sequence, then, once it is Long, those pushed
  // on its Stack.
  datatype Buf<T> = Short(small: seq<T>) | Long(small: seq<T>, big: Stack<T>)

  ghost function Contents<T>(b: Buf<T>): seq<T> {
    if b.Short? then b.small else b.small + Items(b.big)
  }

  function Append<T>(b: Buf<T>, x: T): (b': Buf<T>)
    ensures Contents(b') == Contents(b) + [x]
  {
    // up to 32 items on the short sequence, then on the Stack
    if b.Long? then Long(b.small, Push(b.big, x))
    else if |b.small| < 32 then Short(b.small + [x])
    else assert Items(Push(Empty, x)) == [x]; Long(b.small, Push(Empty, x))
  }
}
