package replay_test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// ifPacket is one UDP packet of a test capture and the interface it is
// captured on (an index into the capture's interfaces).
type ifPacket struct {
	iface      int
	src, dst   string
	sport, dpt uint16
}

var ifStart = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// writeNamedNg writes a pcapng whose Ethernet interfaces have these names
// ("" leaves the IDB without a name), the packets 1 ms apart.
func writeNamedNg(t *testing.T, names []string, pkts []ifPacket) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: names[0], LinkType: layers.LinkTypeEthernet}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{Name: n, LinkType: layers.LinkTypeEthernet}); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range pkts {
		data := udpFrame(t, netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst), p.sport, p.dpt)
		ci := gopacket.CaptureInfo{Timestamp: ifStart.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data), InterfaceIndex: p.iface}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ifaces.pcapng")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeUDPPcap writes the packets (their iface ignored) as an Ethernet pcap.
func writeUDPPcap(t *testing.T, pkts []ifPacket) string {
	t.Helper()
	var raw []rawPacket
	for i, p := range pkts {
		data := udpFrame(t, netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst), p.sport, p.dpt)
		raw = append(raw, rawPacket{gopacket.CaptureInfo{Timestamp: ifStart.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}, data})
	}
	return writePcap(t, t.TempDir(), "udp.pcap", layers.LinkTypeEthernet, raw)
}

// verdictLine is a record's interfaces and both verdicts with their rule
// numbers, for comparing with a table's expectations.
func verdictLine(r *replay.Record) string {
	d := func(d engine.Decision) string {
		s := d.Verdict.String()
		if d.Rule != nil {
			s += " " + d.Rule.Label
		}
		return s
	}
	return "in=" + r.In + " out=" + r.Out + " | " + d(r.Stateless) + " | " + d(r.Stateful)
}

func checkVerdicts(t *testing.T, recs []replay.Record, want []string) {
	t.Helper()
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i := range recs {
		if got := verdictLine(&recs[i]); got != want[i] {
			t.Errorf("packet %d (%v > %v):\n got %s\nwant %s", i, recs[i].Src, recs[i].Dst, got, want[i])
		}
	}
}

// TestPcapngInterfaceNames: each packet of a pcapng is decided on the
// interface its IDB names, and the record says which.
func TestPcapngInterfaceNames(t *testing.T) {
	rs := parseRules(t, `
set default pass
set local 198.18.0.1
pass in on lan0 proto udp label "lan"
block in on wan0 proto udp label "wan"
`)
	ng := writeNamedNg(t, []string{"lan0", "wan0"}, []ifPacket{
		{0, "198.18.1.2", "198.18.0.1", 1000, 53},
		{1, "198.18.2.2", "198.18.0.1", 1000, 53},
		{0, "198.18.1.3", "198.18.0.1", 1001, 53},
		{1, "198.18.0.1", "198.18.2.2", 53, 1000}, // outbound on wan0: no in rule
	})
	recs := replayAll(t, replay.Config{Rules: rs}, ng)
	checkVerdicts(t, recs, []string{
		"in=lan0 out= | pass lan | pass lan",
		"in=wan0 out= | block wan | block wan",
		"in=lan0 out= | pass lan | pass lan",
		"in= out=wan0 | pass | pass",
	})
}

// TestPcapngUnnamedInterface: an IDB without a name takes Config.Iface's;
// a named one keeps its own.
func TestPcapngUnnamedInterface(t *testing.T) {
	rs := parseRules(t, `
set local 198.18.0.1
pass in on lan0 proto udp label "lan"
`)
	ng := writeNamedNg(t, []string{"", "wan0"}, []ifPacket{
		{0, "198.18.1.2", "198.18.0.1", 1000, 53},
		{1, "198.18.1.2", "198.18.0.1", 1001, 53},
	})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Mode: replay.Stateless}, ng), []string{
		"in= out= | block | block",
		"in=wan0 out= | block | block",
	})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Mode: replay.Stateless, Iface: "lan0"}, ng), []string{
		"in=lan0 out= | pass lan | block",
		"in=wan0 out= | block | block",
	})
}

// TestIfaceNamesPcapInterface: a pcap has no interfaces; Config.Iface
// names the one its packets are seen on, inbound and outbound.
func TestIfaceNamesPcapInterface(t *testing.T) {
	rs := parseRules(t, `
set local 198.18.0.1
pass in on lan0 proto udp label "in-lan"
pass out on lan0 proto udp label "out-lan"
`)
	pcap := writeUDPPcap(t, []ifPacket{
		{0, "198.18.1.2", "198.18.0.1", 1000, 53},
		{0, "198.18.0.1", "198.18.1.2", 53, 1000},
	})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs}, pcap), []string{
		"in= out= | block | block",
		"in= out= | block | block",
	})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Iface: "lan0"}, pcap), []string{
		"in=lan0 out= | pass in-lan | pass in-lan",
		"in= out=lan0 | pass out-lan | pass",
	})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Iface: "wan0"}, pcap), []string{
		"in=wan0 out= | block | block",
		"in= out=wan0 | block | block",
	})
}

