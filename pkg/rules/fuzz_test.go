package rules

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fuzzPackets are matched against every ruleset the fuzzer parses: the
// compiled matcher must agree with the reference semantics.
var fuzzPackets = []string{
	"tcp 198.18.0.1:1234 > 198.18.0.2:80 S",
	"tcp 198.18.0.2:443 > 198.18.0.1:50000 A",
	"udp 198.18.0.2:40000 > 198.18.0.53:53",
	"udp 198.18.0.2 > 198.18.0.53 frag=1480",
	"icmp 198.18.0.9 > 198.18.0.2 type=8",
	"icmp 198.18.0.9 > 198.18.0.2 type=3 code=4",
	"tcp [fd00:198:18::9]:40000 > [fd00:198:18::2]:22 SA",
	"icmp6 fd00:198:18::1 > fd00:198:18::2 type=135",
	"gre 198.18.0.1 > 198.18.1.2",
}

// FuzzParse checks that Parse never panics, that its errors are *Error with
// a position inside the text, and that a ruleset it accepts prints to text
// that parses back to the same ruleset (and prints the same again).
func FuzzParse(f *testing.F) {
	for _, s := range roundTripTests {
		f.Add([]byte(s))
	}
	for _, tt := range parseErrorTests {
		f.Add([]byte(tt.src))
	}
	for _, tt := range matchTests {
		f.Add([]byte(tt.rules))
	}
	files, _ := filepath.Glob("../../rules/*.rules")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	pkts := make([]struct {
		p   string
		dir Dir
	}, 0, len(fuzzPackets)*3)
	for _, s := range fuzzPackets {
		for d := DirUnknown; d <= DirOut; d++ {
			pkts = append(pkts, struct {
				p   string
				dir Dir
			}{s, d})
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		rs, err := Parse("fuzz.rules", src)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			lines := bytes.Count(src, []byte("\n")) + 1
			if perr.Line < 1 || perr.Line > lines || perr.Col < 1 {
				t.Fatalf("error position %d:%d outside the text (%d lines): %v", perr.Line, perr.Col, lines, err)
			}
			return
		}
		roundTrip(t, rs)
		for _, tp := range pkts {
			p := pkt(tp.p)
			if got, want := rs.Match(p, tp.dir), refMatch(rs, p, tp.dir); got != want {
				t.Fatalf("%s (%v): Match = %v, reference = %v\n%s", tp.p, tp.dir, got, want, rs)
			}
		}
	})
}
