package rules

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
)

// ParseFile reads and parses the rules file at path. Errors in the text are
// *Error values naming path; a file that cannot be read gives the os error.
// It reads at most MaxFileSize+1 bytes, so a huge file (or a device that
// never ends) is refused without being read whole.
func ParseFile(path string) (*Ruleset, error) {
	return ParseFileWith(path, ParseOptions{})
}

// ParseFileWith is ParseFile with options.
func ParseFileWith(path string, opts ParseOptions) (*Ruleset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return ParseWith(path, src, opts)
}

// The limits on a rules file (doc.go, "Limits"). Without them a 729-byte
// file of defines that each double the one before ran out of memory at
// 12 GB, and 2 MB of '!' overflowed the stack, a fatal error that no
// recover catches, so a reload of such a file killed the daemon. With
// them, on a 2-core test machine, the costliest file of a few KB we could
// build (such defines, up to the entry limits) parses in about 0.3 s of
// CPU and 200 MB, and the costliest of several MB (every limit reached at
// once, with lists built to defeat the index) in about 1 s and 450 MB.
// Each limit is generous for a written or generated policy: a define of
// 100,000 addresses used in a few rules loads (TestLimitsRealistic).
// Longer lists belong in a table, not a define.
const (
	// MaxFileSize is the largest rules file, in bytes (16 MiB).
	MaxFileSize = 16 << 20
	// MaxNesting is how deep '{' and '!' may nest inside one another.
	MaxNesting = 64
	// MaxRules is the most rules a file may hold (131,072).
	MaxRules = 1 << 17
	// MaxRuleEntries is the most addresses and ports one rule (its from
	// and to together), one define or 'set local' may hold, counted after
	// $name expansion (262,144).
	MaxRuleEntries = 1 << 18
	// MaxTotalEntries is the most addresses and ports the whole file may
	// hold after expansion: every define's entries, and again those of
	// every use of its $name (1,048,576).
	MaxTotalEntries = 1 << 20
)

// Parse parses and compiles a rules file. file is used only in error
// messages and as Ruleset.File. The error, if any, is an *Error.
func Parse(file string, src []byte) (*Ruleset, error) {
	return ParseWith(file, src, ParseOptions{})
}

// ParseWith is Parse with options.
func ParseWith(file string, src []byte, opts ParseOptions) (*Ruleset, error) {
	if len(src) > MaxFileSize {
		return nil, tooLarge(file, src)
	}
	p := &parser{
		file:     file,
		lx:       newLexer(file, src),
		rs:       &Ruleset{File: file, LimitStates: DefaultLimitStates, LimitSrcNodes: DefaultLimitSrcNodes},
		defines:  map[string]*define{},
		tables:   map[string]*TableDef{},
		settings: map[string]int{},
		size:     len(src),
	}
	if abs, err := filepath.Abs(file); err == nil {
		p.includes = []string{abs}
	}
	p.advance()
	if err := p.parse(); err != nil {
		return nil, p.first(err)
	}
	if err := p.collectIfNames(); err != nil {
		return nil, err
	}
	if err := p.makeTables(opts); err != nil {
		return nil, err
	}
	p.rs.m = compile(p.rs.Rules, p.rs.ifNames, p.rs.tables)
	p.rs.local = compileLocal(p.rs.Local)
	return p.rs, nil
}

// first returns the earlier of the parser's error and the lexer's, if
// any. The parser reads one token ahead, so the lexer may have failed on
// the token after the one the parser stopped at. On a tie the lexer's
// error wins: the parser stopped at the token the lexer could not read,
// and the lexer says what is wrong with it.
func (p *parser) first(err error) error {
	le, _ := p.lexErr.(*Error)
	pe, _ := err.(*Error)
	if le == nil || pe != nil && (pe.Line < le.Line || pe.Line == le.Line && pe.Col < le.Col) {
		return err
	}
	return le
}

// tooLarge is the error for a file over MaxFileSize, at its first byte
// past the limit.
func tooLarge(file string, src []byte) *Error {
	head := src[:MaxFileSize]
	line := bytes.Count(head, []byte("\n")) + 1
	col := len(head) - (bytes.LastIndexByte(head, '\n') + 1) + 1
	return &Error{File: file, Line: line, Col: col, Msg: fmt.Sprintf("file too large: this byte is past the first %d (16 MiB), the most a rules file may hold", MaxFileSize)}
}

type parser struct {
	file     string
	lx       *lexer
	tok      token // the next token; tErr if the lexer failed there
	lexErr   error
	rs       *Ruleset
	defines  map[string]*define
	tables   map[string]*TableDef
	settings map[string]int // setting name -> line it was set on

	includes []string // absolute paths of the files being parsed, outermost first
	size     int      // bytes read, the main file and every include

	depth   int    // '{' and '!' around the term being parsed
	entries int    // addresses and ports in the current statement, after expansion
	total   int    // addresses and ports in the file so far, after expansion
	stmt    string // the current statement, for messages: "the rule", "'set local'", ...
}

type defKind uint8

const (
	defAddrs defKind = iota + 1
	defPorts
	defIfaces
)

