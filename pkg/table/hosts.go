package table

import (
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Host sets: the single-address entries (IPv4 /32, IPv6 /128), which are
// most of a large blocklist, in open-addressing hash sets of fixed-size
// keys; the same sets (intSet) hold the prefixes of each length while a
// family has few (prefixes.go). A hit in a spread-out 1M-entry
// bart table walks three or four nodes, each a cache miss; a hit or miss
// here reads one slot, one cache line in the common case. The slots hold
// no pointers, so the garbage collector never scans them, and they take
// 8-16 bytes a v4 entry and 32-64 a v6 one, against bart's ~60.
//
// A host set inside a published version is never written. Mutations
// copy it (clone) and change the copy, which only the mutating goroutine
// sees until the version holding it is stored.
//
// Linear probing with a power-of-two number of slots, at most half of
// them used. A free slot holds the zero key; the zero address (0.0.0.0,
// ::) is the zero field instead. Deletion shifts the following run back
// (no tombstones), so a set never degrades with use.
//
// The hash is a multiply by a random odd number (multiply-shift, which
// is universal: without the seed, keys cannot be chosen to collide)
// followed by a fixed xor-shift-multiply, which spreads structured keys
// over the whole table. Plain multiply-shift with linear probing made
// long runs of a /16 listed host by host: in 68 of 300 seeds
// TestHostSetsSpreadRuns failed, with up to 42 probes a hit on average
// (308 at worst); with the mix, 0 of 500 failed, 1.5 probes on average,
// as for random keys. Each set draws its seed when it is made or grows.
//
// Measured (bench/results/table.md): a 1M-entry table of the benchmark
// mix kept 33 MiB with its hosts here and its prefixes in bart, against
// bart's 62, and a spread-out IPv4 host hit cost ~25 ns against ~100.

// maxLoadShift bounds the load: a set of n keys has at least n<<1 slots.
const maxLoadShift = 1

// slotsFor is the number of slots for n keys: a power of two, at least
// 2n and at least 16.
func slotsFor(n int) int {
	return max(16, 1<<bits.Len(uint(n<<maxLoadShift)-1))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newSeed() uint64 { return rand.Uint64() | 1 }

func finish(x uint64) uint64 {
	x ^= x >> 32
	return x * 0x9e3779b97f4a7c15
}

// intSet is a set of integer keys: IPv4 addresses as big-endian
// uint32s (the hosts, set32), and the keys of the prefix sets (prefixes.go).
type intSet[K uint32 | uint64] struct {
	slots []K  // len a power of two, or 0 when only zero may be set
	shift uint // 64 - log2(len(slots))
	seed  uint64
	n     int // keys, zero included
	zero  bool
}

func (s *intSet[K]) home(k K) uint {
	return uint(finish(uint64(k)*s.seed) >> s.shift)
}

func (s *intSet[K]) has(k K) bool {
	if k == 0 {
		return s.zero
	}
	if len(s.slots) == 0 {
		return false
	}
	m := uint(len(s.slots) - 1)
	for i := s.home(k); ; i = (i + 1) & m {
		switch s.slots[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
}

// clone returns an unshared copy with room for extra more keys (extra >=
// 0). It copies the slots when they are enough, else rehashes into more.
func (s *intSet[K]) clone(extra int) intSet[K] {
	if len(s.slots) >= slotsFor(s.n+extra) || extra == 0 {
		c := *s
		c.slots = slices.Clone(s.slots)
		return c
	}
	return s.rehash(s.n + extra)
}

// rehash returns an unshared copy with slots for n keys (n >= s.n) and a
// new seed.
func (s *intSet[K]) rehash(n int) intSet[K] {
	c := intSet[K]{zero: s.zero, n: boolInt(s.zero)}
	c.init(n)
	for _, k := range s.slots {
		if k != 0 {
			c.add(k)
		}
	}
	return c
}

// shrink rehashes s, unshared, into fewer slots when deletes left it
// using less than an eighth of them.
func (s *intSet[K]) shrink() {
	if len(s.slots) > 16 && len(s.slots) > 4*slotsFor(s.n) {
		*s = s.rehash(s.n)
	}
}

func (s *intSet[K]) init(n int) {
	sz := slotsFor(n)
	s.slots = make([]K, sz)
	s.shift = uint(64 - bits.TrailingZeros(uint(sz)))
	s.seed = newSeed()
}

// add inserts k and reports whether it was new. Precondition: s is
// unshared and has room (made by clone or init for enough keys).
func (s *intSet[K]) add(k K) bool {
	if k == 0 {
		if s.zero {
			return false
		}
		s.zero = true
		s.n++
		return true
	}
	m := uint(len(s.slots) - 1)
	for i := s.home(k); ; i = (i + 1) & m {
		switch s.slots[i] {
		case k:
			return false
		case 0:
			s.slots[i] = k
			s.n++
			return true
		}
	}
}

// remove deletes k and reports whether it was there. Precondition: s is
// unshared.
func (s *intSet[K]) remove(k K) bool {
	if k == 0 {
		if !s.zero {
			return false
		}
		s.zero = false
		s.n--
		return true
	}
	if len(s.slots) == 0 {
		return false
	}
	m := uint(len(s.slots) - 1)
	i := s.home(k)
	for ; s.slots[i] != k; i = (i + 1) & m {
		if s.slots[i] == 0 {
			return false
		}
	}
	// Shift back every key of the run after i that may sit at i: one
	// whose home is not cyclically within (i, j].
	for j := (i + 1) & m; s.slots[j] != 0; j = (j + 1) & m {
		if x := s.slots[j]; (j-s.home(x))&m >= (j-i)&m {
			s.slots[i] = x
			i = j
		}
	}
	s.slots[i] = 0
	s.n--
	return true
}

// set32 is a set of IPv4 addresses as big-endian uint32s.
type set32 = intSet[uint32]

// key6 is an IPv6 address as two big-endian halves.
type key6 struct{ hi, lo uint64 }

// set128 is a set of IPv6 addresses; see intSet, which it mirrors.
type set128 struct {
	slots        []key6
	shift        uint
	seedH, seedL uint64
	n            int
	zero         bool
}

func (s *set128) home(k key6) uint {
	return uint(finish(k.hi*s.seedH+k.lo*s.seedL) >> s.shift)
}

func (s *set128) has(k key6) bool {
	if k == (key6{}) {
		return s.zero
	}
	if len(s.slots) == 0 {
		return false
	}
	m := uint(len(s.slots) - 1)
	for i := s.home(k); ; i = (i + 1) & m {
		switch s.slots[i] {
		case k:
			return true
		case key6{}:
			return false
		}
	}
}

func (s *set128) clone(extra int) set128 {
	if len(s.slots) >= slotsFor(s.n+extra) || extra == 0 {
		c := *s
		c.slots = slices.Clone(s.slots)
		return c
	}
	return s.rehash(s.n + extra)
}

// rehash returns an unshared copy with slots for n keys (n >= s.n) and a
// new seed.
func (s *set128) rehash(n int) set128 {
	c := set128{zero: s.zero, n: boolInt(s.zero)}
	c.init(n)
	for _, k := range s.slots {
		if k != (key6{}) {
			c.add(k)
		}
	}
	return c
}

// shrink rehashes s, unshared, into fewer slots when deletes left it
// using less than an eighth of them.
func (s *set128) shrink() {
	if len(s.slots) > 16 && len(s.slots) > 4*slotsFor(s.n) {
		*s = s.rehash(s.n)
	}
}

func (s *set128) init(n int) {
	sz := slotsFor(n)
	s.slots = make([]key6, sz)
	s.shift = uint(64 - bits.TrailingZeros(uint(sz)))
	s.seedH, s.seedL = newSeed(), newSeed()
}

func (s *set128) add(k key6) bool {
	if k == (key6{}) {
		if s.zero {
			return false
		}
		s.zero = true
		s.n++
		return true
	}
	m := uint(len(s.slots) - 1)
	for i := s.home(k); ; i = (i + 1) & m {
		switch s.slots[i] {
		case k:
			return false
		case key6{}:
			s.slots[i] = k
			s.n++
			return true
		}
	}
}

func (s *set128) remove(k key6) bool {
	if k == (key6{}) {
		if !s.zero {
			return false
		}
		s.zero = false
		s.n--
		return true
	}
	if len(s.slots) == 0 {
		return false
	}
	m := uint(len(s.slots) - 1)
	i := s.home(k)
	for ; s.slots[i] != k; i = (i + 1) & m {
		if s.slots[i] == (key6{}) {
			return false
		}
	}
	for j := (i + 1) & m; s.slots[j] != (key6{}); j = (j + 1) & m {
		if x := s.slots[j]; (j-s.home(x))&m >= (j-i)&m {
			s.slots[i] = x
			i = j
		}
	}
	s.slots[i] = key6{}
	s.n--
	return true
}
