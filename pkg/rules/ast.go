package rules

import (
	"net/netip"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
)

// Action is what a rule (or a default) does with a packet. The zero value
// is Block, so a zero Ruleset fails closed.
type Action uint8

const (
	Block Action = iota
	Pass
)

func (a Action) String() string {
	switch a {
	case Block:
		return "block"
	case Pass:
		return "pass"
	}
	return "action?"
}

// Dir is the direction of a packet relative to this host, supplied by the
// caller (the netfilter hook in the daemon, `set local` in pcap replay).
// A rule written with `in` or `out` matches only packets of that direction;
// DirUnknown packets match only rules that say neither.
type Dir uint8

const (
	DirUnknown Dir = iota
	DirIn
	DirOut
	// DirForward is a packet routed through this host (the forward hook).
	// It is never a rule's direction: as pf filters a forwarded packet
	// twice, once inbound on the interface it arrives on and once
	// outbound on the one it leaves by, it is matched as DirIn on
	// Where.In and as DirOut on Where.Out, and passes only if both pass.
	DirForward
)

func (d Dir) String() string {
	switch d {
	case DirUnknown:
		return "unknown"
	case DirIn:
		return "in"
	case DirOut:
		return "out"
	case DirForward:
		return "forward"
	}
	return "dir?"
}

// Where is where a packet is when it is decided: its direction relative
// to this host and the interfaces it arrived on and leaves by, as kernel
// interface indexes (0: none or not known). Bind tells a Ruleset which
// names the indexes have; an unbound Ruleset sees every packet on no
// interface. The zero value is DirUnknown on no interface.
type Where struct {
	Dir     Dir
	In, Out uint32
}

// IfaceOf is the interface a single evaluation at w looks at: the input
// interface inbound, the output interface outbound, and when the
// direction is unknown whichever is set (replay's --iface). A forwarded
// packet has two evaluations, each with its own.
func (w Where) IfaceOf() uint32 {
	switch w.Dir {
	case DirIn:
		return w.In
	case DirOut:
		return w.Out
	}
	if w.In != 0 {
		return w.In
	}
	return w.Out
}

// DefaultLimitSrcNodes is pf's default `set limit src-nodes`.
const DefaultLimitSrcNodes = 10000

// DefaultLimitStates is the number of tracked connections when the file has
// no `set limit states`.
const DefaultLimitStates = 262144

// Ruleset is a parsed and compiled rules file. It is immutable after Parse
// and safe for concurrent use by any number of goroutines; to change the
// rules, parse a new Ruleset and swap the pointer.
type Ruleset struct {
	File        string
	Default     Action         // `set default`; Block when absent
	Invalid     Action         // `set invalid`; Block when absent
	Local       []netip.Prefix // `set local`; single addresses become /32 or /128
	LimitStates int            // `set limit states`; DefaultLimitStates when absent
	// Timeouts holds the `set timeout` values; only the fields the file sets
	// are non-zero (conntrack.Timeouts.WithDefaults fills in the rest).
	Timeouts conntrack.Timeouts
	Rules    []Rule // in file order; Rules[i].Index == i+1
	// Tables are the `table` statements in file order.
	Tables []*TableDef
	// LimitSrcNodes is `set limit src-nodes` (DefaultLimitSrcNodes);
	// SrcTrack `set timeout src.track` (0: a source's node goes with its
	// last state).
	LimitSrcNodes int
	SrcTrack      time.Duration
	// Antispoof holds the `antispoof` statements in file order; each
	// expanded into block rules in Rules (Rule.Antispoof points back).
	Antispoof []*Antispoof

	// Which settings the file wrote, so String prints exactly those.
	has      settingBits
	timeouts []namedTimeout // in file order

	m      matcher
	local  addrSet           // Local, compiled for IsLocal
	tables map[string]Lookup // the run-time tables, by name

	// ifNames are the interface names the rules mention, by the id
	// compiled rules use: ifNames[i] has id i+1, bit 1<<(i+1); id 0 is
	// every other interface, and no interface.
	ifNames []string
	// directional: some rule says in, out or on; otherwise a forwarded
	// packet's two evaluations give the same rule and one is enough.
	directional bool
	// bound is what Bind was given: index -> id, and the interfaces.
	bound *binding
}

type settingBits uint8

const (
	hasDefault settingBits = 1 << iota
	hasInvalid
	hasLocal
	hasLimitStates
	hasLimitSrcNodes
	hasSrcTrack
)

type namedTimeout struct {
	name string
	d    time.Duration
}