func (k defKind) String() string {
	switch k {
	case defAddrs:
		return "addresses"
	case defIfaces:
		return "interfaces"
	}
	return "ports"
}

type define struct {
	kind    defKind
	entries []entry
	line    int
}

// entry is one item of an address or port set as written, with the token
// it came from for error positions.
type entry struct {
	kind    defKind
	addr    AddrItem
	port    PortItem
	iface   IfaceItem
	tok     token
	fromVar bool // came from a $name; wrong-family items are dropped, not errors
}

// advance reads the token after p.tok into p.tok. After tEOF or a lexer
// error it stays where it is.
func (p *parser) advance() {
	t, err := p.lx.next()
	if err != nil {
		p.lexErr = err
		e := err.(*Error)
		t = token{kind: tErr, line: e.Line, col: e.Col}
	}
	p.tok = t
}

func (p *parser) peek() token { return p.tok }

func (p *parser) next() token {
	t := p.tok
	if t.kind != tEOF && t.kind != tErr {
		p.advance()
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) *Error {
	return &Error{File: p.file, Line: t.line, Col: t.col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) expectEOL(after string) error {
	t := p.next()
	if t.kind != tEOL {
		return p.errAt(t, "expected end of line after %s, got %s", after, t.describe())
	}
	return nil
}

func (p *parser) parse() error {
	for {
		t := p.next()
		var err error
		switch {
		case t.kind == tEOF:
			return nil
		case t.kind == tEOL:
			continue
		case t.kind == tWord && t.text == "set":
			err = p.parseSet(t)
		case t.kind == tWord && t.text == "define":
			err = p.parseDefine()
		case t.kind == tWord && (t.text == "pass" || t.text == "block"):
			err = p.parseRule(t)
		case t.kind == tWord && t.text == "antispoof":
			err = p.parseAntispoof(t)
		case t.kind == tWord && t.text == "include":
			err = p.parseInclude()
		case t.kind == tWord && t.text == "table":
			err = p.parseTable(t)
		default:
			err = p.errAt(t, "expected 'pass', 'block', 'antispoof', 'table', 'include', 'set' or 'define', got %s", t.describe())
		}
		if err != nil {
			return err
		}
	}
}

// MaxIncludeDepth is how deep includes may nest.
const MaxIncludeDepth = 16

// parseInclude reads `include "PATH"`: the statements of PATH (relative
// to the including file's directory) are parsed in place, as if written
// there, with errors positioned in PATH. An include of a file that is
// already being read (a loop) is refused, and all files together count
// against MaxFileSize.
func (p *parser) parseInclude() error {
	s := p.next()
	if s.kind != tString {
		return p.errAt(s, "expected a quoted file name after 'include', got %s", s.describe())
	}
	if err := p.expectEOL("'include \"" + s.text + "\"'"); err != nil {
		return err
	}
	path := s.text
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.file), path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return p.errAt(s, "cannot include %q: %v", s.text, err)
	}
	for i, f := range p.includes {
		if f == abs {
			chain := append(append([]string(nil), p.includes[i:]...), abs)
			return p.errAt(s, "include loop: %s", strings.Join(chain, " includes "))
		}
	}
	if len(p.includes) > MaxIncludeDepth {
		return p.errAt(s, "includes nest more than %d deep", MaxIncludeDepth)
	}
	f, err := os.Open(path)
	if err != nil {
		return p.errAt(s, "cannot include %q: %v", s.text, err)
	}
	src, err := io.ReadAll(io.LimitReader(f, int64(MaxFileSize-p.size)+1))
	f.Close()
	if err != nil {
		return p.errAt(s, "cannot include %q: %v", s.text, err)
	}
	if p.size+len(src) > MaxFileSize {
		return p.errAt(s, "including %q brings the ruleset past %d bytes (16 MiB), the most its files may hold together", s.text, MaxFileSize)
	}
	p.size += len(src)
	saveLx, saveTok, saveFile, saveLexErr := p.lx, p.tok, p.file, p.lexErr
	p.lx, p.file, p.lexErr = newLexer(path, src), path, nil
	p.includes = append(p.includes, abs)
	p.advance()
	if err := p.parse(); err != nil {
		return p.first(err)
	}
	p.includes = p.includes[:len(p.includes)-1]
	p.lx, p.tok, p.file, p.lexErr = saveLx, saveTok, saveFile, saveLexErr
	return nil
}

// --- settings ---

func (p *parser) once(name string, t token) error {
	if l, ok := p.settings[name]; ok {
		return p.errAt(t, "duplicate 'set %s' (first set on line %d)", name, l)
	}
	p.settings[name] = t.line
	return nil
}

