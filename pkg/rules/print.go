package rules

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// String returns the ruleset in canonical form: the settings the file
// wrote (timeouts sorted by name), then one line per rule. Defines are
// expanded and comments dropped, so the text says exactly what is matched.
// Parsing it gives an equal Ruleset, and printing that gives the same text.
func (rs *Ruleset) String() string {
	var b strings.Builder
	if rs.has&hasDefault != 0 {
		b.WriteString("set default " + rs.Default.String() + "\n")
	}
	if rs.has&hasInvalid != 0 {
		b.WriteString("set invalid " + rs.Invalid.String() + "\n")
	}
	if rs.has&hasLocal != 0 {
		var s AddrSpec
		for _, p := range rs.Local {
			s.Items = append(s.Items, AddrItem{Prefix: p})
		}
		b.WriteString("set local ")
		writeAddrSpec(&b, s)
		b.WriteByte('\n')
	}
	if rs.has&hasLimitStates != 0 {
		b.WriteString("set limit states " + strconv.Itoa(rs.LimitStates) + "\n")
	}
	if rs.has&hasLimitSrcNodes != 0 {
		b.WriteString("set limit src-nodes " + strconv.Itoa(rs.LimitSrcNodes) + "\n")
	}
	if rs.has&hasSrcTrack != 0 {
		b.WriteString("set timeout src.track " + formatDuration(rs.SrcTrack) + "\n")
	}
	ts := append([]namedTimeout(nil), rs.timeouts...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	for _, t := range ts {
		b.WriteString("set timeout " + t.name + " " + formatDuration(t.d) + "\n")
	}
	for _, d := range rs.Tables {
		b.WriteString(d.String() + "\n")
	}
	var last *Antispoof
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Antispoof != nil {
			if r.Antispoof != last {
				b.WriteString(r.Antispoof.String() + "\n")
			}
			last = r.Antispoof
			continue
		}
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Expanded returns the rules as they are matched, one numbered line per
// rule, antispoof statements expanded into their block rules with the
// addresses Bind gave them (`check --expand`): what `pfctl -vsr` shows.
func (rs *Ruleset) Expanded() string {
	var b strings.Builder
	for i := range rs.Rules {
		r := &rs.Rules[i]
		b.WriteString("@" + strconv.Itoa(r.Index) + " ")
		if r.spoof != spoofNone && r.From.Any() {
			what := "networks"
			if r.spoof == spoofSelf {
				what = "addresses"
			}
			state := "no such interface now"
			if rs.bound == nil {
				state = "interfaces not known here"
			} else {
				for _, f := range rs.bound.ifaces {
					if f.Name == r.spoofIf {
						state = "it has none now"
					}
				}
			}
			line := r.String()
			tail := ""
			if i := strings.Index(line, " log"); i >= 0 {
				line, tail = line[:i], line[i:]
			} else if i := strings.Index(line, " label"); i >= 0 {
				line, tail = line[:i], line[i:]
			}
			b.WriteString("# " + line + " from <" + r.spoofIf + " " + what + ": " + state + "; matches nothing>" + tail)
		} else {
			b.WriteString(r.String())
		}
		if r.Antispoof != nil {
			b.WriteString("  # " + r.Antispoof.String())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// impliedFamily is the family the rule's proto and addresses pin down
// without an inet/inet6 keyword.
func (r *Rule) impliedFamily() uint8 {
	switch r.Proto {
	case 1:
		return 4
	case 58:
		return 6
	}
	if f := r.From.family(); f != 0 {
		return f
	}
	return r.To.family()
}

// String returns the rule in canonical form, one line, without its index.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	switch r.Return {
	case ReturnNone:
	case ReturnICMP:
		b.WriteString(" return-icmp")
		if r.ICMPCode4 != DefaultICMPCode || r.ICMPCode6 != DefaultICMP6Code {
			b.WriteString(" (" + canonicalName(icmp4Unreach, r.ICMPCode4))
			if r.ICMPCode6 != DefaultICMP6Code {
				b.WriteString(", " + canonicalName(icmp6Unreach, r.ICMPCode6))
			}
			b.WriteString(")")
		}
	case ReturnICMP6:
		b.WriteString(" return-icmp6")
		if r.ICMPCode6 != DefaultICMP6Code {
			b.WriteString(" (" + canonicalName(icmp6Unreach, r.ICMPCode6) + ")")
		}
	default:
		b.WriteString(" " + r.Return.String())
	}
	if r.Dir != DirUnknown {
		b.WriteString(" " + r.Dir.String())
	}
	if !r.On.Any() {
		b.WriteString(" on ")
		writeIfaceSpec(&b, r.On)
	}
	if r.Family != 0 && r.impliedFamily() != r.Family {
		if r.Family == 4 {
			b.WriteString(" inet")
		} else {
			b.WriteString(" inet6")
		}
	}
	if r.Proto != 0 {
		b.WriteString(" proto " + r.Proto.String())
	}
	writeEndpoint(&b, "from", r.From, r.FromPorts)
	writeEndpoint(&b, "to", r.To, r.ToPorts)
	if r.HasFlags {
		if r.FlagsMask == 0 {
			b.WriteString(" flags any")
		} else {
			b.WriteString(" flags " + formatFlags(r.Flags) + "/" + formatFlags(r.FlagsMask))
		}
	}
	if r.HasICMPType {
		b.WriteString(" icmp-type ")
		tab := icmp4Names
		if r.Proto == 58 {
			tab = icmp6Names
		}
		if s := canonicalName(tab, r.ICMPType); s != "" {
			b.WriteString(s)
		} else {
			b.WriteString(strconv.Itoa(int(r.ICMPType)))
		}
		if r.HasICMPCode {
			b.WriteString(" code " + strconv.Itoa(int(r.ICMPCode)))
		}
	}
	if r.NoState {
		b.WriteString(" no state")
	}
	if r.Limits.Any() {
		writeLimits(&b, r.Limits)
	}
	if r.Log {
		b.WriteString(" log")
		if r.LogAll {
			b.WriteString(" (all)")
		}
	}
	if r.Label != "" {
		b.WriteString(" label ")
		writeQuoted(&b, r.Label)
	}
	return b.String()
}

func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func writeEndpoint(b *strings.Builder, kw string, a AddrSpec, p PortSpec) {
	if a.Any() && p.Any() {
		return
	}
	b.WriteString(" " + kw + " ")
	writeAddrSpec(b, a)
	if !p.Any() {
		b.WriteString(" port ")
		writePortSpec(b, p)
	}
}

func writeAddrSpec(b *strings.Builder, s AddrSpec) {
	if s.Any() {
		b.WriteString("any")
		return
	}
	if len(s.Items) > 1 {
		b.WriteString("{ ")
	}
	for i, it := range s.Items {
		if i > 0 {
			b.WriteString(", ")
		}
		if it.Neg {
			b.WriteByte('!')
		}
		if it.Table != "" {
			b.WriteString("<" + it.Table + ">")
		} else if it.Prefix.IsSingleIP() {
			b.WriteString(it.Prefix.Addr().String())
		} else {
			b.WriteString(it.Prefix.String())
		}
	}
	if len(s.Items) > 1 {
		b.WriteString(" }")
	}
}

func writeIfaceSpec(b *strings.Builder, s IfaceSpec) {
	if len(s.Items) > 1 {
		b.WriteString("{ ")
	}
	for i, it := range s.Items {
		if i > 0 {
			b.WriteString(", ")
		}
		if it.Neg {
			b.WriteByte('!')
		}
		b.WriteString(it.Name)
	}
	if len(s.Items) > 1 {
		b.WriteString(" }")
	}
}

func writePortSpec(b *strings.Builder, s PortSpec) {
	if len(s.Items) > 1 {
		b.WriteString("{ ")
	}
	for i, it := range s.Items {
		if i > 0 {
			b.WriteString(", ")
		}
		if it.Neg {
			b.WriteByte('!')
		}
		b.WriteString(strconv.Itoa(int(it.Lo)))
		if it.Hi != it.Lo {
			b.WriteString("-" + strconv.Itoa(int(it.Hi)))
		}
	}
	if len(s.Items) > 1 {
		b.WriteString(" }")
	}
}

// formatDuration prints d in the largest unit that divides it exactly.
func formatDuration(d time.Duration) string {
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

func formatFlags(f uint8) string {
	var b []byte
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			b = append(b, flagLetters[i])
		}
	}
	return string(b)
}
