package table

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// DefaultLimit is the number of entries a table may hold when its
// Config.Limit is zero: 4 Mi (4,194,304). A 1M-entry table keeps about
// 17 MiB (bench/results/table.md's mix, all in hash sets; 4-8 MiB for
// 1M IPv4 hosts), so a table at this limit keeps at most about 250 MiB
// (bart with 4Mi prefixes of many lengths); an operator who needs more
// says so in the rules file.
const DefaultLimit = 1 << 22

// Errors that mutations wrap in an *Error; test for them with errors.Is.
var (
	// ErrConst: the table was defined const and refuses every change.
	ErrConst = errors.New("table is const")
	// ErrLimit: the change would pass the table's limit on entries.
	ErrLimit = errors.New("table limit reached")
	// ErrInvalid: a prefix given to a mutation is not a valid prefix.
	ErrInvalid = errors.New("invalid prefix")
)

// Error is a refused mutation. It names the table and wraps one of
// ErrConst, ErrLimit or ErrInvalid. A refused mutation changed nothing.
type Error struct {
	Table string
	Err   error
	Msg   string // what was refused, in the operator's words
}

func (e *Error) Error() string { return "table <" + e.Table + ">: " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// Config describes a table as the rules file defines it. The zero value
// is an unnamed, mutable table with the default limit.
type Config struct {
	Name string
	// Const tables refuse every mutation: their content is what New
	// was given.
	Const bool
	// Persist is pf's flag for a table kept even when no rule refers to
	// it. The table does not act on it; it is kept here so that whoever
	// manages tables can.
	Persist bool
	// Limit bounds the number of entries; 0 means DefaultLimit. An Add
	// or Replace that would pass it is refused whole.
	Limit int
}

// Table is a named set of prefixes that packets are matched against and
// that an operator changes at run time. It is safe for concurrent use:
// any number of goroutines may call Contains, Test, Len and Prefixes
// while one mutation at a time (the others wait on a mutex) builds the
// next version and publishes it with one atomic pointer store. Readers
// never lock and never see a half-made version.
//
// The zero value is an empty, unnamed, mutable table with the default
// limit; New makes one from a Config and its first entries.
type Table struct {
	cfg Config
	// cur is the published version. It is never modified once stored:
	// mutations derive a new version, copying the hash sets they change
	// and the bart nodes on the paths they touch (the rest is shared),
	// or build one afresh. nil means empty.
	cur atomic.Pointer[version]
	// mu serializes mutations, so each starts from the version the
	// previous one published and none is lost.
	mu sync.Mutex
	// The pad keeps the counters, written on every lookup, off the cache
	// lines of cur, read on every lookup.
	_     [128]byte
	stats counters
}

// empty stands for a nil cur. Nothing mutates it: the persistent
// operations leave their receiver unchanged.
var empty = new(version)

// New returns a table with cfg and the entries ps (masked; duplicates
// count once). It fails if a prefix is invalid, if cfg.Limit is negative
// or if ps has more distinct entries than the limit.
func New(cfg Config, ps []netip.Prefix) (*Table, error) {
	if cfg.Limit < 0 {
		return nil, &Error{Table: cfg.Name, Err: ErrInvalid, Msg: fmt.Sprintf("limit %d is negative", cfg.Limit)}
	}
	t := &Table{cfg: cfg}
	l, err := t.build(ps)
	if err != nil {
		return nil, err
	}
	if err := t.checkSize(l.len()); err != nil {
		return nil, err
	}
	t.cur.Store(l)
	return t, nil
}

// Name is the table's name, without the angle brackets.
func (t *Table) Name() string { return t.cfg.Name }

// Const reports whether the table refuses mutations.
func (t *Table) Const() bool { return t.cfg.Const }

// Persist reports the rules file's persist flag.
func (t *Table) Persist() bool { return t.cfg.Persist }

// Limit is the most entries the table may hold.
func (t *Table) Limit() int {
	if t.cfg.Limit == 0 {
		return DefaultLimit
	}
	return t.cfg.Limit
}

func (t *Table) load() *version {
	if l := t.cur.Load(); l != nil {
		return l
	}
	return empty
}

// Contains reports whether a is inside an entry of the table, and counts
// the lookup in Stats. It is the packet path: it does not lock or
// allocate, and costs one probe of the hash set of the single addresses
// of a's family, one probe of each prefix length the family holds (or a
// bart lookup when it holds more than maxLens lengths), and one
// uncontended atomic add (see the package comment for the numbers).
//
// Addresses follow net/netip: an IPv4 address matches only IPv4 entries
// and an IPv6 one, IPv4-mapped IPv6 (::ffff:198.18.0.1) included, only
// IPv6 entries. The packet decoder makes IPv4 addresses of IPv4 packets,
// so nothing needs unmapping. A zone is ignored; the zero Addr matches
// nothing.
//
// Contains picks the counter stripe by the address's last byte, so that
// goroutines looking up at once mostly write different cache lines. The
// packet path, which knows its worker, should use ContainsShard.
func (t *Table) Contains(a netip.Addr) bool {
	b := a.As16()
	return t.ContainsShard(a, int(b[15]))
}

// ContainsShard is Contains with the counter stripe chosen by the caller:
// give each worker goroutine its own shard (0, 1, 2, ...) and each
// writes only a cache line of its own, which stays in its CPU's cache.
// Any int is accepted; shards equal modulo 32 share a stripe, which is
// only slower, never wrong.
func (t *Table) ContainsShard(a netip.Addr, shard int) bool {
	ok := t.load().Contains(a)
	t.stats.count(shard, ok)
	return ok
}

// Test returns the longest entry that contains a, for `statewall table
// NAME test`. It does not count in Stats.
func (t *Table) Test(a netip.Addr) (netip.Prefix, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	return t.load().lookup(a.WithZone(""))
}

// Len is the number of entries.
func (t *Table) Len() int { return t.load().len() }

// Prefixes returns the entries, IPv4 first, each family in address order
// and, at one address, shorter prefixes first (for `show`).
func (t *Table) Prefixes() []netip.Prefix {
	return t.load().prefixes()
}

// Add inserts the entries ps (masked) and returns how many were not
// already in the table. It is all or nothing: an invalid prefix, a const
// table or an addition that would pass the limit changes nothing and
// returns an *Error.
//
// Add copies the hash sets it adds to (a memory copy: 4 MiB for 1M IPv4
// hosts) and inserts into the copies; in a family whose prefixes are in
// bart, it merges them in with one copy-on-write union, which clones only
// the nodes on the paths it touches. 10k entries into a 1M-entry table
// take a few ms (BenchmarkAddWhileReading).
func (t *Table) Add(ps []netip.Prefix) (int, error) {
	if t.cfg.Const {
		return 0, t.constErr()
	}
	if err := t.validate(ps); err != nil {
		return 0, err
	}
	b := new(batch)
	for _, p := range ps {
		b.add(p)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.load()
	// Count first: a refused Add must not cost a copy of the table.
	added := b.keep(cur, false)
	if added == 0 {
		return 0, nil
	}
	if have, limit := cur.len(), t.Limit(); have+added > limit {
		return 0, &Error{Table: t.cfg.Name, Err: ErrLimit,
			Msg: fmt.Sprintf("adding %d entries would pass the limit of %d (it has %d)", added, limit, have)}
	}
	next := *cur
	// The filter: marked in a copy while it has blocks fine enough for
	// the grown family, else remade once the entries are in.
	n4 := len(b.h4) + b.p4.count()
	remake := false
	if n4 > 0 {
		size := next.h4.n + next.p4.size() + n4
		if remake = cur.f4.words == nil || filterBits(size) > 32-cur.f4.shift+1; !remake {
			next.f4.words = slices.Clone(cur.f4.words)
			for _, k := range b.h4 {
				next.f4.mark(k, 32)
			}
			for bits, ks := range b.p4 {
				for _, k := range ks {
					next.f4.mark(k<<(32-bits), bits)
				}
			}
		}
	}
	if len(b.h4) > 0 {
		next.h4 = cur.h4.clone(len(b.h4))
		for _, k := range b.h4 {
			next.h4.add(k)
		}
	}
	if len(b.h6) > 0 {
		next.h6 = cur.h6.clone(len(b.h6))
		for _, k := range b.h6 {
			next.h6.add(k)
		}
	}
	next.p4.add(fam4, &b.p4, nil, b.step)
	next.p6.add(fam6, &b.p6, b.long6, b.step)
	if remake {
		next.f4 = next.filter4()
	}
	t.cur.Store(&next)
	return added, nil
}

// Delete removes the entries ps (masked; exact match, not every entry
// inside them) and returns how many were in the table. An invalid prefix
// or a const table changes nothing and returns an *Error.
//
// It copies the hash sets it changes and removes from the copies; in a
// family whose prefixes are in bart, it removes few prefixes by
// copy-on-write steps, many (more than 1/128 of them) from a full clone
// of bart (see deleteCloneRatio).
func (t *Table) Delete(ps []netip.Prefix) (int, error) {
	if t.cfg.Const {
		return 0, t.constErr()
	}
	if err := t.validate(ps); err != nil {
		return 0, err
	}
	b := new(batch)
	for _, p := range ps {
		b.add(p)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.load()
	gone := b.keep(cur, true)
	if gone == 0 {
		return 0, nil
	}
	next := *cur
	if len(b.h4) > 0 {
		next.h4 = cur.h4.clone(0)
		for _, k := range b.h4 {
			next.h4.remove(k)
		}
		next.h4.shrink()
	}
	if len(b.h6) > 0 {
		next.h6 = cur.h6.clone(0)
		for _, k := range b.h6 {
			next.h6.remove(k)
		}
		next.h6.shrink()
	}
	n4 := len(b.h4) + b.p4.count()
	next.p4.remove(fam4, &b.p4, nil)
	next.p6.remove(fam6, &b.p6, b.long6)
	// Deleted entries leave their bits in the filter (shared, unchanged)
	// until they are half of what is left.
	if n4 > 0 && next.f4.words != nil {
		next.f4.stale += n4
		if next.f4.stale > (next.h4.n+next.p4.size())/2 {
			next.f4 = next.filter4()
		}
	}
	t.cur.Store(&next)
	return gone, nil
}

// deleteCloneRatio picks how Delete derives the next version of a
// family's prefix tree (prefixSets.nets; hash sets are always copied). Deleting k
// entries one copy-on-write step at a time costs k path clones (5 to
// 17 µs each in a 1M-entry table, their garbage included); deleting them
// in place from a full Clone costs the clone (~100 ns an entry: 100 ms
// for 1M) and next to nothing per entry. BenchmarkDeleteWays put the
// crossover between k = size/256 and size/64 at 100k and 1M entries.
const deleteCloneRatio = 128

// Replace makes ps (masked; duplicates count once) the table's entries.
// The new version is built on its own, outside the lock, and swapped in;
// readers use the old one until then. An invalid prefix, a const table or
// more entries than the limit changes nothing and returns an *Error.
func (t *Table) Replace(ps []netip.Prefix) error {
	if t.cfg.Const {
		return t.constErr()
	}
	l, err := t.build(ps)
	if err != nil {
		return err
	}
	if err := t.checkSize(l.len()); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur.Store(l)
	return nil
}

// Flush removes every entry and returns how many there were. A const
// table refuses with an *Error (the reason Flush returns an error at
// all).
func (t *Table) Flush() (int, error) {
	if t.cfg.Const {
		return 0, t.constErr()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.load().len()
	t.cur.Store(nil)
	return n, nil
}

// build makes a new, unshared version holding ps.
func (t *Table) build(ps []netip.Prefix) (*version, error) {
	if err := t.validate(ps); err != nil {
		return nil, err
	}
	b := new(batch)
	for _, p := range ps {
		b.add(p)
	}
	return b.version(), nil
}

// Why a build does not compact bart: inserting in place leaves node
// arrays room to grow, as append does, so a version keeps ~8% more than
// its Clone would. Cloning would cost more time per load and more memory
// at the peak than it saves.

func (t *Table) validate(ps []netip.Prefix) error {
	for i, p := range ps {
		if !p.IsValid() {
			return &Error{Table: t.cfg.Name, Err: ErrInvalid,
				Msg: fmt.Sprintf("entry %d (%s) is not a valid prefix", i+1, p)}
		}
	}
	return nil
}

func (t *Table) checkSize(n int) error {
	if limit := t.Limit(); n > limit {
		return &Error{Table: t.cfg.Name, Err: ErrLimit,
			Msg: fmt.Sprintf("%d entries would pass the limit of %d", n, limit)}
	}
	return nil
}

func (t *Table) constErr() error {
	return &Error{Table: t.cfg.Name, Err: ErrConst, Msg: "const tables cannot be changed"}
}
