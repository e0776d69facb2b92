package rules

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/statewall/statewall/pkg/table"
)

// Tables: pf's `table <NAME> [persist] [const] { ADDRS } | file "PATH"`,
// used as <NAME> wherever an address may stand. The file defines a table
// and its initial content; the program that runs the rules makes the
// run-time object (ParseOptions.Tables): the daemon's can be changed
// through the control socket and survives reloads; the default is a new
// pkg/table Table, which overload can add to (in replay too).

// Lookup is a run-time set of addresses: a table as the matcher sees it.
// Contains is called on the packet path: it must be safe for concurrent
// use and should not allocate.
type Lookup interface {
	Contains(a netip.Addr) bool
}

// TableDef is one `table` statement.
type TableDef struct {
	Name    string
	Persist bool // exists even when no rule uses it (pf: otherwise it is not created)
	Const   bool // its content cannot change at run time
	// Addrs is the inline content and the content of every file, in
	// order (masked prefixes; single addresses are /32 or /128).
	Addrs []netip.Prefix
	Files []string // the `file` clauses, as absolute paths (so the canonical form reads the same files from anywhere)
	// Used: some rule or overload option refers to it.
	Used      bool
	File      string // as Rule.File
	Line, Col int
}

// Same reports whether d and o define the same table (name, flags and
// content as written), which decides whether a reload keeps the run-time
// content of the table (see ParseOptions.Tables).
func (d *TableDef) Same(o *TableDef) bool {
	if d.Name != o.Name || d.Persist != o.Persist || d.Const != o.Const || len(d.Addrs) != len(o.Addrs) || len(d.Files) != len(o.Files) {
		return false
	}
	for i := range d.Addrs {
		if d.Addrs[i] != o.Addrs[i] {
			return false
		}
	}
	for i := range d.Files {
		if d.Files[i] != o.Files[i] {
			return false
		}
	}
	return true
}

// String prints the statement in canonical form, files' content inline
// (so that the text says exactly what is matched) unless there is a lot.
func (d *TableDef) String() string {
	var b strings.Builder
	b.WriteString("table <" + d.Name + ">")
	if d.Persist {
		b.WriteString(" persist")
	}
	if d.Const {
		b.WriteString(" const")
	}
	if len(d.Files) > 0 {
		for _, f := range d.Files {
			b.WriteString(" file ")
			writeQuoted(&b, f)
		}
		return b.String()
	}
	b.WriteString(" {")
	for i, p := range d.Addrs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		if p.IsSingleIP() {
			b.WriteString(p.Addr().String())
		} else {
			b.WriteString(p.String())
		}
	}
	b.WriteString(" }")
	return b.String()
}

// ParseOptions changes how Parse makes the run-time parts of a ruleset.
// The zero value is Parse's default.
type ParseOptions struct {
	// Tables makes the run-time table for a definition that is used (or
	// persist). nil: a new pkg/table Table holding def.Addrs. The daemon's keeps the
	// object of an unchanged definition across reloads, so its run-time
	// additions survive.
	Tables func(def *TableDef) (Lookup, error)
}

// MaxTableFileEntries bounds one table file (4,194,304 lines with an
// address): a blocklist of millions is fine, an endless file is refused.
const MaxTableFileEntries = 1 << 22

