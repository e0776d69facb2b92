package replay

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/statewall/statewall/pkg/rules"
)

// Interfaces offline. Rules name interfaces; the engines see indexes
// (rules.Where). A capture has no kernel indexes, only names (a pcapng's
// Interface Description Blocks, or Config.Iface), so replay gives every
// distinct name an index of its own, 1, 2, ... in order of first
// mention: first the names Config gives (KnownIfaces), then those the
// rules mention, then any other a pcapng brings. The ruleset is bound
// once, in New, to the first two groups: a name only a capture brings is
// one the rules do not mention, which the matcher reads as "any other
// interface" whether it is bound or not.

// KnownIfaces returns the interfaces cfg names (Iface, IfaceOut and
// Ifaces, with their addresses), numbered as the replay numbers them;
// nil when it names none. They are what a replay knows of the
// interfaces before it reads a capture: Lint's list.
func KnownIfaces(cfg Config) []rules.Iface {
	var ifs []rules.Iface
	at := map[string]int{}
	add := func(name string, addrs []netip.Prefix) {
		if name == "" {
			return
		}
		i, ok := at[name]
		if !ok {
			i = len(ifs)
			at[name] = i
			ifs = append(ifs, rules.Iface{Index: uint32(i + 1), Name: name})
		}
		ifs[i].Addrs = append(ifs[i].Addrs, addrs...)
	}
	add(cfg.Iface, nil)
	add(cfg.IfaceOut, nil)
	for _, f := range cfg.Ifaces {
		add(f.Name, f.Addrs)
	}
	return ifs
}

// Lint returns the ruleset's warnings for a replay as cfg configures it
// (see rules.Ruleset.Lint). Packets get a direction from `set local`, or
// are forwarded (both directions) with IfaceOut; packets of neither side
// have none without it. The interfaces are those cfg names: a pcapng's
// names are known only as it is read, so a rule naming an interface only
// a pcapng has is reported missing when cfg names some interfaces, and
// missing interfaces are not reported at all when cfg names none.
func Lint(cfg Config) []rules.Warning {
	rs := cfg.Rules
	local := len(rs.Local) > 0
	where := "replay"
	if !local && cfg.IfaceOut == "" {
		where = "replay without 'set local' (or --iface-out)"
	}
	return rs.Lint(rules.LintConfig{
		In:     local || cfg.IfaceOut != "",
		Out:    local || cfg.IfaceOut != "",
		Local:  local,
		Where:  where,
		Ifaces: KnownIfaces(cfg),
	})
}

// ParseIfaceAddr parses a --iface-addr value, NAME=PREFIX[,PREFIX...]
// (eth1=198.18.1.1/24,fd00:198:18::1/64): an interface and its addresses
// with their prefix lengths. A bare address counts as a host prefix.
func ParseIfaceAddr(s string) (rules.Iface, error) {
	name, list, ok := strings.Cut(s, "=")
	if !ok || name == "" || list == "" {
		return rules.Iface{}, fmt.Errorf("%q: want NAME=PREFIX[,PREFIX...], e.g. eth1=198.18.1.1/24", s)
	}
	if err := CheckIfaceName(name); err != nil {
		return rules.Iface{}, err
	}
	f := rules.Iface{Name: name}
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		p, err := netip.ParsePrefix(a)
		if err != nil {
			addr, aerr := netip.ParseAddr(a)
			if aerr != nil || addr.Zone() != "" {
				return rules.Iface{}, fmt.Errorf("%s: %q is not an address with its prefix length (198.18.1.1/24)", name, a)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		f.Addrs = append(f.Addrs, p)
	}
	return f, nil
}

// CheckIfaceName refuses what cannot be a Linux interface name (the
// kernel's dev_valid_name: 1-15 bytes, not . or .., no '/', ':' or
// blank), for --iface and --iface-out.
func CheckIfaceName(s string) error {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Errorf("%q is not an interface name (1-15 bytes, no '/', ':' or blank)", s)
	}
	return nil
}

// initIfaces numbers the interfaces (see above) and binds the ruleset.
func (r *Replayer) initIfaces() {
	known := KnownIfaces(r.cfg)
	r.ifIndex = map[string]uint32{}
	for _, f := range known {
		r.ifIndex[f.Name] = f.Index
		r.ifNames = append(r.ifNames, f.Name)
	}
	bind := known
	for _, name := range r.cfg.Rules.IfaceNames() {
		if _, ok := r.ifIndex[name]; !ok {
			bind = append(bind, rules.Iface{Index: r.addIface(name), Name: name})
		}
	}
	r.rs = r.cfg.Rules
	if len(bind) > 0 {
		r.rs = r.cfg.Rules.Bind(bind)
	}
	r.iface, r.ifaceOut = r.ifIndex[r.cfg.Iface], r.ifIndex[r.cfg.IfaceOut]
}

// addIface gives name the next index.
func (r *Replayer) addIface(name string) uint32 {
	r.ifNames = append(r.ifNames, name)
	i := uint32(len(r.ifNames))
	r.ifIndex[name] = i
	return i
}

// ifaceIndex returns the index of the interface a capture names for a
// packet ("": none named, Config.Iface's). The last name is cached: a
// capture's packets come from few interfaces, often one, and the
// NgReader hands out the same string each time, so the compare is a
// pointer and length check.
func (r *Replayer) ifaceIndex(name string) uint32 {
	if name == "" {
		return r.iface
	}
	if name == r.lastName {
		return r.lastIndex
	}
	i, ok := r.ifIndex[name]
	if !ok {
		i = r.addIface(name)
	}
	r.lastName, r.lastIndex = name, i
	return i
}

// ifName returns the name of the interface with index i ("" for 0).
func (r *Replayer) ifName(i uint32) string {
	if i == 0 || int(i) > len(r.ifNames) {
		return ""
	}
	return r.ifNames[i-1]
}

// where places a packet of direction dir seen on the interface with
// index in: inbound on it; outbound by IfaceOut, or by it without one;
// of neither side forwarded from it to IfaceOut, or without IfaceOut
// with no direction on it (rules with `on` but neither in nor out match
// it there).
func (r *Replayer) where(dir rules.Dir, in uint32) rules.Where {
	switch dir {
	case rules.DirIn:
		return rules.Where{Dir: rules.DirIn, In: in}
	case rules.DirOut:
		if r.ifaceOut != 0 {
			return rules.Where{Dir: rules.DirOut, Out: r.ifaceOut}
		}
		return rules.Where{Dir: rules.DirOut, Out: in}
	}
	if r.ifaceOut != 0 {
		return rules.Where{Dir: rules.DirForward, In: in, Out: r.ifaceOut}
	}
	return rules.Where{Dir: rules.DirUnknown, In: in}
}

// checkIfaces refuses interface names that cannot be.
func checkIfaces(cfg Config) error {
	for _, n := range []string{cfg.Iface, cfg.IfaceOut} {
		if n == "" {
			continue
		}
		if err := CheckIfaceName(n); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	for _, f := range cfg.Ifaces {
		if err := CheckIfaceName(f.Name); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	return nil
}
