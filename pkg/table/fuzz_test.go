package table

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; an error is a *ParseError at a line of
// the input; every accepted entry is masked, not IPv4-mapped, and its
// text parses back to itself, alone or within a file.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"198.18.0.1\n198.18.1.0/24 # c\n",
		"fd00:198:18::1\nfd00:198:18::/64\n",
		"  198.18.2.77/24\t\n\n# only\n",
		"198.18.0.300\n",
		"fe80::1%eth0\n",
		"::ffff:198.18.0.1\n",
		"198.18.0.1 198.18.0.2\n",
		"\r\n#\r\n198.18.0.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ps, err := Parse("f", bytes.NewReader(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "f" || pe.Line < 1 || pe.Line > bytes.Count(in, []byte("\n"))+1 {
				t.Fatalf("error %v is not a *ParseError at a line of the input", err)
			}
			return
		}
		var text strings.Builder
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("accepted %v: not a valid, masked, unmapped, zoneless prefix", p)
			}
			back, err := ParseAddrs([]string{p.String()})
			if err != nil || len(back) != 1 || back[0] != p {
				t.Fatalf("%s does not round-trip: %v, %v", p, back, err)
			}
			text.WriteString(p.String() + "\n")
		}
		again, err := Parse("f2", strings.NewReader(text.String()))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("the accepted entries written out do not parse again: %v", err)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("entry %d: %s became %s", i, ps[i], again[i])
			}
		}
		// Whatever Parse accepts, a table takes.
		if _, err := New(Config{}, ps); err != nil {
			t.Fatalf("New refused parsed entries: %v", err)
		}
	})
}

// FuzzParseAddrs: one argument is accepted exactly when the same text as
// a file line is, and to the same prefix.
func FuzzParseAddrs(f *testing.F) {
	for _, s := range []string{"198.18.0.1", "198.18.0.5/24", "fd00:198:18::/64", "x", "::ffff:1.2.3.4", "1.2.3.4%z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, "#\n\r") {
			return // a comment or a line break means something else in a file
		}
		a, errA := ParseAddrs([]string{s})
		p, errP := Parse("f", strings.NewReader(s))
		if strings.TrimSpace(s) == "" {
			return // a blank line is fine, a blank argument is not
		}
		if (errA == nil) != (errP == nil) || errA == nil && (len(p) != 1 || a[0] != p[0]) {
			t.Fatalf("%q: ParseAddrs %v, %v; Parse %v, %v", s, a, errA, p, errP)
		}
	})
}