// parseTable parses `table <NAME> [persist] [const] { ADDRS } | file
// "PATH" { file "PATH" }`.
func (p *parser) parseTable(kw token) error {
	n := p.next()
	if n.kind != tTable {
		return p.errAt(n, "expected a table name in angle brackets, as <blocklist>, after 'table', got %s", n.describe())
	}
	if d, ok := p.tables[n.text]; ok {
		return p.errAt(n, "duplicate table <%s> (first defined on line %d)", n.text, d.Line)
	}
	d := &TableDef{Name: n.text, Line: kw.line, Col: kw.col}
	if p.file != p.rs.File {
		d.File = p.file
	}
	for {
		t := p.peek()
		if t.kind == tWord && t.text == "persist" && !d.Persist {
			p.next()
			d.Persist = true
			continue
		}
		if t.kind == tWord && t.text == "const" && !d.Const {
			p.next()
			d.Const = true
			continue
		}
		break
	}
	switch t := p.peek(); {
	case t.kind == tLBrace:
		p.next()
		if q := p.peek(); q.kind == tRBrace {
			p.next()
			break
		}
		p.entries, p.stmt = 0, "'table <"+d.Name+">'"
		p.depth++
		es, err := p.parseList(nil, defAddrs, "'table <"+d.Name+">'")
		p.depth--
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.addr.Neg || e.addr.Table != "" {
				return p.errAt(e.tok, "a table holds addresses and prefixes only (negate where it is used: from ! <%s>)", d.Name)
			}
			d.Addrs = append(d.Addrs, e.addr.Prefix)
		}
	case t.kind == tWord && t.text == "file":
		for {
			q := p.peek()
			if q.kind != tWord || q.text != "file" {
				break
			}
			p.next()
			s := p.next()
			if s.kind != tString {
				return p.errAt(s, "expected a quoted file name after 'file', got %s", s.describe())
			}
			path := s.text
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(p.file), path)
			}
			addrs, err := readTableFile(path, MaxTableFileEntries-len(d.Addrs))
			if err != nil {
				if _, ok := err.(*Error); ok {
					return err
				}
				return p.errAt(s, "table <%s>: %v", d.Name, err)
			}
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			d.Files = append(d.Files, path)
			d.Addrs = append(d.Addrs, addrs...)
		}
	default:
		if t.kind != tEOL {
			return p.errAt(t, "expected 'persist', 'const', '{' or 'file' in 'table <%s>', got %s", d.Name, t.describe())
		}
	}
	if err := p.expectEOL("'table <" + d.Name + ">'"); err != nil {
		return err
	}
	p.tables[d.Name] = d
	p.rs.Tables = append(p.rs.Tables, d)
	return nil
}

// readTableFile reads one address or prefix a line; `#` starts a comment;
// blank lines are skipped. Errors are *Error at PATH:LINE:COL.
func readTableFile(path string, max int) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if i := bytes.IndexByte(b, '#'); i >= 0 {
			b = b[:i]
		}
		col := len(b) - len(bytes.TrimLeft(b, " \t")) + 1
		w := string(bytes.TrimSpace(b))
		if w == "" {
			continue
		}
		p, err := parsePrefix(w)
		if err != nil {
			return nil, &Error{File: path, Line: line, Col: col, Msg: err.Error()}
		}
		if len(out) >= max {
			return nil, &Error{File: path, Line: line, Col: col, Msg: fmt.Sprintf("more than %d entries in one table", MaxTableFileEntries)}
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, &Error{File: path, Line: line + 1, Col: 1, Msg: err.Error()}
	}
	return out, nil
}

// parsePrefix reads an address or prefix (host bits cleared, no zone).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%q has a zone; zones are not allowed", s)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// makeTables gives every used (or persist) table its run-time object.
func (p *parser) makeTables(opts ParseOptions) error {
	p.rs.tables = map[string]Lookup{}
	for _, d := range p.rs.Tables {
		if !d.Used && !d.Persist {
			continue // pf does not create it; Lint says so
		}
		var l Lookup
		if opts.Tables != nil {
			var err error
			if l, err = opts.Tables(d); err != nil {
				return &Error{File: d.where(p.rs), Line: d.Line, Col: d.Col, Msg: fmt.Sprintf("table <%s>: %v", d.Name, err)}
			}
		} else {
			t, err := table.New(table.Config{Name: d.Name, Const: d.Const, Persist: d.Persist}, d.Addrs)
			if err != nil {
				return &Error{File: d.where(p.rs), Line: d.Line, Col: d.Col, Msg: err.Error()}
			}
			l = t
		}
		p.rs.tables[d.Name] = l
	}
	return nil
}

func (d *TableDef) where(rs *Ruleset) string {
	if d.File != "" {
		return d.File
	}
	return rs.File
}

// Table returns the run-time object of the table named name, or nil.
func (rs *Ruleset) Table(name string) Lookup { return rs.tables[name] }

// Return is what a block rule answers (pf's `block return...`).
type Return uint8