func (p *parser) parseSet(setTok token) error {
	t := p.next()
	if t.kind != tWord {
		return p.errAt(t, "expected setting name after 'set', got %s", t.describe())
	}
	switch t.text {
	case "default", "invalid":
		if err := p.once(t.text, t); err != nil {
			return err
		}
		v := p.next()
		var a Action
		switch {
		case v.kind == tWord && v.text == "pass":
			a = Pass
		case v.kind == tWord && v.text == "block":
			a = Block
		default:
			return p.errAt(v, "expected 'pass' or 'block' after 'set %s', got %s", t.text, v.describe())
		}
		if t.text == "default" {
			p.rs.Default = a
			p.rs.has |= hasDefault
		} else {
			p.rs.Invalid = a
			p.rs.has |= hasInvalid
		}
		return p.expectEOL("'set " + t.text + " " + v.text + "'")
	case "local":
		if err := p.once("local", t); err != nil {
			return err
		}
		p.entries, p.stmt = 0, "'set local'"
		first := p.peek()
		if first.kind == tWord && first.text == "any" {
			return p.errAt(first, "'set local' needs this host's addresses, not 'any'")
		}
		es, err := p.parseTerm(nil, defAddrs, "'set local'", false)
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.addr.Neg {
				return p.errAt(e.tok, "'set local' cannot hold negated addresses")
			}
			p.rs.Local = append(p.rs.Local, e.addr.Prefix)
		}
		p.rs.has |= hasLocal
		return p.expectEOL("'set local' addresses")
	case "limit":
		w := p.next()
		if w.kind == tWord && w.text == "src-nodes" {
			if err := p.once("limit src-nodes", t); err != nil {
				return err
			}
			n := p.next()
			v, ok := parseCount(n.text)
			if n.kind != tWord || !ok {
				return p.errAt(n, "expected a number of source nodes from 1 to 2147483647 after 'set limit src-nodes', got %s", n.describe())
			}
			p.rs.LimitSrcNodes = v
			p.rs.has |= hasLimitSrcNodes
			return p.expectEOL("'set limit src-nodes " + n.text + "'")
		}
		if w.kind != tWord || w.text != "states" {
			return p.errAt(w, "expected 'states' or 'src-nodes' after 'set limit', got %s", w.describe())
		}
		if err := p.once("limit states", t); err != nil {
			return err
		}
		n := p.next()
		v, err := strconv.ParseUint(n.text, 10, 31)
		if n.kind != tWord || err != nil || v == 0 {
			return p.errAt(n, "expected a number of states from 1 to 2147483647 after 'set limit states', got %s", n.describe())
		}
		p.rs.LimitStates = int(v)
		p.rs.has |= hasLimitStates
		return p.expectEOL("'set limit states " + n.text + "'")
	case "timeout":
		n := p.next()
		if n.kind == tWord && n.text == "src.track" {
			if err := p.once("timeout src.track", n); err != nil {
				return err
			}
			d := p.next()
			dur, ok := parseDuration(d.text)
			if d.kind != tWord || !ok {
				return p.errAt(d, "expected a duration such as 30s, 2m, 1h30m or 5d (at most 3650d) after 'set timeout src.track', got %s", d.describe())
			}
			p.rs.SrcTrack = dur
			p.rs.has |= hasSrcTrack
			return p.expectEOL("'set timeout src.track " + d.text + "'")
		}
		if _, known := timeoutIndex(n.text); n.kind != tWord || !known {
			return p.errAt(n, "expected timeout name after 'set timeout' (%s, src.track), got %s", strings.Join(conntrack.TimeoutNames(), ", "), n.describe())
		}
		if err := p.once("timeout "+n.text, n); err != nil {
			return err
		}
		d := p.next()
		dur, ok := parseDuration(d.text)
		if d.kind != tWord || !ok {
			return p.errAt(d, "expected a duration such as 30s, 2m, 1h30m or 5d (at most 3650d) after 'set timeout %s', got %s", n.text, d.describe())
		}
		if err := p.rs.Timeouts.Set(n.text, dur); err != nil {
			return p.errAt(d, "%v", err)
		}
		p.rs.timeouts = append(p.rs.timeouts, namedTimeout{n.text, dur})
		return p.expectEOL("'set timeout " + n.text + " " + d.text + "'")
	}
	return p.errAt(t, "unknown setting %q; expected default, invalid, local, limit or timeout", t.text)
}

func timeoutIndex(name string) (int, bool) {
	for i, n := range conntrack.TimeoutNames() {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// maxDuration bounds `set timeout` values (about 292 years would overflow
// time.Duration; nobody needs more than ten).
const maxDuration = 10 * 365 * 24 * time.Hour

var durationUnits = []struct {
	name string
	d    time.Duration
}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second}}

// parseDuration reads one or more NUMBER UNIT pairs, units d h m s ms, as in
// 30s, 2m, 5d or 1h30m. Go's time.ParseDuration has no days, which
// conntrack timeouts need (tcp.established is 5d).
func parseDuration(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 12 {
			return 0, false
		}
		n, _ := strconv.ParseInt(s[:i], 10, 64)
		s = s[i:]
		var unit time.Duration
		for _, u := range durationUnits {
			if strings.HasPrefix(s, u.name) {
				unit = u.d
				s = s[len(u.name):]
				break
			}
		}
		if unit == 0 || n > int64(maxDuration/unit) {
			return 0, false
		}
		total += time.Duration(n) * unit
		if total > maxDuration {
			return 0, false
		}
	}
	return total, true
}

// --- define ---

func isName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

