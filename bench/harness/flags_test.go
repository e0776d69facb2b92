package harness

import (
	"slices"
	"testing"

	"github.com/statewall/statewall/bench/trafficgen"
)

func TestParseCounts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"1000", []int{1000}, true},
		{"1k,100k,1M", []int{1000, 100000, 1000000}, true},
		{"10, 2k", []int{10, 2000}, true},
		{"0", nil, false},
		{"-1k", nil, false},
		{"1q", nil, false},
		{"1k,", nil, false},
	} {
		got, err := ParseCounts(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCounts(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseAttacks(t *testing.T) {
	a, err := ParseAttacks("ack-scan=5,fin-scan=6, out-of-window=7,syn-flood=20")
	if err != nil || a != (trafficgen.Attacks{ACKScan: 5, FINScan: 6, OutOfWindow: 7, SYNFlood: 20}) {
		t.Errorf("got %+v, %v", a, err)
	}
	for _, bad := range []string{"ack-scan", "ack-scan=x", "ack-scan=-1", "xmas=5"} {
		if _, err := ParseAttacks(bad); err == nil {
			t.Errorf("ParseAttacks(%q): no error", bad)
		}
	}
}
