package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Interfaces. Rules name interfaces (`on eth1`, `antispoof for eth1`);
// packets carry kernel interface indexes (Where). Parse gives every name
// the rules mention a small id, and each compiled rule keeps its `on`
// condition as two bit masks over the ids, so testing it is two ANDs.
// Bind maps the host's interface indexes to those ids (and fills in the
// addresses antispoof needs), in a new Ruleset, whenever the host's
// interfaces change: a rule names an interface, not an index, so a
// renamed, removed or re-created interface is followed by binding again.

// MaxIfaceNames is the most distinct interface names one ruleset may
// mention (ids 1-63 of a 64-bit mask; id 0 is every other interface).
const MaxIfaceNames = 63

// LoopbackName is the loopback interface's name on Linux, in every
// network namespace. Antispoof's "own address" rule exempts it: a packet
// this host sends to itself arrives on it with its own source address.
const LoopbackName = "lo"

// Iface is what a Ruleset needs to know of one of the host's interfaces.
type Iface struct {
	Index uint32
	Name  string
	// Addrs are the interface's addresses with their prefix lengths
	// (198.18.1.1/24): antispoof blocks their networks arriving on other
	// interfaces, and the addresses themselves arriving from outside.
	Addrs []netip.Prefix
}

// Antispoof is one `antispoof [log] for IFACES [inet|inet6] [label S]`
// statement. It expands, for each interface in order, into two block
// rules, as pf's does:
//
//	block in on { !IFACE, !lo } from IFACE:network   (its networks, arriving elsewhere)
//	block in on !lo from IFACE:address               (its own addresses, arriving from outside)
//
// but for the loopback interface, on which Linux delivers what the host
// sends itself, with its own addresses (pf users `set skip on lo` for the
// same reason). The addresses come from Bind. Link-local networks (169.254.0.0/16,
// fe80::/10) are left out: every link has them, so they prove nothing
// about where a packet came from.
type Antispoof struct {
	Ifaces    []string
	Family    uint8 // 0 (both), 4 or 6
	Log       bool
	Label     string
	File      string // as Rule.File
	Line, Col int
}

// String prints the statement in canonical form.
func (a *Antispoof) String() string {
	var b strings.Builder
	b.WriteString("antispoof")
	if a.Log {
		b.WriteString(" log")
	}
	b.WriteString(" for ")
	if len(a.Ifaces) == 1 {
		b.WriteString(a.Ifaces[0])
	} else {
		b.WriteString("{ " + strings.Join(a.Ifaces, ", ") + " }")
	}
	switch a.Family {
	case 4:
		b.WriteString(" inet")
	case 6:
		b.WriteString(" inet6")
	}
	if a.Label != "" {
		b.WriteString(" label ")
		writeQuoted(&b, a.Label)
	}
	return b.String()
}

type spoofKind uint8

const (
	spoofNone spoofKind = iota
	spoofNet            // From is the interface's networks
	spoofSelf           // From is the interface's own addresses
)

// expand appends a's block rules to rs.Rules.
func (a *Antispoof) expand(rs *Ruleset) {
	for _, name := range a.Ifaces {
		for _, k := range [2]spoofKind{spoofNet, spoofSelf} {
			r := Rule{
				Index: len(rs.Rules) + 1, File: a.File, Line: a.Line, Col: a.Col,
				Action: Block, Dir: DirIn, Family: a.Family,
				Log: a.Log, Label: a.Label, Antispoof: a, spoof: k,
				spoofIf: name,
			}
			if k == spoofNet {
				r.On = IfaceSpec{Items: []IfaceItem{{Name: name, Neg: true}, {Name: LoopbackName, Neg: true}}}
			} else {
				r.On = IfaceSpec{Items: []IfaceItem{{Name: LoopbackName, Neg: true}}}
			}
			rs.Rules = append(rs.Rules, r)
		}
	}
}

