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
// A version keeps, per family, the single addresses (IPv4 /32, IPv6
// /128: most of a large blocklist) in an open-addressing hash set, and
// the shorter prefixes in a hash set per length while the family has at
// most four lengths (IPv6: all of them /64 or shorter), keyed by the
// address's top bits; a family with more keeps them in a
// github.com/gaissmai/bart Lite (the smallest of bart's three tables:
// BenchmarkBartVariants). Typical blocklists (hosts, /24s, a few /16s)
// never walk a tree. A lookup probes the host set of its family, then
// each length's set, longest first, each probe usually one cache line;
// Test returns the first hit, the longest entry. Large IPv4 tables also
// keep a bitmap of the address blocks their entries touch, which ends
// most misses before any probe (filter.go). A hit in a spread-out
// 1M-entry bart walks three or four nodes, each a cache miss: the hash
// sets cut spread-out IPv4 hits from ~100 ns to ~16 and IPv6 ones from
// ~100 to ~50 (hosts.go and prefixes.go have the design):
//
//   - Add copies each hash set it adds to (a memory copy, 4 MiB for 1M
//     IPv4 hosts, or a rehash when it must grow) and inserts into the
//     copies; in a family in bart, it merges the prefixes in with one
//     copy-on-write union of bart tables, which clones only the nodes on
//     the touched paths. A family that passes four lengths moves to bart
//     once, a pass over its prefixes.
//   - Delete copies the hash sets it changes and removes from the
//     copies; in bart, it removes few prefixes by copy-on-write steps,
//     many (more than 1/128 of them) from a full clone (see
//     deleteCloneRatio). A family in bart stays there until Replace.
//   - Replace builds the new version on its own, outside the lock, and
//     swaps it in; Flush swaps in the empty table. Load builds a table
//     straight from a file, without the parsed []netip.Prefix.
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
// runs, the commands and the numbers of the earlier designs (all in
// bart; hosts in hash sets and the rest in bart).
//
//   - Load: Parse of the 1M-line text and New 0.29-0.33 s, Load
//     0.24-0.27 s. The table keeps 17.5 MiB (33 with the prefixes in
//     bart, 62 all in bart). The peak is 19 MiB with Load, 52 with New
//     given Parse's slice (33 MiB of it, held by the caller). Replace
//     with another 1M entries: 45-65 ms.
//   - Contains, ns, 0 allocs, hit/miss: 10 entries 14/14-16 (v4) and
//     27-30/29-31 (v6); 1M 16-17/16-17 (v4) and 46-52/59-60 (v6), against
//     25-31/51-76 and 98-106/70-76 with the prefixes in bart. On a hot
//     set of 1024 addresses a 1M-table hit costs 15-16 (v4) and 35-39
//     (v6) ns. pkg/rules' BenchmarkMatchTable, the measure
//     (IPv4), puts a 1M table at +21 ns for misses, +27 for hot hits and
//     +46 for hits spread over it (medians, on a busy VM; the earlier
//     design +40, +31, +53 in the same runs). The IPv4 filter makes
//     those misses cheap and spread hits dearer: without it, +61 and +25.
//   - Add of 10k new entries to a 1M-entry table while a goroutine looks
//     up without pause: 3-10 ms on average, worst of 20 between 9 and
//     40 ms: copies of the hash sets, no bart union (the earlier design
//     8-30, worst 31-71, in the same runs).
//   - Delete of 10k from 1M: 8-16 ms (BenchmarkDelete).
package table
