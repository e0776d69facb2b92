package trafficgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// statefulPassAll is the stateful engine over rules/default-pass.rules:
// every new connection is committed, invalid packets pass too, so the ct
// label of every packet can be read off.
func statefulPassAll(t *testing.T) *engine.Stateful {
	t.Helper()
	rs, err := rules.ParseFile("../../rules/default-pass.rules")
	if err != nil {
		t.Fatal(err)
	}
	ct := conntrack.New(conntrack.Config{Timeouts: rs.Timeouts, Limit: rs.LimitStates, Seed: 1})
	return engine.NewStateful(rs, ct)
}

func mustNew(t testing.TB, cfg Config) *Generator {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// inRanges reports whether a is in the benchmarking ranges.
func inRanges(a netip.Addr) bool {
	return netip.MustParsePrefix("198.18.0.0/15").Contains(a) || netip.MustParsePrefix("fd00:198:18::/64").Contains(a)
}

// ipv4HeaderOK verifies the IPv4 header checksum (the decoder does not).
func ipv4HeaderOK(b []byte) bool {
	return fold(sum(b[:20], 0)) == 0xffff
}

// replayThrough runs n packets of g through a stateful engine and checks
// every packet against its role: decodes, checksums right, addresses in
// range, the ct label the role expects. It returns the packets per role.
func replayThrough(t *testing.T, g *Generator, n int) (roles [numRoles]int, kinds map[string]int) {
	t.Helper()
	e := statefulPassAll(t)
	kinds = map[string]int{}
	buf := make([]byte, MaxLen)
	var p packet.Packet
	last := int64(0)
	bad := 0
	for i := range n {
		gp := g.Next(buf)
		if gp.Time <= last {
			t.Fatalf("packet %d: time %d not after %d", i, gp.Time, last)
		}
		last = gp.Time
		p.Decode(gp.Data, packet.LinkIP)
		if p.Kind != packet.KindOK || p.L4Off == 0 || p.IPLen != len(gp.Data) {
			t.Fatalf("packet %d (%v): decodes as %v, L4Off %d, IP length %d of %d bytes", i, gp.Role, p.Kind, p.L4Off, p.IPLen, len(gp.Data))
		}
		if !p.L4ChecksumOK() || (p.IPVersion == 4 && !ipv4HeaderOK(gp.Data)) {
			t.Fatalf("packet %d (%v %v > %v): bad checksum", i, gp.Role, p.Src, p.Dst)
		}
		if !inRanges(p.Src) || !inRanges(p.Dst) {
			t.Fatalf("packet %d: %v > %v outside the benchmarking ranges", i, p.Src, p.Dst)
		}
		d := e.Decide(&p, rules.DirUnknown, gp.Time)
		if got, want := d.Label(), gp.Role.Expect(); got != want {
			if bad++; bad <= 10 {
				t.Errorf("packet %d (%v, %s %v:%d > %v:%d %s seq %d ack %d len %d): ct %s (%s), want %s",
					i, gp.Role, kindName(p.Proto), p.Src, p.SrcPort, p.Dst, p.DstPort, packet.TCPFlagsString(p.TCPFlags), p.Seq, p.Ack, p.PayloadLen, got, d.Reason(), want)
			}
		}
		roles[gp.Role]++
		if gp.Role == Open {
			kinds[kindName(p.Proto)+map[bool]string{false: "4", true: "6"}[p.IPVersion == 6]]++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d packets labelled other than their role says", bad, n)
	}
	return roles, kinds
}

// kindName groups a protocol with its kind of session: ICMP and ICMPv6
// are both "icmp" (the family tells them apart).
func kindName(p packet.Proto) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return "icmp"
	}
	return "?"
}

// TestCleanSessionsLabels: generated sessions, replayed through the
// stateful engine, are labelled as a host's traffic is: the first packet of
// every session new, everything else established, nothing invalid; and
// sessions of every kind end and start again on their slots.
func TestCleanSessionsLabels(t *testing.T) {
	for _, flows := range []int{1, 300} {
		g := mustNew(t, Config{Seed: 42, Flows: flows})
		roles, kinds := replayThrough(t, g, 20000+flows*100)
		if roles[Open] <= flows || roles[Flow] == 0 {
			t.Errorf("flows=%d: roles %v: want sessions to end and start again", flows, roles)
		}
		if flows > 1 {
			for _, k := range []string{"tcp4", "tcp6", "udp4", "udp6", "icmp4", "icmp6"} {
				if kinds[k] == 0 {
					t.Errorf("flows=%d: no %s session in %v", flows, k, kinds)
				}
			}
		}
		t.Logf("flows=%d: roles %v, sessions %v", flows, roles, kinds)
	}
}

// TestAttackLabels: each kind of attack packet gets the label it is
// designed for (ACK scan and SYN flood new, FIN scan and out-of-window
// invalid), and the sessions out-of-window packets are aimed at carry on
// as established.
func TestAttackLabels(t *testing.T) {
	g := mustNew(t, Config{Seed: 7, Flows: 200, Attacks: Attacks{ACKScan: 20, FINScan: 20, OutOfWindow: 40, SYNFlood: 40}})
	roles, _ := replayThrough(t, g, 40000)
	for r := ACKScan; r < numRoles; r++ {
		if roles[r] == 0 {
			t.Errorf("no %v packet in %v", r, roles)
		}
	}
	t.Logf("roles %v", roles)
}