func (p *parser) parseDefine() error {
	n := p.next()
	if n.kind != tWord || !isName(n.text) {
		return p.errAt(n, "expected a name (letters, digits, '_') after 'define', got %s", n.describe())
	}
	if d, ok := p.defines[n.text]; ok {
		return p.errAt(n, "duplicate define %q (first defined on line %d)", n.text, d.line)
	}
	if eq := p.next(); eq.kind != tEq {
		return p.errAt(eq, "expected '=' after 'define %s', got %s", n.text, eq.describe())
	}
	p.entries, p.stmt = 0, "'define "+n.text+"'"
	es, err := p.parseTerm(nil, 0, "'define "+n.text+" ='", false)
	if err != nil {
		return err
	}
	p.defines[n.text] = &define{kind: es[0].kind, entries: es, line: n.line}
	return p.expectEOL("the value of 'define " + n.text + "'")
}

// --- sets of addresses and ports ---

// parseTerm parses ADDR or PORTS (want says which; 0 in a define, where the
// items decide) and appends its items to dst. after names the keyword
// before it, for messages. inList is true inside braces. It appends at
// least one item. Appending, rather than returning each level's own slice,
// copies a $name's expansion once however deep it is nested.
func (p *parser) parseTerm(dst []entry, want defKind, after string, inList bool) ([]entry, error) {
	t := p.next()
	switch t.kind {
	case tBang:
		if err := p.nest(t); err != nil {
			return nil, err
		}
		n := len(dst)
		dst, err := p.parseTerm(dst, want, after, inList)
		p.depth--
		if err != nil {
			return nil, err
		}
		for i := n; i < len(dst); i++ {
			e := &dst[i]
			if e.addr.Neg || e.port.Neg || e.iface.Neg {
				return nil, p.errAt(t, "cannot negate a list that holds negated items")
			}
			e.addr.Neg, e.port.Neg, e.iface.Neg = e.kind == defAddrs, e.kind == defPorts, e.kind == defIfaces
		}
		return dst, nil
	case tLBrace:
		if err := p.nest(t); err != nil {
			return nil, err
		}
		dst, err := p.parseList(dst, want, after)
		p.depth--
		return dst, err
	case tTable:
		if want == defPorts || want == defIfaces {
			break
		}
		d, ok := p.tables[t.text]
		if !ok {
			return nil, p.errAt(t, "undefined table <%s> (define it with 'table <%s> ...' before its use)", t.text, t.text)
		}
		d.Used = true
		if err := p.count(t, 1); err != nil {
			return nil, err
		}
		return append(dst, entry{kind: defAddrs, addr: AddrItem{Table: t.text}, tok: t}), nil
	case tVar:
		d, ok := p.defines[t.text]
		if !ok {
			return nil, p.errAt(t, "undefined $%s", t.text)
		}
		if want != 0 && d.kind != want {
			return nil, p.errAt(t, "$%s holds %s, not %s", t.text, d.kind, want)
		}
		if err := p.count(t, len(d.entries)); err != nil {
			return nil, err
		}
		n := len(dst)
		dst = append(dst, d.entries...)
		for i := n; i < len(dst); i++ {
			dst[i].fromVar = true
		}
		return dst, nil
	case tWord:
		if t.text == "any" && want != defPorts && want != defIfaces {
			if inList {
				return nil, p.errAt(t, "'any' cannot be a list item")
			}
			return nil, p.errAt(t, "'any' is allowed only on its own after 'from' or 'to'")
		}
		var e entry
		if want == defIfaces {
			if !validIfaceName(t.text) {
				return nil, p.errAt(t, "%q is not an interface name (1-15 characters starting with a letter, no '/', ':' or blank)", t.text)
			}
			e = entry{kind: defIfaces, iface: IfaceItem{Name: t.text}, tok: t}
		} else if want != defPorts {
			if a, ok, err := p.parseAddrWord(t); err != nil {
				return nil, err
			} else if ok {
				e = entry{kind: defAddrs, addr: a, tok: t}
			}
		}
		if want != defAddrs && e.kind == 0 {
			if pi, ok, err := p.parsePortWord(t); err != nil {
				return nil, err
			} else if ok {
				e = entry{kind: defPorts, port: pi, tok: t}
			}
		}
		if want == 0 && e.kind == 0 && validIfaceName(t.text) && !strings.ContainsAny(t.text, "%") {
			// In a define, a word that is neither an address nor a port
			// is an interface name (pf's `ext_if = "em0"`).
			e = entry{kind: defIfaces, iface: IfaceItem{Name: t.text}, tok: t}
		}
		if e.kind != 0 {
			if err := p.count(t, 1); err != nil {
				return nil, err
			}
			return append(dst, e), nil
		}
	}
	return nil, p.errAt(t, "%s", expectedMsg(want, after, inList, t))
}

// parseList parses the items of a list after its '{', and the '}',
// appending them to dst.
func (p *parser) parseList(dst []entry, want defKind, after string) ([]entry, error) {
	start := len(dst)
	for {
		if q := p.peek(); q.kind == tRBrace {
			if len(dst) == start {
				return nil, p.errAt(q, "empty list")
			}
			p.next()
			return dst, nil
		}
		n := len(dst)
		var err error
		if dst, err = p.parseTerm(dst, want, after, true); err != nil {
			return nil, err
		}
		for _, e := range dst[n:] {
			if want == 0 {
				want = e.kind
			} else if e.kind != want {
				return nil, p.errAt(e.tok, "list mixes addresses and ports: %s is not %s", e.tok.describe(), want)
			}
		}
		if q := p.peek(); q.kind == tComma {
			p.next()
			if r := p.peek(); r.kind == tRBrace {
				return nil, p.errAt(r, "expected list item after ',', got '}'")
			}
		}
	}
}

