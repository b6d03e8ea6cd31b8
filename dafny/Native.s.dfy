// Bounded machine integers: the only integer types the compiled core may use.
// The C++ backend maps each newtype onto the C++ integer type of the same range.
module Native {
  newtype uint8 = x: int | 0 <= x < 0x100
  newtype uint64 = x: int | 0 <= x < 0x1_0000_0000_0000_0000

  const UINT64_MAX: uint64 := 0xffff_ffff_ffff_ffff
}
