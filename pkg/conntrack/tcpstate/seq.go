package tcpstate

// Seq is a TCP sequence number. Sequence space wraps at 2^32, so two
// numbers are ordered only relative to each other, within half the space:
// a comes before b when b-a, as a signed 32-bit integer, is positive (the
// kernel's before() and after(), RFC 793's "=<" modulo 2^32). Sizes (a
// length, a window) stay uint32: a Seq plus a size is a Seq (Add), and the
// distance from one Seq to a later one is a size (Size), as in gVisor's
// seqnum.
type Seq uint32

// Before reports whether s comes before t in sequence space.
func (s Seq) Before(t Seq) bool { return int32(s-t) < 0 }

// After reports whether s comes after t in sequence space.
func (s Seq) After(t Seq) bool { return int32(t-s) < 0 }

// Add returns s advanced by n.
func (s Seq) Add(n uint32) Seq { return s + Seq(n) }

// Sub returns s moved back by n.
func (s Seq) Sub(n uint32) Seq { return s - Seq(n) }

// Size returns the distance from s to end (end - s, modulo 2^32).
func (s Seq) Size(end Seq) uint32 { return uint32(end - s) }

// InWindow reports whether s lies in the size numbers starting at first:
// first <= s < first+size, in sequence space.
func (s Seq) InWindow(first Seq, size uint32) bool { return first.Size(s) < size }