// spoofAddrs is what an antispoof rule's From holds for the interface's
// addresses: their networks or the addresses themselves, of the rule's
// family, without link-local ones.
func spoofAddrs(k spoofKind, fam uint8, addrs []netip.Prefix) AddrSpec {
	var s AddrSpec
	seen := map[netip.Prefix]bool{}
	for _, p := range addrs {
		a := p.Addr().Unmap()
		if !p.IsValid() || a.IsLinkLocalUnicast() || fam == 4 && !a.Is4() || fam == 6 && !a.Is6() {
			continue
		}
		q := netip.PrefixFrom(a, a.BitLen())
		if k == spoofNet {
			q = netip.PrefixFrom(a, p.Bits()).Masked()
		}
		if !seen[q] {
			seen[q] = true
			s.Items = append(s.Items, AddrItem{Prefix: q})
		}
	}
	sort.Slice(s.Items, func(i, j int) bool {
		a, b := s.Items[i].Prefix, s.Items[j].Prefix
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	return s
}

// binding is what Bind was given, compiled for the packet path.
type binding struct {
	// byIndex[i] is the id of the interface with index i, for indexes
	// below len(byIndex); big holds the (rare) larger ones.
	byIndex []uint8
	big     map[uint32]uint8
	names   map[uint32]string
	ifaces  []Iface
}

// maxDenseIndex bounds the index -> id slice: interface indexes only
// grow in a namespace where links come and go, and past this a map
// serves the rest.
const maxDenseIndex = 1 << 12

// Bind returns a copy of rs that knows the host's interfaces: which
// index has which name (for `on`), and their addresses (for
// antispoof). rs itself is unchanged, so a packet path holding it goes on
// safely; swap the new Ruleset in as a reload does. Interfaces the rules
// do not name still get their names recorded, for IfaceName.
func (rs *Ruleset) Bind(ifs []Iface) *Ruleset {
	n := *rs
	b := &binding{names: map[uint32]string{}, ifaces: append([]Iface(nil), ifs...)}
	ids := map[string]uint8{}
	for i, name := range rs.ifNames {
		ids[name] = uint8(i + 1)
	}
	for _, f := range ifs {
		b.names[f.Index] = f.Name
		id := ids[f.Name]
		if id == 0 {
			continue
		}
		if f.Index < maxDenseIndex {
			if int(f.Index) >= len(b.byIndex) {
				b.byIndex = append(b.byIndex, make([]uint8, int(f.Index)+1-len(b.byIndex))...)
			}
			b.byIndex[f.Index] = id
		} else {
			if b.big == nil {
				b.big = map[uint32]uint8{}
			}
			b.big[f.Index] = id
		}
	}
	n.bound = b
	if len(rs.Antispoof) > 0 {
		byName := map[string]*Iface{}
		for i := range b.ifaces {
			byName[b.ifaces[i].Name] = &b.ifaces[i]
		}
		n.Rules = append([]Rule(nil), rs.Rules...)
		for i := range n.Rules {
			r := &n.Rules[i]
			if r.spoof == spoofNone {
				continue
			}
			r.From = AddrSpec{}
			if f := byName[r.spoofIf]; f != nil {
				r.From = spoofAddrs(r.spoof, r.Family, f.Addrs)
			}
		}
		n.m = compile(n.Rules, n.ifNames, n.tables)
	}
	return &n
}

// Directional reports whether some rule says in, out or on: only then do
// a forwarded packet's inbound and outbound evaluations differ.
func (rs *Ruleset) Directional() bool { return rs.directional }

// Bound reports whether Bind made rs.
func (rs *Ruleset) Bound() bool { return rs.bound != nil }

// Ifaces returns the interfaces Bind was given.
func (rs *Ruleset) Ifaces() []Iface {
	if rs.bound == nil {
		return nil
	}
	return rs.bound.ifaces
}

// IfaceName returns the name of the interface with index i as Bind was
// told, or "".
func (rs *Ruleset) IfaceName(i uint32) string {
	if rs.bound == nil {
		return ""
	}
	return rs.bound.names[i]
}

// IfaceNames returns the interface names the rules mention, sorted.
func (rs *Ruleset) IfaceNames() []string {
	s := append([]string(nil), rs.ifNames...)
	sort.Strings(s)
	return s
}

// ifBit is the mask bit of the interface with index i: 1<<id for an
// interface the rules name, 1 (id 0) for any other and for none.
func (rs *Ruleset) ifBit(i uint32) uint64 {
	b := rs.bound
	if b == nil || i == 0 {
		return 1
	}
	if i < uint32(len(b.byIndex)) {
		return 1 << b.byIndex[i]
	}
	if b.big != nil {
		return 1 << b.big[i]
	}
	return 1
}

// collectIfNames gives every interface name in the rules an id, in order
// of first mention, or fails when there are more than MaxIfaceNames.
func (p *parser) collectIfNames() error {
	ids := map[string]bool{}
	for i := range p.rs.Rules {
		r := &p.rs.Rules[i]
		for _, it := range r.On.Items {
			if ids[it.Name] {
				continue
			}
			if len(p.rs.ifNames) == MaxIfaceNames {
				return &Error{File: r.where(p.rs), Line: r.Line, Col: r.Col, Msg: fmt.Sprintf("too many interface names: a ruleset may name at most %d", MaxIfaceNames)}
			}
			ids[it.Name] = true
			p.rs.ifNames = append(p.rs.ifNames, it.Name)
		}
		if r.Dir != DirUnknown || !r.On.Any() {
			p.rs.directional = true
		}
	}
	return nil
}

// where is the file the rule was written in.
func (r *Rule) where(rs *Ruleset) string {
	if r.File != "" {
		return r.File
	}
	return rs.File
}

// validIfaceName reports whether s can be a Linux interface name (the
// kernel's dev_valid_name: 1-15 bytes, not . or .., no '/', ':' or
// blank), starting with a letter so that it cannot be mistaken for an
// address or a port.
func validIfaceName(s string) bool {
	if len(s) == 0 || len(s) > 15 || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' || c == ':' || c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// ifMasks compiles an IfaceSpec over the ruleset's ids.
func ifMasks(s IfaceSpec, names []string) (pos, neg uint64) {
	for _, it := range s.Items {
		var bit uint64
		for i, n := range names {
			if n == it.Name {
				bit = 1 << (i + 1)
			}
		}
		if it.Neg {
			neg |= bit
		} else {
			pos |= bit
		}
	}
	return pos, neg
}
