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
// runs at a time, derives the next version and stores the pointer:
//
//   - Add builds the batch as a small table and merges it in with one
//     copy-on-write union: only the nodes on the touched paths are cloned,
//     the rest are shared with the old version.
//   - Delete removes few entries by copy-on-write steps, many (more than
//     1/128 of the table) from a full clone (see deleteCloneRatio).
//   - Replace builds the new version on its own, outside the lock, and
//     swaps it in; Flush swaps in the empty table.
//
// Readers that loaded the old version finish on it; the garbage collector
// frees it. Once a mutation returns, every lookup that starts after sees
// all of its change. The prefix tables are github.com/gaissmai/bart's
// Lite (the smallest of its three: BenchmarkBartVariants).
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
// runs and the command.
//
//   - Load (Parse of the 1M-line text and New): 0.62-0.66 s. The table
//     then keeps 62 MiB of heap; the peak, with the parsed slice, is
//     95 MiB. Replace with another 1M entries: 0.31-0.39 s.
//   - Contains, ns, 0 allocs, medians, hit/miss: 10 entries 15.5/13.6 (v4)
//     and 16.5/14.0 (v6); 100k 41.9/19.7 and 50.1/24.2; 1M 111/41 and
//     148/34. The 1M hits probe 4096 addresses spread over a 62 MiB table,
//     so most of their cost is cache misses: on a hot set of 64 addresses
//     a 1M-table hit costs 34 (v4) and 38 (v6) ns, on 1024 addresses 65
//     and 54. Misses stay within 30 ns of the small table; spread-out
//     hits do not meet the issue's +50 ns.
//   - Add of 10k new entries to a 1M-entry table while a goroutine looks
//     up without pause: 24-28 ms on average, worst of 20 between 56 and
//     110 ms (when a GC cycle, marking the 62 MiB table with both cores
//     busy, charges its work to the Add).
//   - Delete of 10k from 1M: 100-190 ms (BenchmarkDeleteWays).
package table