// TestIfaceOutForwards: with Config.IfaceOut, a packet of neither side is
// forwarded: matched inbound on Iface and outbound on IfaceOut, passing
// only if both pass, and a local packet leaves by IfaceOut.
func TestIfaceOutForwards(t *testing.T) {
	rs := parseRules(t, `
set local 198.18.0.1
pass in on lan0 proto udp label "in-lan"
pass out on wan0 proto udp to port 53 label "dns-out"
block out on wan0 proto udp to port 54 label "no-54"
pass out on lan0 proto udp label "out-lan"
`)
	pcap := writeUDPPcap(t, []ifPacket{
		{0, "198.18.1.2", "198.19.0.9", 1000, 53}, // forwarded, both pass
		{0, "198.18.1.2", "198.19.0.9", 1000, 54}, // forwarded, out blocks
		{0, "198.18.1.2", "198.19.0.9", 1000, 55}, // forwarded, out by the default
		{0, "198.18.0.1", "198.19.0.9", 1000, 53}, // local, leaves by wan0
	})
	recs := replayAll(t, replay.Config{Rules: rs, Mode: replay.Stateless, Iface: "lan0", IfaceOut: "wan0"}, pcap)
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	for i, want := range []struct {
		in, out     string
		verdict     engine.Verdict
		dir         rules.Dir
		rule, other string
	}{
		{"lan0", "wan0", engine.Pass, rules.DirIn, "in-lan", "dns-out"},
		{"lan0", "wan0", engine.Block, rules.DirOut, "no-54", "in-lan"},
		{"lan0", "wan0", engine.Block, rules.DirOut, "", "in-lan"},
		{"", "wan0", engine.Pass, rules.DirOut, "dns-out", ""},
	} {
		r := &recs[i]
		d := r.Stateless
		label := func(r *rules.Rule) string {
			if r == nil {
				return ""
			}
			return r.Label
		}
		if r.In != want.in || r.Out != want.out || d.Verdict != want.verdict || d.Dir != want.dir || label(d.Rule) != want.rule || label(d.Other) != want.other {
			t.Errorf("packet %d: in=%q out=%q %v dir %v rule %q other %q; want %+v", i, r.In, r.Out, d.Verdict, d.Dir, label(d.Rule), label(d.Other), want)
		}
	}
	// Without IfaceOut the same packets have no direction: only rules
	// without in/out match them, so here the default blocks them all but
	// the local one, which leaves by lan0.
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Mode: replay.Stateless, Iface: "lan0"}, pcap), []string{
		"in=lan0 out= | block | block",
		"in=lan0 out= | block | block",
		"in=lan0 out= | block | block",
		"in= out=lan0 | pass out-lan | block",
	})
}

// TestIfaceOnWithoutDirection: a rule with `on` but neither in nor out
// matches a packet of no direction seen on that interface.
func TestIfaceOnWithoutDirection(t *testing.T) {
	rs := parseRules(t, `pass on lan0 proto udp label "lan"`)
	pcap := writeUDPPcap(t, []ifPacket{{0, "198.18.1.2", "198.19.0.9", 1000, 53}})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Iface: "lan0"}, pcap), []string{"in=lan0 out= | pass lan | pass lan"})
	checkVerdicts(t, replayAll(t, replay.Config{Rules: rs, Iface: "wan0"}, pcap), []string{"in=wan0 out= | block | block"})
}

