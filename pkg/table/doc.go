// Package table holds pf-style address tables: named sets of prefixes
// that rules match packets against (`block in from <blocklist>`) and that
// an operator changes at run time (`statewall table NAME add ...`)
// without a reload and without stopping the packet path.
//
// # Model
//
// A Table publishes immutable versions through one atomic pointer. A
// lookup (Contains, ContainsShard, Test) loads the pointer and searches
// that version: no lock, no allocation, and never a half-made version. A
// mutation (Add, Delete, Replace, Flush) takes the table's mutex, so one
// runs at a time, derives the next version and stores the pointer.
//
// A version keeps the single addresses (IPv4 /32, IPv6 /128: most of a
// large blocklist) in two open-addressing hash sets, one a family, and
// the shorter prefixes in a github.com/gaissmai/bart Lite (the smallest
// of bart's three tables: BenchmarkBartVariants). A lookup probes the
// hash set of its family, usually one cache line, and walks bart only
// when the version holds a shorter prefix of that family; Test returns
// the host entry before asking bart, since no entry is longer. A hit in
// a spread-out 1M-entry bart walks three or four nodes, each a cache
// miss; the hash probe cut spread-out IPv4 hits from ~100 to ~25 ns
// (hosts.go has the design):
//
//   - Add copies the host set of each family it adds to (a memory copy,
//     8 MiB for 1M IPv4 hosts, or a rehash when it must grow) and merges
//     the prefixes in with one copy-on-write union of bart tables: only
//     the nodes on the touched paths are cloned, the rest are shared with
//     the old version.
//   - Delete copies the host sets it changes and removes from the copy;
//     it removes few prefixes by copy-on-write steps, many (more than
//     1/128 of them) from a full clone of bart (see deleteCloneRatio).
//   - Replace builds the new version on its own, outside the lock, and
//     swaps it in; Flush swaps in the empty table.
//
// Readers that loaded the old version finish on it; the garbage collector
// frees it. Once a mutation returns, every lookup that starts after sees
// all of its change.
//
// A const table refuses every mutation (ErrConst). Every table has a
// limit on entries (Config.Limit, default DefaultLimit = 4Mi); an Add or
// Replace that would pass it is refused whole (ErrLimit). Refused
// mutations change nothing.
//
// Addresses follow net/netip: IPv4 entries match IPv4 addresses only, and
// an IPv4-mapped IPv6 address (::ffff:198.18.0.1) is IPv6. The packet
// decoder makes 4-byte addresses of IPv4 packets, so nothing is unmapped
// on the packet path; the file parser refuses IPv4-mapped entries, which
// would never match what their writer meant.
//
// Lookups are counted for Stats (evaluations and hits) in 32 counter
// stripes of their own cache lines: ContainsShard writes the stripe its
// caller names (one per worker), Contains one chosen by address.
//
// # File format
//
// One address or prefix a line; `#` starts a comment to the end of the
// line; blank lines and surrounding whitespace are ignored:
//
//	# blocklist
//	198.18.0.1
//	198.18.1.0/24     # a network
//	fd00:198:18::/64
//
// A single address is a /32 or /128; a prefix is masked (198.18.0.5/24 is
// 198.18.0.0/24). Zones, host names, negation and several entries on a
// line are refused. The first bad line ends the parse with a *ParseError,
// `blocklist.txt:3: "198.18.0.300" is not an address or prefix`. A file
// may hold at most MaxEntries (4Mi) entries, MaxLineBytes (4096) a line
// and MaxFileBytes (512 MiB) in all, so a hostile file costs at most
// ~160 MiB of parsed entries before it is refused. ParseAddrs applies the
// same rules to command-line arguments.
//
// # Costs
//
// Measured on the 2-core development VM (AMD EPYC, 2 MiB L2), with
// 1M entries of 40% IPv4 /32, 10% IPv4 /24, 25% IPv6 /64 and 25% IPv6
// /128 spread over the address space; bench/results/table.md has the
// runs, the command and the numbers before the host sets.
//
//   - Load (Parse of the 1M-line text and New): 0.42-0.45 s (0.77 and
//     1.18 s in runs beside other jobs). The table then keeps 33 MiB of
//     heap (bart alone kept 62); the peak, with the parsed slice, is
//     66 MiB. Replace with another 1M entries: 0.17-0.20 s.
//   - Contains, ns, 0 allocs, hit/miss: 10 entries 14-19/13-20 (v4) and
//     26-28/27-36 (v6); 1M 23-27/46-54 and 94-123/66-74. On a hot set of
//     1024 addresses a 1M-table hit costs 20-21 (v4) and 46-85 (v6) ns.
//     v4 hits, now a probe, beat bart's 96-109 ns; v6 hits gain less, as
//     half of the v6 entries are /64s that still walk bart, and v6
//     misses lose ~30 ns to the probe of an 8 MiB set that bart's
//     shallow misses did not pay. pkg/rules' BenchmarkMatchTable, the
//     issue's measure (IPv4), puts a 1M table at +25 ns for hot hits,
//     +32 for misses and +52 for hits spread over it, medians.
//   - Add of 10k new entries to a 1M-entry table while a goroutine looks
//     up without pause: 17-40 ms on average, worst of 20 between 35 and
//     106 ms (once 253 ms, with other jobs on both cores); most of it
//     is the bart union of the 5k prefixes and the GC work charged to
//     it. bart alone took 17-70 ms, worst 35-223 ms, in the same runs.
//   - Delete of 10k from 1M: 24-42 ms (bart alone 62-340 ms;
//     BenchmarkDelete).
package table