// nest enters a '{' or '!' at t, or fails if that is one level more than
// MaxNesting. The parser recurses once per level, so without a bound a few
// MB of '{' or '!' overflow the goroutine stack: a fatal error, not a panic.
func (p *parser) nest(t token) error {
	if p.depth >= MaxNesting {
		return p.errAt(t, "'{' and '!' nest more than %d deep", MaxNesting)
	}
	p.depth++
	return nil
}

// count adds n entries, those t writes (one item, or a $name's expansion),
// to the statement's and the file's, or fails before they are copied if
// either would pass its limit.
func (p *parser) count(t token, n int) error {
	if p.entries+n > MaxRuleEntries {
		return p.errAt(t, "too many addresses and ports: %s brings %s to %d, more than the %d a rule, define or 'set local' may hold", t.describe(), p.stmt, p.entries+n, MaxRuleEntries)
	}
	if p.total+n > MaxTotalEntries {
		return p.errAt(t, "too many addresses and ports: %s brings the file to %d, more than the %d it may hold (each define counts, and each use of a $name again)", t.describe(), p.total+n, MaxTotalEntries)
	}
	p.entries += n
	p.total += n
	return nil
}

func expectedMsg(want defKind, after string, inList bool, t token) string {
	what := map[defKind]string{
		defAddrs:  "address",
		defPorts:  "port",
		defIfaces: "interface name",
		0:         "address, port or interface name",
	}[want]
	if inList {
		return fmt.Sprintf("expected %s, '!', '$name' or '}' in list, got %s", what, t.describe())
	}
	return fmt.Sprintf("expected %s or '{' after %s, got %s", what, after, t.describe())
}

// parseAddrWord reads an address or prefix. ok is false when the word is
// not address-like at all; err is set when it is, but wrong.
func (p *parser) parseAddrWord(t token) (AddrItem, bool, error) {
	s := t.text
	if !strings.ContainsAny(s, ".:") {
		return AddrItem{}, false, nil
	}
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	if strings.Contains(addrPart, "%") {
		return AddrItem{}, false, p.errAt(t, "address %q has a zone; zones are not allowed", s)
	}
	a, err := netip.ParseAddr(addrPart)
	if err != nil {
		return AddrItem{}, false, nil
	}
	max := a.BitLen()
	bits := max
	if hasBits {
		n, err := strconv.ParseUint(bitsPart, 10, 8)
		if err != nil || int(n) > max || bitsPart == "" || len(bitsPart) > 3 {
			fam := "IPv4"
			if a.Is6() {
				fam = "IPv6"
			}
			return AddrItem{}, false, p.errAt(t, "bad prefix length %q in %q: %s allows 0-%d", bitsPart, s, fam, max)
		}
		bits = int(n)
	}
	pfx, _ := a.Prefix(bits) // masks host bits: 198.18.0.5/24 is 198.18.0.0/24
	return AddrItem{Prefix: pfx}, true, nil
}

// parsePortWord reads a port number, a service name or a range LO-HI of
// numbers.
func (p *parser) parsePortWord(t token) (PortItem, bool, error) {
	s := t.text
	if n, ok := serviceNames[s]; ok {
		return PortItem{Lo: n, Hi: n}, true, nil
	}
	num := func(s string) (uint16, bool, error) {
		if s == "" || len(s) > 10 {
			return 0, false, nil
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false, nil
			}
		}
		n, _ := strconv.ParseUint(s, 10, 64)
		if n > 65535 {
			return 0, false, p.errAt(t, "port %s out of range 0-65535", s)
		}
		return uint16(n), true, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, ok, err := num(lo)
	if err != nil || !ok {
		return PortItem{}, false, err
	}
	if !isRange {
		return PortItem{Lo: a, Hi: a}, true, nil
	}
	b, ok, err := num(hi)
	if err != nil || !ok {
		return PortItem{}, false, err
	}
	if a > b {
		return PortItem{}, false, p.errAt(t, "port range %s is backwards (write %d-%d)", s, b, a)
	}
	return PortItem{Lo: a, Hi: b}, true, nil
}

// --- rules ---

// The parts of a rule, in the order they must be written.
const (
	stAction = iota
	stDir
	stOn
	stFamily
	stProto
	stFrom
	stTo
	stFlags
	stICMP
	stState
	stLog
	stLabel
)

var stageNames = [...]string{"action", "'in'/'out'", "'on'", "'inet'/'inet6'", "'proto'", "'from'", "'to'", "'flags'", "'icmp-type'", "'no state'", "'log'", "'label'"}