// TestIPv4Only: Mix.IPv6 0 with weights set means no IPv6 at all.
func TestMixIPv4Only(t *testing.T) {
	g := mustNew(t, Config{Flows: 50, Mix: Mix{TCP: 1, UDP: 1}, Attacks: Attacks{SYNFlood: 100}})
	buf := make([]byte, MaxLen)
	for i := range 5000 {
		p := g.Next(buf)
		if p.Data[0]>>4 != 4 || p.Data[9] == protoICMP {
			t.Fatalf("packet %d: version %d proto %d, want IPv4 TCP or UDP", i, p.Data[0]>>4, p.Data[9])
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 3, Flows: 100, Attacks: Attacks{ACKScan: 10, FINScan: 10, OutOfWindow: 10, SYNFlood: 10}}
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	cfg.Seed = 4
	c := mustNew(t, cfg)
	ba, bb, bc := make([]byte, MaxLen), make([]byte, MaxLen), make([]byte, MaxLen)
	differ := 0
	for i := range 20000 {
		pa, pb, pc := a.Next(ba), b.Next(bb), c.Next(bc)
		if !bytes.Equal(pa.Data, pb.Data) || pa.Time != pb.Time || pa.Role != pb.Role {
			t.Fatalf("packet %d differs between two generators with the same seed", i)
		}
		if !bytes.Equal(pa.Data, pc.Data) {
			differ++
		}
	}
	if differ < 19000 {
		t.Errorf("seeds 3 and 4: only %d of 20000 packets differ", differ)
	}
	// Fill gives the same stream as Next.
	d, e := mustNew(t, cfg), mustNew(t, cfg)
	var batch Batch
	d.Fill(&batch, 3000)
	for i := range batch.Len() {
		p := e.Next(ba)
		if !bytes.Equal(batch.At(i), p.Data) || batch.Time[i] != p.Time || batch.Role[i] != p.Role {
			t.Fatalf("Fill packet %d differs from Next", i)
		}
	}
}

// TestNoAllocs: generating is allocation-free, so it cannot disturb the
// allocation counts of what it feeds.
func TestNoAllocs(t *testing.T) {
	g := mustNew(t, Config{Flows: 1000, Attacks: Attacks{ACKScan: 10, FINScan: 10, OutOfWindow: 10, SYNFlood: 10}})
	buf := make([]byte, MaxLen)
	if n := testing.AllocsPerRun(5000, func() { g.Next(buf) }); n != 0 {
		t.Errorf("Next: %v allocations, want 0", n)
	}
	var b Batch
	g.Fill(&b, 512)
	if n := testing.AllocsPerRun(20, func() { g.Fill(&b, 512) }); n != 0 {
		t.Errorf("Fill into a reused batch: %v allocations, want 0", n)
	}
}

func TestFlowStateSize(t *testing.T) {
	// The doc promises 32 bytes per flow (1M flows in 32 MB).
	g := mustNew(t, Config{Flows: 1})
	if got := int(binary.Size(g.flows[0])); got != 32 {
		t.Errorf("flow state is %d bytes, want 32", got)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Flows: -1},
		{Flows: MaxFlows + 1},
		{Mix: Mix{IPv6: 50}},
		{Mix: Mix{TCP: 1, IPv6: 101}},
		{Attacks: Attacks{SYNFlood: 1001}},
		{Attacks: Attacks{ACKScan: -1}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

// TestPcapReplays writes a pcap and replays it with pkg/replay, as
// `statewall replay` would: the same packets, and no conntrack invalid.
func TestPcapReplays(t *testing.T) {
	cfg := Config{Seed: 9, Flows: 100}
	path := filepath.Join(t.TempDir(), "gen.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(f, mustNew(t, cfg), 5000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != 101 {
		t.Errorf("link type %v, want raw (101)", r.LinkType())
	}
	g := mustNew(t, cfg)
	buf := make([]byte, MaxLen)
	for i := range 5000 {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		p := g.Next(buf)
		if !bytes.Equal(data, p.Data) || ci.Timestamp.UnixNano() != p.Time {
			t.Fatalf("packet %d differs from the generator's", i)
		}
	}

	rs, err := rules.ParseFile("../../rules/default-pass.rules")
	if err != nil {
		t.Fatal(err)
	}
	rp, err := replay.New(replay.Config{Rules: rs, Mode: replay.Stateful})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]int{}
	if err := rp.ReplayFile(path, func(rec *replay.Record) error {
		labels[rec.Stateful.Label()]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if labels["invalid"] != 0 || labels["new"] == 0 || labels["established"] == 0 || labels["new"]+labels["established"] != 5000 {
		t.Errorf("replayed labels %v, want only new and established", labels)
	}
}

// BenchmarkNext is the cost of making one packet (the average of the
// default mix: mostly full-size TCP segments, whose checksum dominates).
func BenchmarkNext(b *testing.B) {
	for _, flows := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("flows=%d", flows), func(b *testing.B) {
			g := mustNew(b, Config{Flows: flows})
			buf := make([]byte, MaxLen)
			var bytes int64
			b.ReportAllocs()
			for b.Loop() {
				bytes += int64(len(g.Next(buf).Data))
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "B/packet")
		})
	}
}
