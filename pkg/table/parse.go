package table

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Bounds on what Parse reads, so that a hostile or mistaken file cannot
// exhaust memory or time. The result costs 32 bytes an entry while it
// lives (a netip.Prefix), so MaxEntries bounds it at 128 MiB.
const (
	// MaxEntries is the most entries one file or argument list may hold,
	// the same as DefaultLimit.
	MaxEntries = DefaultLimit
	// MaxLineBytes is the longest line, comment included.
	MaxLineBytes = 4096
	// MaxFileBytes is the largest file: room for MaxEntries of the
	// longest IPv6 prefixes with a comment of 80 bytes each.
	MaxFileBytes = 512 << 20
)

// ParseError is a bad line in a table file.
type ParseError struct {
	File string
	Line int // 1-based; 0 when the error is about the whole file
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// ParseFile reads a table file (see Parse).
func ParseFile(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse reads a table file from r; name is the file name its errors
// carry. The format is one address or prefix a line; `#` starts a
// comment, to the end of the line; blank lines and whitespace around an
// entry are ignored. A single address is a /32 or a /128, a prefix is
// masked (198.18.0.5/24 is 198.18.0.0/24). Zones, IPv4-mapped IPv6
// addresses, host names and several entries on one line are refused. The
// first bad line ends the parse with a *ParseError: `PATH:LINE: what`.
//
// The result takes 32 bytes an entry; Load builds a table from a file
// without it.
func Parse(name string, r io.Reader) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	err := scan(name, r, func(p netip.Prefix) { ps = append(ps, p) })
	if err != nil {
		return nil, err
	}
	return ps, nil
}

// LoadFile makes a table with cfg from a table file (see Load).
func LoadFile(cfg Config, path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Load(cfg, path, f)
}

// Load makes a table with cfg from a table file read from r, as New does
// from what Parse returns, without the parsed slice: each entry goes into
// the build as it is read, as a key of 4 to 16 bytes. A 1M-line file
// (bench/results/table.md's mix) loads with a peak of 19 MiB for a table
// that keeps 17.5; Parse's slice alone is 33 MiB. A bad line is a
// *ParseError, too many entries an *Error (ErrLimit).
func Load(cfg Config, name string, r io.Reader) (*Table, error) {
	if cfg.Limit < 0 {
		return nil, &Error{Table: cfg.Name, Err: ErrInvalid, Msg: fmt.Sprintf("limit %d is negative", cfg.Limit)}
	}
	b := new(batch)
	if err := scan(name, r, b.add); err != nil {
		return nil, err
	}
	t := &Table{cfg: cfg}
	v := b.version()
	if err := t.checkSize(v.len()); err != nil {
		return nil, err
	}
	t.cur.Store(v)
	return t, nil
}

// scan reads a table file from r and hands each entry, valid and masked,
// to add (see Parse).
func scan(name string, r io.Reader, add func(netip.Prefix)) error {
	lr := &io.LimitedReader{R: r, N: MaxFileBytes + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	line, n := 0, 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := parseEntry(s)
		if err != nil {
			return &ParseError{File: name, Line: line, Msg: err.Error()}
		}
		if n == MaxEntries {
			return &ParseError{File: name, Line: line, Msg: fmt.Sprintf("more than %d entries", MaxEntries)}
		}
		n++
		add(p)
	}
	if lr.N <= 0 {
		return &ParseError{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxFileBytes)}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &ParseError{File: name, Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes", MaxLineBytes)}
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ParseAddrs parses the addresses and prefixes of a command line, with
// the rules of Parse. The error names the first bad argument.
func ParseAddrs(args []string) ([]netip.Prefix, error) {
	if len(args) > MaxEntries {
		return nil, fmt.Errorf("more than %d addresses", MaxEntries)
	}
	ps := make([]netip.Prefix, 0, len(args))
	for _, a := range args {
		p, err := parseEntry(strings.TrimSpace(a))
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// parseEntry parses one address or prefix, already trimmed.
func parseEntry(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return p, badEntry(s)
		}
		p = p.Masked()
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, badEntry(s)
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("%q has a zone; table entries cannot", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	// An IPv4-mapped entry is IPv6 to netip and so to Contains: it would
	// never match the IPv4 packet its writer meant. Say so instead.
	if a := p.Addr(); a.Is4In6() {
		v4 := netip.PrefixFrom(a.Unmap(), p.Bits()-96).String()
		if p.IsSingleIP() {
			v4 = a.Unmap().String()
		}
		return netip.Prefix{}, fmt.Errorf("%q is IPv4-mapped IPv6 and never matches an IPv4 packet; write %s", s, v4)
	}
	return p, nil
}

func badEntry(s string) error {
	if strings.Contains(s, "%") {
		return fmt.Errorf("%q has a zone; table entries cannot", s)
	}
	return fmt.Errorf("%q is not an address or prefix", s)
}