var ruleKeywords = map[string]int{
	"in": stDir, "out": stDir,
	"on":   stOn,
	"inet": stFamily, "inet6": stFamily,
	"proto": stProto,
	"from":  stFrom,
	"all":   stTo, "to": stTo,
	"flags":     stFlags,
	"icmp-type": stICMP, "icmp6-type": stICMP,
	"no": stState, "keep": stState,
	"log":   stLog,
	"label": stLabel,
}

// famState tracks the rule's address family while parsing: explicit from
// inet/inet6, or implied by the first part that pins it.
type famState struct {
	fam uint8
	why string
}

func famName(f uint8) string {
	if f == 4 {
		return "IPv4"
	}
	return "IPv6"
}

func (p *parser) parseRule(act token) error {
	if len(p.rs.Rules) >= MaxRules {
		return p.errAt(act, "too many rules: a file may hold at most %d", MaxRules)
	}
	p.entries, p.stmt = 0, "the rule"
	r := Rule{Index: len(p.rs.Rules) + 1, Line: act.line, Col: act.col, Action: Block}
	if p.file != p.rs.File {
		r.File = p.file
	}
	if act.text == "pass" {
		r.Action = Pass
	} else if err := p.parseReturn(&r); err != nil {
		return err
	}
	var fam famState
	var logTok token
	stage := stAction
	var seen [stLabel + 1]bool
	for {
		t := p.next()
		if t.kind == tEOL {
			break
		}
		k, ok := -1, false
		if t.kind == tWord {
			k, ok = ruleKeywords[t.text]
		}
		if t.kind == tLParen && !seen[stState] && stage <= stState {
			// Tracking options alone: `keep state` is implied.
			seen[stState], stage = true, stState
			if err := p.parseLimits(&r, t); err != nil {
				return err
			}
			continue
		}
		if !ok {
			if t.kind == tWord && t.text == "quick" {
				return p.errAt(t, "unknown word \"quick\": the first matching rule always wins, so 'quick' is not needed")
			}
			var want []string
			for s := stage + 1; s <= stLabel; s++ {
				want = append(want, stageNames[s])
			}
			return p.errAt(t, "expected %s or end of line, got %s", strings.Join(want, ", "), t.describe())
		}
		if t.text == "all" && (seen[stFrom] || seen[stTo]) {
			return p.errAt(t, "'all' means 'from any to any' and cannot follow 'from', 'to' or 'all'")
		}
		if seen[k] {
			return p.errAt(t, "duplicate %s in rule", stageNames[k])
		}
		if k == stLog && stage <= stDir {
			// pf's place for it: `block in log on eth1 ...`. Printed
			// at the end, where it may also be written.
			seen[k], logTok = true, t
			r.Log = true
			var err error
			if r.LogAll, err = p.parseLogOpts(); err != nil {
				return err
			}
			continue
		}
		if k < stage {
			return p.errAt(t, "'%s' must come before %s: the order is %s", t.text, stageNames[stage], strings.Join(stageNames[1:], ", "))
		}
		seen[k], stage = true, k
		var err error
		switch k {
		case stDir:
			r.Dir = DirIn
			if t.text == "out" {
				r.Dir = DirOut
			}
		case stOn:
			r.On, err = p.parseOn(t)
		case stFamily:
			fam = famState{4, "'inet'"}
			if t.text == "inet6" {
				fam = famState{6, "'inet6'"}
			}
		case stProto:
			err = p.parseProto(&r, &fam)
		case stFrom:
			r.From, r.FromPorts, err = p.parseEndpoint(&r, &fam, t)
		case stTo:
			if t.text == "all" {
				seen[stFrom] = true
				continue
			}
			r.To, r.ToPorts, err = p.parseEndpoint(&r, &fam, t)
		case stFlags:
			err = p.parseFlags(&r, t)
		case stICMP:
			err = p.parseICMP(&r, t)
		case stState:
			w := p.next()
			if w.kind != tWord || w.text != "state" {
				return p.errAt(w, "expected 'state' after '%s', got %s", t.text, w.describe())
			}
			r.NoState = t.text == "no"
			if q := p.peek(); q.kind == tLParen {
				if err := p.parseLimits(&r, p.next()); err != nil {
					return err
				}
			}
		case stLog:
			r.Log, logTok = true, t
			r.LogAll, err = p.parseLogOpts()
		case stLabel:
			s := p.next()
			if s.kind != tString {
				return p.errAt(s, "expected a quoted string after 'label', got %s", s.describe())
			}
			r.Label = s.text
		}
		if err != nil {
			return err
		}
	}
	if r.LogAll && (r.Action != Pass || r.NoState) {
		return p.errAt(logTok, "'log (all)' logs the packets of the connection a rule creates: it needs a pass rule that keeps state")
	}
	if r.Return == ReturnRST && r.Proto != 0 && r.Proto != 6 {
		return p.errAt(act, "'block return-rst' answers TCP with a RST, and the rule is proto %s (use return-icmp)", r.Proto)
	}
	if r.Return == ReturnICMP6 && r.Family == 0 && fam.fam == 4 || r.Return == ReturnICMP6 && fam.fam == 4 {
		return p.errAt(act, "'block return-icmp6' answers IPv6 packets, and the rule is IPv4 (from %s)", fam.why)
	}
	r.Family = fam.fam
	p.rs.Rules = append(p.rs.Rules, r)
	return nil
}