// TestAntispoofIfaceAddrs: antispoof needs the interface's addresses,
// which Config.Ifaces gives offline: a source of lan0's network arriving
// on wan0 is forged, and so is lan0's own address arriving on lan0.
func TestAntispoofIfaceAddrs(t *testing.T) {
	rs := parseRules(t, `
set default pass
set local 198.18.0.1
antispoof for lan0
`)
	lan := []rules.Iface{{Name: "lan0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}}}
	pcap := writeUDPPcap(t, []ifPacket{
		{0, "198.18.1.5", "198.18.0.1", 1000, 53}, // lan0's network
		{0, "198.18.1.1", "198.18.0.1", 1000, 53}, // lan0's own address
		{0, "198.18.9.9", "198.18.0.1", 1000, 53}, // elsewhere
	})
	verdicts := func(cfg replay.Config) string {
		cfg.Rules, cfg.Mode = rs, replay.Stateless
		var v []string
		for _, r := range replayAll(t, cfg, pcap) {
			s := r.Stateless.Verdict.String()
			if r.Stateless.Rule != nil {
				s += " rule " + strconv.Itoa(r.Stateless.Rule.Index)
			}
			v = append(v, s)
		}
		return strings.Join(v, ", ")
	}
	for _, tc := range []struct {
		name string
		cfg  replay.Config
		want string
	}{
		{"on wan0", replay.Config{Iface: "wan0", Ifaces: lan}, "block rule 1, block rule 1, pass"},
		{"on lan0", replay.Config{Iface: "lan0", Ifaces: lan}, "pass, block rule 2, pass"},
		{"no addresses", replay.Config{Iface: "wan0"}, "pass, pass, pass"},
	} {
		if got := verdicts(tc.cfg); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestReplayLint: replay's warnings know its directions and the
// interfaces the flags name.
func TestReplayLint(t *testing.T) {
	for _, tc := range []struct {
		name, rules string
		cfg         replay.Config
		want        []string // substrings, one warning each, in order
	}{
		{"missing interface", "set local 198.18.0.1\npass in on eth9 inet\n", replay.Config{Iface: "lan0"},
			[]string{"test.rules:2:1: warning: rule 1: there is no interface eth9"}},
		{"interfaces unknown", "set local 198.18.0.1\npass in on eth9 inet\n", replay.Config{}, nil},
		{"present", "set local 198.18.0.1\npass in on lan0 inet\n", replay.Config{Iface: "lan0"}, nil},
		{"from --iface-addr", "set local 198.18.0.1\npass in on wan0 inet\n",
			replay.Config{Iface: "lan0", Ifaces: []rules.Iface{{Name: "wan0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.2.1/24")}}}}, nil},
		{"no direction", "pass in proto udp\n", replay.Config{},
			[]string{"rule 1 matches only inbound packets ('in'), and replay without 'set local' (or --iface-out) decides none"}},
		{"forwarding gives directions", "pass in proto udp\npass out proto udp\n", replay.Config{Iface: "lan0", IfaceOut: "wan0"}, nil},
		{"antispoof without addresses", "set local 198.18.0.1\nantispoof for lan0\n", replay.Config{Iface: "lan0"},
			[]string{"antispoof for lan0: lan0 has no addresses"}},
	} {
		cfg := tc.cfg
		cfg.Rules = parseRules(t, tc.rules)
		ws := replay.Lint(cfg)
		if len(ws) != len(tc.want) {
			t.Errorf("%s: %d warnings %v, want %d", tc.name, len(ws), ws, len(tc.want))
			continue
		}
		for i, w := range ws {
			if !strings.Contains(w.String(), tc.want[i]) {
				t.Errorf("%s: warning %q lacks %q", tc.name, w, tc.want[i])
			}
		}
	}
}

func TestParseIfaceAddr(t *testing.T) {
	f, err := replay.ParseIfaceAddr("eth1=198.18.1.1/24,fd00:198:18::1/64, 198.18.3.3")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "eth1" || len(f.Addrs) != 3 || f.Addrs[0].String() != "198.18.1.1/24" || f.Addrs[1].String() != "fd00:198:18::1/64" || f.Addrs[2].String() != "198.18.3.3/32" {
		t.Errorf("got %+v", f)
	}
	for _, bad := range []string{"", "eth1", "eth1=", "=198.18.1.1/24", "eth1=198.18.1.1/33", "eth1=lan", "eth/1=198.18.1.1/24", "averyverylongname0=198.18.1.1/24", "eth1=198.18.1.1/24,"} {
		if _, err := replay.ParseIfaceAddr(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := replay.New(replay.Config{Rules: parseRules(t, "pass all\n"), Iface: "a/b"}); err == nil {
		t.Error("New accepted the interface name a/b")
	}
}

// TestReplayNoAllocsPerPacket: deciding a packet allocates nothing, with
// interfaces too (a pcapng's names, --iface-out's forwarding): a capture
// of 2000 more packets costs no more allocations than a short one.
func TestReplayNoAllocsPerPacket(t *testing.T) {
	rs := parseRules(t, "set local 198.18.0.1\npass in on lan0 proto udp\npass out on wan0 proto udp\n")
	flow := func(n int) string {
		var pkts []ifPacket
		for i := range n {
			if i%2 == 0 {
				pkts = append(pkts, ifPacket{0, "198.18.1.2", "198.18.2.2", 1000, 53})
			} else {
				pkts = append(pkts, ifPacket{1, "198.18.2.2", "198.18.1.2", 53, 1000})
			}
		}
		return writeNamedNg(t, []string{"lan0", "wan0"}, pkts)
	}
	short, long := flow(10), flow(2010)
	for _, mode := range []replay.Mode{replay.Compare, replay.Stateless, replay.Stateful} {
		rp, err := replay.New(replay.Config{Rules: rs, Mode: mode, IfaceOut: "wan0"})
		if err != nil {
			t.Fatal(err)
		}
		sink := func(*replay.Record) error { return nil }
		allocs := func(f string) float64 {
			return testing.AllocsPerRun(5, func() {
				if err := rp.ReplayFile(f, sink); err != nil {
					t.Fatal(err)
				}
			})
		}
		a, b := allocs(short), allocs(long)
		if perPacket := (b - a) / 2000; perPacket > 0.01 {
			t.Errorf("%v: %.3f allocations a packet (%v for 10 packets, %v for 2010)", mode, perPacket, a, b)
		}
	}
}