const (
	ReturnNone  Return = iota // drop silently
	Returned                  // `return`: a TCP RST for TCP, an ICMP unreachable otherwise
	ReturnRST                 // `return-rst`: TCP only
	ReturnICMP                // `return-icmp [(code[, code6])]`: ICMP (IPv4) or ICMPv6 unreachable
	ReturnICMP6               // `return-icmp6 [(code)]`: ICMPv6 only
)

func (r Return) String() string {
	return [...]string{"", "return", "return-rst", "return-icmp", "return-icmp6"}[r]
}

// ICMP unreachable codes by pf's names.
var icmp4Unreach = []named{{"net-unr", 0}, {"host-unr", 1}, {"proto-unr", 2}, {"port-unr", 3}, {"net-prohib", 9}, {"host-prohib", 10}, {"filter-prohib", 13}}
var icmp6Unreach = []named{{"noroute-unr", 0}, {"admin-unr", 1}, {"addr-unr", 3}, {"port-unr", 4}}

// Default answer codes: port unreachable, as pf's return-icmp.
const (
	DefaultICMPCode  = 3
	DefaultICMP6Code = 4
)

// parseReturn parses what follows `block`: `drop`, or a return word and
// its optional (code[, code6]).
func (p *parser) parseReturn(r *Rule) error {
	t := p.peek()
	if t.kind != tWord {
		return nil
	}
	switch t.text {
	case "drop":
		p.next()
		return nil
	case "return":
		r.Return = Returned
	case "return-rst":
		r.Return = ReturnRST
	case "return-icmp":
		r.Return = ReturnICMP
	case "return-icmp6":
		r.Return = ReturnICMP6
	default:
		return nil
	}
	p.next()
	r.ICMPCode4, r.ICMPCode6 = DefaultICMPCode, DefaultICMP6Code
	if r.Return != ReturnICMP && r.Return != ReturnICMP6 || p.peek().kind != tLParen {
		return nil
	}
	p.next()
	first := true
	for {
		c := p.next()
		tab, what := icmp4Unreach, "an ICMP unreachable code"
		if r.Return == ReturnICMP6 || !first {
			tab, what = icmp6Unreach, "an ICMPv6 unreachable code"
		}
		v, ok := lookupName(tab, c.text)
		if c.kind != tWord || !ok {
			var names []string
			for _, n := range tab {
				names = append(names, n.name)
			}
			return p.errAt(c, "expected %s (%s) in '%s (...)', got %s", what, strings.Join(names, ", "), r.Return, c.describe())
		}
		if r.Return == ReturnICMP6 || !first {
			r.ICMPCode6 = v
		} else {
			r.ICMPCode4 = v
		}
		e := p.next()
		if e.kind == tRParen {
			return nil
		}
		if e.kind != tComma || !first || r.Return == ReturnICMP6 {
			return p.errAt(e, "expected ')' after the code, got %s", e.describe())
		}
		first = false
	}
}

// Limits are pf's stateful tracking options of a pass rule, written in
// parentheses after `keep state` (or alone): all 0 when absent.
type Limits struct {
	Max          int // max N: states of this rule
	MaxSrcNodes  int // max-src-nodes N: sources with states of this rule
	MaxSrcStates int // max-src-states N: states per source
	MaxSrcConn   int // max-src-conn N: established TCP connections per source
	// max-src-conn-rate N/S: established TCP connections per source per
	// ConnRatePer.
	ConnRate    int
	ConnRatePer time.Duration
	// overload <Overload> [flush [global]]: a source that passes
	// max-src-conn or the rate goes into the table; flush kills its states
	// of this rule (global: all of its states).
	Overload           string
	Flush, FlushGlobal bool
}

// Any reports whether some option is set.
func (l Limits) Any() bool { return l != Limits{} }