// parseOn parses the interfaces after 'on': NAME, !NAME, { a, b }, $name.
func (p *parser) parseOn(kw token) (IfaceSpec, error) {
	var s IfaceSpec
	p.entries, p.stmt = 0, "the rule"
	es, err := p.parseTerm(nil, defIfaces, "'"+kw.text+"'", false)
	if err != nil {
		return s, err
	}
	for _, e := range es {
		s.Items = append(s.Items, e.iface)
	}
	return s, nil
}

// parseLogOpts parses pf's options after 'log': nothing, or "(all)".
// It returns whether "all" was given.
func (p *parser) parseLogOpts() (bool, error) {
	if t := p.peek(); t.kind != tLParen {
		return false, nil
	}
	p.next()
	w := p.next()
	if w.kind != tWord || w.text != "all" {
		return false, p.errAt(w, "expected 'all' in 'log (...)', got %s (other pf log options are not supported)", w.describe())
	}
	if c := p.next(); c.kind != tRParen {
		return false, p.errAt(c, "expected ')' after 'log (all', got %s", c.describe())
	}
	return true, nil
}

// parseAntispoof parses `antispoof [log] [for] IFACES [inet|inet6]
// [label STRING]` and expands it into block rules (Antispoof.expand).
func (p *parser) parseAntispoof(kw token) error {
	a := &Antispoof{Line: kw.line, Col: kw.col}
	if p.file != p.rs.File {
		a.File = p.file
	}
	if t := p.peek(); t.kind == tWord && t.text == "log" {
		p.next()
		a.Log = true
		if t := p.peek(); t.kind == tLParen {
			return p.errAt(t, "'log (...)' options are for pass rules; antispoof takes plain 'log'")
		}
	}
	if t := p.peek(); t.kind == tWord && t.text == "for" {
		p.next()
	}
	p.entries, p.stmt = 0, "'antispoof'"
	es, err := p.parseTerm(nil, defIfaces, "'antispoof for'", false)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.iface.Neg {
			return p.errAt(e.tok, "antispoof needs the interfaces to protect; '!' is not allowed here")
		}
		if e.iface.Name == LoopbackName {
			return p.errAt(e.tok, "antispoof for %s: packets this host sends itself arrive on %s with its own addresses; protect the other interfaces", LoopbackName, LoopbackName)
		}
		a.Ifaces = append(a.Ifaces, e.iface.Name)
	}
	if t := p.peek(); t.kind == tWord && (t.text == "inet" || t.text == "inet6") {
		p.next()
		a.Family = 4
		if t.text == "inet6" {
			a.Family = 6
		}
	}
	if t := p.peek(); t.kind == tWord && t.text == "label" {
		p.next()
		s := p.next()
		if s.kind != tString {
			return p.errAt(s, "expected a quoted string after 'label', got %s", s.describe())
		}
		a.Label = s.text
	}
	if t := p.peek(); t.kind != tEOL {
		return p.errAt(t, "expected 'inet', 'inet6', 'label' or end of line in antispoof, got %s", t.describe())
	}
	p.next()
	if len(p.rs.Rules)+2*len(a.Ifaces) > MaxRules {
		return p.errAt(kw, "too many rules: a file may hold at most %d", MaxRules)
	}
	p.rs.Antispoof = append(p.rs.Antispoof, a)
	a.expand(p.rs)
	return nil
}

func (p *parser) parseProto(r *Rule, fam *famState) error {
	t := p.next()
	if t.kind != tWord {
		return p.errAt(t, "expected protocol name or number after 'proto', got %s", t.describe())
	}
	n, ok := packet.ParseProto(t.text)
	if !ok || n == 0 {
		return p.errAt(t, "expected protocol (tcp, udp, icmp, icmp6, sctp, ... or a number 1-255) after 'proto', got %s", t.describe())
	}
	r.Proto = n
	var need uint8
	switch n {
	case packet.ProtoICMP:
		need = 4
	case packet.ProtoICMPv6:
		need = 6
	}
	if need != 0 {
		if fam.fam != 0 && fam.fam != need {
			other := map[uint8]string{4: "icmp", 6: "icmp6"}[fam.fam]
			return p.errAt(t, "proto %s is %s only, but the rule is %s (from %s): use proto %s", t.text, famName(need), famName(fam.fam), fam.why, other)
		}
		*fam = famState{need, "proto " + t.text}
	}
	return nil
}

