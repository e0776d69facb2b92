package engine_test

import (
	"flag"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

var benchRules = flag.String("bench-rules", "@webserver.rules", "rules for the benchmarks: @NAME for rules/NAME, or a rules file path")

// benchRuleset is the ruleset the benchmarks run: -rules takes any rules
// file, so the cost of a real ruleset can be measured.
func benchRuleset(b testing.TB) *rules.Ruleset {
	b.Helper()
	if r := *benchRules; len(r) > 0 && r[0] != '@' {
		rs, err := rules.ParseFile(r)
		if err != nil {
			b.Fatal(err)
		}
		return rs
	}
	return ruleset(b, *benchRules)
}

// A connection to the web server, set up in the conntrack table, and the
// packets that follow it; with webserver.rules (set local 198.18.0.2).
var (
	openConn = []string{
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000",
		"tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001",
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001",
		"udp 198.18.0.2:33333 > 192.0.2.53:53 len=30",
		"icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1",
	}
	established = []struct{ name, line string }{
		{"tcp-ack-in", "tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001"},
		{"tcp-reply-out", "tcp 198.18.0.2:80 > 198.18.0.1:40000 A seq=5001 ack=1001"},
		{"udp-reply-in", "udp 192.0.2.53:53 > 198.18.0.2:33333 len=60"},
		{"icmp-echo-reply-out", "icmp 198.18.0.2 > 198.18.0.1 type=0 id=7 seq=1"},
	}
	// Packets the stateless engine judges alone: matched by a rule, by
	// the default, and one that does not decode.
	statelessPackets = []struct{ name, line string }{
		{"tcp-syn-in-rule", "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000"},
		{"tcp-reply-out-default", "tcp 198.18.0.2:80 > 198.18.0.1:40000 A seq=5001 ack=1001"},
		{"udp-dns-out-rule", "udp 198.18.0.2:33333 > 192.0.2.53:53 len=30"},
		{"icmp6-echo-default", "icmp6 fd00:198:18::1 > fd00:198:18::2 type=128 id=3 seq=1"},
		{"tcp-truncated", "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 cut=30"},
	}
)

// setup returns engines over rs with the connection of openConn in the
// table.
func setup(t testing.TB, rs *rules.Ruleset, now int64) (*engine.Stateless, *engine.Stateful) {
	t.Helper()
	sl := engine.NewStateless(rs)
	st := engine.NewStateful(rs, newTable(rs))
	for _, line := range openConn {
		p := pkt(t, line)
		st.Decide(p, dirOf(rs, p), now)
	}
	return sl, st
}

func TestNoAllocs(t *testing.T) {
	rs := ruleset(t, "@webserver.rules")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	sl, st := setup(t, rs, now)
	for _, tc := range established {
		p := pkt(t, tc.line)
		dir := dirOf(rs, p)
		// The packet must really be one of the known connection.
		if d := st.Decide(p, dir, now); d.Verdict != engine.Pass || d.Label() != "established" {
			t.Fatalf("%s: %s (ct %s), want an established packet", tc.name, verdict(d), d.Label())
		}
		if n := testing.AllocsPerRun(100, func() { st.Decide(p, dir, now) }); n != 0 {
			t.Errorf("Stateful.Decide(%s): %v allocations", tc.name, n)
		}
		if n := testing.AllocsPerRun(100, func() { sl.Decide(p, dir) }); n != 0 {
			t.Errorf("Stateless.Decide(%s): %v allocations", tc.name, n)
		}
		// Decoding into a reused Packet, as a worker does, and deciding.
		data := p.Data
		var q packet.Packet
		var d engine.Decision
		if n := testing.AllocsPerRun(100, func() {
			q.Decode(data, packet.LinkIP)
			st.DecideInto(&d, &q, dir, now)
			sl.DecideInto(&d, &q, dir)
		}); n != 0 {
			t.Errorf("decode and decide (%s): %v allocations", tc.name, n)
		}
		// In a batch, as replay decides.
		qs := make([]packet.Packet, 1)
		var b conntrack.Batch
		if n := testing.AllocsPerRun(100, func() {
			qs[0].Decode(data, packet.LinkIP)
			st.PrefetchBatch(&b, qs)
			st.DecideBatch(&d, &b, 0, rules.Where{Dir: dir}, now)
		}); n != 0 {
			t.Errorf("decide in a batch (%s): %v allocations", tc.name, n)
		}
	}
	for _, tc := range statelessPackets {
		p := pkt(t, tc.line)
		dir := dirOf(rs, p)
		if n := testing.AllocsPerRun(100, func() { sl.Decide(p, dir) }); n != 0 {
			t.Errorf("Stateless.Decide(%s): %v allocations", tc.name, n)
		}
	}
}

// BenchmarkStateless: decode and judge one packet alone.
func BenchmarkStateless(b *testing.B) {
	rs := benchRuleset(b)
	sl := engine.NewStateless(rs)
	for _, tc := range statelessPackets {
		b.Run(tc.name, func(b *testing.B) {
			data := pkt(b, tc.line).Data
			var p packet.Packet
			p.Decode(data, packet.LinkIP)
			dir := dirOf(rs, &p)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var d engine.Decision
			for b.Loop() {
				p.Decode(data, packet.LinkIP)
				sl.DecideInto(&d, &p, dir)
			}
		})
	}
}

// BenchmarkStatefulEstablished: decode and decide a packet of a connection
// in the table: the hot path of a firewall under load.
func BenchmarkStatefulEstablished(b *testing.B) {
	rs := benchRuleset(b)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	_, st := setup(b, rs, now)
	for _, tc := range established {
		b.Run(tc.name, func(b *testing.B) {
			data := pkt(b, tc.line).Data
			var p packet.Packet
			p.Decode(data, packet.LinkIP)
			dir := dirOf(rs, &p)
			if d := st.Decide(&p, dir, now); d.Label() != "established" {
				b.Skipf("with these rules the packet is %s, not established", d.Label())
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var d engine.Decision
			for b.Loop() {
				p.Decode(data, packet.LinkIP)
				st.DecideInto(&d, &p, dir, now)
			}
		})
	}
}