// parseLimits parses `option { , option } )` after keep state and its
// '(' (open).
func (p *parser) parseLimits(r *Rule, open token) error {
	if r.Action != Pass || r.NoState {
		return p.errAt(open, "stateful tracking options need a pass rule that keeps state")
	}
	l := &r.Limits
	for {
		o := p.next()
		if o.kind != tWord {
			return p.errAt(o, "expected a stateful tracking option (max, max-src-nodes, max-src-states, max-src-conn, max-src-conn-rate, overload), got %s", o.describe())
		}
		num := func() (int, error) {
			n := p.next()
			v, ok := parseCount(n.text)
			if n.kind != tWord || !ok {
				return 0, p.errAt(n, "expected a number from 1 to 2147483647 after '%s', got %s", o.text, n.describe())
			}
			return v, nil
		}
		var err error
		switch o.text {
		case "max":
			l.Max, err = num()
		case "max-src-nodes":
			l.MaxSrcNodes, err = num()
		case "max-src-states":
			l.MaxSrcStates, err = num()
		case "max-src-conn":
			l.MaxSrcConn, err = num()
		case "max-src-conn-rate":
			n := p.next()
			a, b, ok := strings.Cut(n.text, "/")
			x, ok1 := parseCount(a)
			y, ok2 := parseCount(b)
			if n.kind != tWord || !ok || !ok1 || !ok2 || y > 86400 {
				return p.errAt(n, "expected N/SECONDS (as 5/10: five connections in ten seconds, at most 86400 s) after 'max-src-conn-rate', got %s", n.describe())
			}
			l.ConnRate, l.ConnRatePer = x, time.Duration(y)*time.Second
		case "overload":
			n := p.next()
			if n.kind != tTable {
				return p.errAt(n, "expected a table, as <bruteforce>, after 'overload', got %s", n.describe())
			}
			d, ok := p.tables[n.text]
			if !ok {
				return p.errAt(n, "undefined table <%s>: define it with 'table <%s> persist' before this rule", n.text, n.text)
			}
			if d.Const {
				return p.errAt(n, "table <%s> is const: overload adds to it", n.text)
			}
			d.Used = true
			l.Overload = n.text
			if q := p.peek(); q.kind == tWord && q.text == "flush" {
				p.next()
				l.Flush = true
				if q := p.peek(); q.kind == tWord && q.text == "global" {
					p.next()
					l.FlushGlobal = true
				}
			}
		default:
			return p.errAt(o, "unknown stateful tracking option %q (max, max-src-nodes, max-src-states, max-src-conn, max-src-conn-rate, overload)", o.text)
		}
		if err != nil {
			return err
		}
		e := p.next()
		if e.kind == tRParen {
			break
		}
		if e.kind != tComma {
			return p.errAt(e, "expected ',' or ')' after '%s', got %s", o.text, e.describe())
		}
	}
	if l.Overload != "" && l.MaxSrcConn == 0 && l.ConnRate == 0 {
		return p.errAt(open, "overload <%s> never triggers without max-src-conn or max-src-conn-rate", l.Overload)
	}
	if l.MaxSrcConn != 0 || l.ConnRate != 0 {
		if r.Proto != 0 && r.Proto != 6 {
			return p.errAt(open, "max-src-conn and max-src-conn-rate count TCP connections, and the rule is proto %s", r.Proto)
		}
	}
	return nil
}

func parseCount(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, v >= 1 && v <= 1<<31-1
}

// writeLimits prints the options in canonical form.
func writeLimits(b *strings.Builder, l Limits) {
	var opts []string
	add := func(name string, v int) {
		if v != 0 {
			opts = append(opts, fmt.Sprintf("%s %d", name, v))
		}
	}
	add("max", l.Max)
	add("max-src-nodes", l.MaxSrcNodes)
	add("max-src-states", l.MaxSrcStates)
	add("max-src-conn", l.MaxSrcConn)
	if l.ConnRate != 0 {
		opts = append(opts, fmt.Sprintf("max-src-conn-rate %d/%d", l.ConnRate, int(l.ConnRatePer/time.Second)))
	}
	if l.Overload != "" {
		s := "overload <" + l.Overload + ">"
		if l.Flush {
			s += " flush"
			if l.FlushGlobal {
				s += " global"
			}
		}
		opts = append(opts, s)
	}
	b.WriteString(" keep state (" + strings.Join(opts, ", ") + ")")
}