// parseEndpoint parses what follows 'from' or 'to': [ADDR] [port PORTS].
func (p *parser) parseEndpoint(r *Rule, fam *famState, kw token) (AddrSpec, PortSpec, error) {
	var as AddrSpec
	var ps PortSpec
	t := p.peek()
	hasAddr := false
	switch {
	case t.kind == tWord && t.text == "any":
		p.next()
		hasAddr = true
	case t.kind == tWord && t.text == "port":
	default:
		es, err := p.parseTerm(nil, defAddrs, "'"+kw.text+"'", false)
		if err != nil {
			return as, ps, err
		}
		hasAddr = true
		var hadPos, keptPos bool
		for _, e := range es {
			if e.addr.Table != "" {
				// A table may hold either family: it pins none.
				if !e.addr.Neg {
					hadPos, keptPos = true, true
				}
				as.Items = append(as.Items, e.addr)
				continue
			}
			f := uint8(6)
			if e.addr.Prefix.Addr().Is4() {
				f = 4
			}
			if !e.addr.Neg {
				hadPos = true
			}
			if fam.fam != 0 && f != fam.fam {
				if e.fromVar {
					continue // pf-style: a define's other-family items do not apply
				}
				return as, ps, p.errAt(e.tok, "%s address %s in a rule that is %s (from %s)", famName(f), e.tok.text, famName(fam.fam), fam.why)
			}
			if !e.addr.Neg {
				keptPos = true
			}
			as.Items = append(as.Items, e.addr)
		}
		if hadPos && !keptPos {
			return as, ps, p.errAt(t, "%s holds no %s address, and the rule is %s (from %s)", t.describe(), famName(fam.fam), famName(fam.fam), fam.why)
		}
		if f := as.family(); f != 0 && fam.fam == 0 {
			*fam = famState{f, "the '" + kw.text + "' address"}
		}
	}
	if t := p.peek(); t.kind == tWord && t.text == "port" {
		p.next()
		if r.Proto == 0 {
			return as, ps, p.errAt(t, "'port' needs 'proto tcp', 'proto udp' or 'proto sctp' before it (as in pf, ports are only matched for a named protocol)")
		}
		if !r.Proto.HasPorts() {
			return as, ps, p.errAt(t, "proto %s has no ports", r.Proto.String())
		}
		es, err := p.parseTerm(nil, defPorts, "'port'", false)
		if err != nil {
			return as, ps, err
		}
		for _, e := range es {
			ps.Items = append(ps.Items, e.port)
		}
	} else if !hasAddr {
		return as, ps, p.errAt(t, "expected address or 'port' after '%s', got %s", kw.text, t.describe())
	}
	return as, ps, nil
}

const flagLetters = "FSRPAUEW" // bit i is TCPFin << i

func parseFlagLetters(s string) (uint8, int) {
	var f uint8
	for i := 0; i < len(s); i++ {
		j := strings.IndexByte(flagLetters, s[i])
		if j < 0 {
			return 0, i
		}
		f |= 1 << j
	}
	return f, -1
}

func (p *parser) parseFlags(r *Rule, kw token) error {
	if r.Proto != 6 {
		return p.errAt(kw, "'flags' needs 'proto tcp' before it")
	}
	t := p.next()
	if t.kind != tWord {
		return p.errAt(t, "expected flags such as S/SA after 'flags', got %s", t.describe())
	}
	if t.text == "any" {
		// Any flags: matches every TCP packet, and in stateful mode lets a
		// pass rule pick connections up mid-stream (see MatchNew).
		r.Flags, r.FlagsMask, r.HasFlags = 0, 0, true
		return nil
	}
	setS, maskS, hasMask := strings.Cut(t.text, "/")
	set, bad := parseFlagLetters(setS)
	if bad < 0 && hasMask {
		var b int
		r.FlagsMask, b = parseFlagLetters(maskS)
		if b >= 0 {
			bad = len(setS) + 1 + b
		}
	} else if bad < 0 {
		r.FlagsMask = 0xff // `flags S` means exactly S: the mask is every flag
	}
	if bad >= 0 {
		return p.errAt(t, "unknown TCP flag %q in %q: flags are F S R P A U E W", t.text[bad], t.text)
	}
	if r.FlagsMask == 0 {
		return p.errAt(t, "empty mask in flags %q", t.text)
	}
	if set&^r.FlagsMask != 0 {
		return p.errAt(t, "flags %s can never match: %s is not in the mask %s", t.text, formatFlags(set&^r.FlagsMask), maskS)
	}
	r.Flags, r.HasFlags = set, true
	return nil
}

func (p *parser) parseICMP(r *Rule, kw token) error {
	var tab []named
	switch r.Proto {
	case 1:
		tab = icmp4Names
	case 58:
		tab = icmp6Names
	default:
		return p.errAt(kw, "'%s' needs 'proto icmp' or 'proto icmp6' before it", kw.text)
	}
	t := p.next()
	if t.kind != tWord {
		return p.errAt(t, "expected ICMP type name or number after '%s', got %s", kw.text, t.describe())
	}
	n, ok := lookupName(tab, t.text)
	if !ok {
		v, err := strconv.ParseUint(t.text, 10, 8)
		if err != nil {
			return p.errAt(t, "expected %s type name (echo-request, echo-reply, dest-unreach, ...) or number 0-255 after '%s', got %s", r.Proto.String(), kw.text, t.describe())
		}
		n = uint8(v)
	}
	r.ICMPType, r.HasICMPType = n, true
	if c := p.peek(); c.kind == tWord && c.text == "code" {
		p.next()
		v := p.next()
		n, err := strconv.ParseUint(v.text, 10, 8)
		if v.kind != tWord || err != nil {
			return p.errAt(v, "expected ICMP code 0-255 after 'code', got %s", v.describe())
		}
		r.ICMPCode, r.HasICMPCode = uint8(n), true
	}
	return nil
}