// Rule is one `pass` or `block` line. Conditions that are absent match
// everything: a zero AddrSpec or PortSpec is `any`, Proto 0 is any protocol.
type Rule struct {
	Index int // 1-based position among the rules ("rule 3")
	// File is the file the rule was written in when an include brought
	// it, else "" (Ruleset.File). Line is in that file.
	File   string
	Line   int // line of the action word in the file
	Action Action
	Dir    Dir          // DirUnknown: the rule said neither `in` nor `out`
	Family uint8        // 0 (both), 4 or 6: from `inet`/`inet6`, or implied by the addresses or by proto icmp/icmp6
	Proto  packet.Proto // 0: any

	From, To           AddrSpec
	FromPorts, ToPorts PortSpec

	// Flags/FlagsMask: of the TCP flags in FlagsMask, exactly those in Flags
	// are set: (p.TCPFlags & FlagsMask) == Flags.
	Flags, FlagsMask uint8
	HasFlags         bool

	ICMPType, ICMPCode       uint8
	HasICMPType, HasICMPCode bool

	NoState bool // `no state`: a pass creates no conntrack entry
	// Limits are the stateful tracking options (`keep state (max 10,
	// ...)`); zero without.
	Limits Limits
	// Return: what a block rule answers (pf's block return...), with the
	// ICMP and ICMPv6 unreachable codes it uses.
	Return               Return
	ICMPCode4, ICMPCode6 uint8
	// Log: the packets this rule decides are logged (pflog). LogAll
	// (`log (all)`): in stateful mode, so are the later packets of a
	// connection the rule created.
	Log, LogAll bool
	Label       string

	// On is the `on` interface condition; zero: any interface.
	On IfaceSpec
	// Col is the column of the action word (or of `antispoof`).
	Col int
	// Antispoof is the statement this rule was expanded from, nil for a
	// rule written as one. Its From is the statement's interface's
	// networks (or own addresses), filled in by Bind.
	Antispoof *Antispoof
	spoof     spoofKind
	spoofIf   string
}

// IfaceSpec is a set of interface names with AddrSpec's reading: an
// interface matches when some positive item names it (or there is none)
// and no negated item does. The zero value is any interface.
type IfaceSpec struct {
	Items []IfaceItem
}

// IfaceItem is one interface name, possibly negated.
type IfaceItem struct {
	Name string
	Neg  bool
}

// Any reports whether the spec puts no condition on the interface.
func (s IfaceSpec) Any() bool { return len(s.Items) == 0 }

// Contains reports whether the interface named name is in the set; ""
// (no interface) is in no positive item.
func (s IfaceSpec) Contains(name string) bool {
	pos, in := false, false
	for _, it := range s.Items {
		if it.Neg {
			if it.Name == name {
				return false
			}
			continue
		}
		pos = true
		if it.Name == name {
			in = true
		}
	}
	return !pos || in
}

// needsL4 reports whether the rule looks into the transport header (ports,
// TCP flags, ICMP type). Such a rule never matches a packet without one: a
// non-first fragment or a packet whose transport header did not decode.
func (r *Rule) needsL4() bool {
	return len(r.FromPorts.Items) > 0 || len(r.ToPorts.Items) > 0 || r.HasFlags || r.HasICMPType
}

// AddrSpec is a set of addresses. An address matches when some positive
// item contains it (or there is no positive item) and no negated item
// contains it. The zero value (no items) is `any`.
//
// This is deliberately not pf's reading of lists, where `{ !a, !b }` is
// "not a OR not b" and so matches everything; here it is "neither a nor b".
type AddrSpec struct {
	Items []AddrItem
}

// AddrItem is one prefix (a single address is a /32 or /128), or a table
// (<Table>: Prefix is then zero), possibly negated. Prefixes are masked:
// 198.18.0.5/24 is stored as 198.18.0.0/24.
type AddrItem struct {
	Prefix netip.Prefix
	Table  string
	Neg    bool
}

// Any reports whether the spec matches every address.
func (s AddrSpec) Any() bool { return len(s.Items) == 0 }

// Contains reports whether a is in the set, with tables looked up by
// tables (nil: tables are empty). It is the reference semantics; the
// compiled matcher computes the same without scanning items.
func (s AddrSpec) Contains(a netip.Addr, tables func(string) Lookup) bool {
	pos, inPos := false, false
	for _, it := range s.Items {
		in := it.Prefix.Contains(a)
		if it.Table != "" {
			in = false
			if tables != nil {
				if l := tables(it.Table); l != nil {
					in = l.Contains(a)
				}
			}
		}
		if it.Neg {
			if in {
				return false
			}
			continue
		}
		pos = true
		if in {
			inPos = true
		}
	}
	return !pos || inPos
}

// has6 reports whether some item is an IPv6 prefix.
func (s AddrSpec) has6() bool {
	for _, it := range s.Items {
		if it.Table == "" && it.Prefix.Addr().Is6() {
			return true
		}
	}
	return false
}

// family returns 4 or 6 when every item is of that family, 0 when the
// spec is any or mixes families.
func (s AddrSpec) family() uint8 {
	var f uint8
	for _, it := range s.Items {
		if it.Table != "" {
			return 0 // a table may hold either family
		}
		g := uint8(6)
		if it.Prefix.Addr().Is4() {
			g = 4
		}
		if f != 0 && f != g {
			return 0
		}
		f = g
	}
	return f
}

// PortSpec is a set of ports, with the same positive/negated reading as
// AddrSpec. The zero value is any port (and puts no condition on the
// packet at all).
type PortSpec struct {
	Items []PortItem
}

// PortItem is an inclusive range Lo-Hi (Lo == Hi for a single port),
// possibly negated.
type PortItem struct {
	Lo, Hi uint16
	Neg    bool
}

// Any reports whether the spec puts no condition on the port.
func (s PortSpec) Any() bool { return len(s.Items) == 0 }

// Contains reports whether port is in the set (reference semantics).
func (s PortSpec) Contains(port uint16) bool {
	pos, inPos := false, false
	for _, it := range s.Items {
		in := it.Lo <= port && port <= it.Hi
		if it.Neg {
			if in {
				return false
			}
			continue
		}
		pos = true
		if in {
			inPos = true
		}
	}
	return !pos || inPos
}
