package harness

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/statewall/statewall/bench/trafficgen"
)

// ParseCount parses a count as the bench command takes it: 1000, 1k, 1M.
func ParseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"):
		s, mult = strings.TrimSuffix(s, "k"), 1000
	case strings.HasSuffix(s, "M"):
		s, mult = strings.TrimSuffix(s, "M"), 1000000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive count like 1000, 1k or 1M, got %q", s)
	}
	return n * mult, nil
}

// ParseCounts parses a comma-separated list of counts; "" is none.
func ParseCounts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := ParseCount(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseAttacks parses an attack mix, per 1000 packets:
// "ack-scan=5,fin-scan=5,out-of-window=5,syn-flood=20"; "" is none.
func ParseAttacks(s string) (trafficgen.Attacks, error) {
	var a trafficgen.Attacks
	if s == "" {
		return a, nil
	}
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return a, fmt.Errorf("want NAME=PER-THOUSAND, got %q", f)
		}
		switch k {
		case "ack-scan":
			a.ACKScan = n
		case "fin-scan":
			a.FINScan = n
		case "out-of-window":
			a.OutOfWindow = n
		case "syn-flood":
			a.SYNFlood = n
		default:
			return a, fmt.Errorf("unknown attack %q (want ack-scan, fin-scan, out-of-window or syn-flood)", k)
		}
	}
	return a, nil
}
