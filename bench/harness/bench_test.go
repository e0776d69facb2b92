package harness

import (
	"fmt"
	"testing"

	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/rules"
)

// benchLoop runs configuration config of a Loop as a Go benchmark, one
// packet an op, and reports the connection table it warmed.
func benchLoop(b *testing.B, config string, rs *rules.Ruleset, flows int) {
	l, err := NewLoop(config, rs, trafficgen.Config{Seed: 1, Flows: flows}, 20, 1024)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if l.Empty() {
			b.StopTimer()
			l.Refill()
			b.StartTimer()
		}
		l.Step()
	}
	if l.CTEntries > 0 {
		b.ReportMetric(float64(l.CTEntries), "ct-entries")
		b.ReportMetric(l.BytesPerConn, "B/conn")
	}
}

func serverRules(b *testing.B) *rules.Ruleset {
	rs, err := rules.ParseFile("../../bench/server.rules")
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

// BenchmarkConnections is decode + stateful end to end (and stateless, its
// reference) on generated traffic with 1k, 100k and 1M live connections,
// under bench/server.rules: the connections chart of `make bench` as a Go
// benchmark. The 1M case warms its table with 20M packets first (about 20 s).
//
//	go test -run NONE -bench Connections -benchtime 2000000x ./bench/harness/
func BenchmarkConnections(b *testing.B) {
	rs := serverRules(b)
	for _, n := range []int{1000, 100000, 1000000} {
		for _, c := range []string{Stateless, Stateful} {
			b.Run(fmt.Sprintf("conns=%s/%s", Count(n), c), func(b *testing.B) {
				benchLoop(b, c, rs, n)
			})
		}
	}
}

// BenchmarkRules is stateless and stateful end to end on generated
// rulesets (GenerateRules) of 10 to 10,000 rules and 10k flows. The
// matcher alone is pkg/rules' BenchmarkMatchScale (index against linear
// scan, same sizes).
func BenchmarkRules(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		rs, err := rules.Parse("generated.rules", []byte(GenerateRules(n, 1)))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []string{Stateless, Stateful} {
			b.Run(fmt.Sprintf("rules=%d/%s", n, c), func(b *testing.B) {
				benchLoop(b, c, rs, 10000)
			})
		}
	}
}
