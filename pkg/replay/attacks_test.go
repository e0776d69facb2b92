package replay_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/replay"
)

// The attack captures replayed with rules/stateless-ack.rules, the classic
// stateless ruleset that passes every TCP packet to the service ports and
// every ACK from them. What each packet is, is read from the packet itself
// (gopacket's decode); the test says what each engine must do with such a
// packet.

const (
	client = "198.18.0.1"
	server = "198.18.0.2"
)

// attackPacket is one packet of an attack capture and its records.
type attackPacket struct {
	ref decoded
	rec replay.Record
	id  string // file#index
}

func (p attackPacket) from(ip string) bool { return p.ref.src() == ip }

func (p attackPacket) String() string {
	r := &p.rec
	return fmt.Sprintf("%s %v:%d > %v:%d %s: stateless %v (%s), stateful %v (%s) ct %s", p.id, r.Src, r.SrcPort, r.Dst, r.DstPort,
		p.ref.flags(), r.Stateless.Verdict, r.Stateless.Reason(), r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label())
}

// replayAttack replays one capture with stateless-ack.rules in compare
// mode and pairs each record with gopacket's view of its packet.
func replayAttack(t *testing.T, name string) []attackPacket {
	t.Helper()
	file := filepath.Join(repoTestdata, name)
	pkts, link := readPcap(t, file)
	recs := replayAll(t, replay.Config{Rules: loadRules(t, "stateless-ack.rules"), Mode: replay.Compare}, file)
	if len(recs) != len(pkts) {
		t.Fatalf("%s: %d records for %d packets", name, len(recs), len(pkts))
	}
	out := make([]attackPacket, len(pkts))
	for i := range pkts {
		out[i] = attackPacket{decodeRef(pkts[i].data, link), recs[i], name + "#" + strconv.Itoa(i)}
		if out[i].ref.tcp == nil {
			t.Fatalf("%s: not TCP", out[i].id)
		}
	}
	return out
}

// onlyStatelessPasses: the packet passes stateless and stateful blocks it
// with this ct label.
func onlyStatelessPasses(t *testing.T, p attackPacket, label string) {
	t.Helper()
	r := &p.rec
	if r.Stateless.Verdict != engine.Pass || r.Stateful.Verdict != engine.Block || r.Stateful.Label() != label {
		t.Errorf("%v\n\twant: stateless pass, stateful block, ct %s", p, label)
	}
	if r.Agreement() != engine.OnlyStatelessPasses {
		t.Errorf("%s: agreement %v", p.id, r.Agreement())
	}
}

func bothPass(t *testing.T, p attackPacket) {
	t.Helper()
	if p.rec.Stateless.Verdict != engine.Pass || p.rec.Stateful.Verdict != engine.Pass {
		t.Errorf("%v\n\twant: pass in both modes", p)
	}
}

// TestACKScan: nmap -sA sends bare ACKs with no connection behind them.
// The service rule passes them stateless; stateful, conntrack calls them
// new (it would pick up a connection mid-stream) and the same rule, read as
// pf's flags S/SA, does not open a connection with an ACK: blocked by the
// default. The RSTs that answer them belong to no connection: invalid.
func TestACKScan(t *testing.T) {
	for _, name := range []string{"nmap-ack-scan.pcap", "nmap-ack-scan-sport80.pcap"} {
		t.Run(name, func(t *testing.T) {
			probes := 0
			for _, p := range replayAttack(t, name) {
				switch {
				case p.from(client) && p.ref.flags() == "A":
					probes++
					onlyStatelessPasses(t, p, "new")
					if p.rec.Stateful.Cause != engine.CauseDefault || !p.rec.Stateful.Midstream {
						t.Errorf("%v: want blocked by the default as a mid-stream pickup (no rule opens a connection with an ACK)", p)
					}
				case p.from(server) && p.ref.tcp.RST:
					if p.rec.Stateful.Verdict != engine.Block || p.rec.Stateful.Label() != "invalid" {
						t.Errorf("%v\n\twant: stateful block, ct invalid", p)
					}
					// From port 80 the scan looks like web replies: the
					// server's RSTs go out to "port 80" and the rule for
					// this host's own web calls passes them stateless.
					if name == "nmap-ack-scan-sport80.pcap" && p.rec.Stateless.Verdict != engine.Pass {
						t.Errorf("%v\n\twant: stateless pass (rule for outbound web calls)", p)
					}
				default:
					t.Errorf("%v: unexpected packet in an ACK scan", p)
				}
			}
			if probes == 0 {
				t.Fatal("no ACK probes found")
			}
		})
	}
}

// TestStealthScans: FIN, Xmas (FIN|PSH|URG) and NULL probes pass the
// service rule stateless; conntrack calls these flag combinations invalid,
// so stateful blocks them.
func TestStealthScans(t *testing.T) {
	for _, tc := range []struct{ name, flags string }{
		{"nmap-fin-scan.pcap", "F"},
		{"nmap-xmas-scan.pcap", "FPU"},
		{"nmap-null-scan.pcap", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probes := 0
			for _, p := range replayAttack(t, tc.name) {
				if !p.from(client) {
					// The closed ports' RST/ACKs: no connection.
					if !p.ref.tcp.RST || p.rec.Stateful.Verdict != engine.Block || p.rec.Stateful.Label() != "invalid" {
						t.Errorf("%v\n\twant: an RST, stateful block, ct invalid", p)
					}
					continue
				}
				if p.ref.flags() != tc.flags {
					t.Errorf("%v: probe flags %q, want %q", p, p.ref.flags(), tc.flags)
				}
				probes++
				onlyStatelessPasses(t, p, "invalid")
				if p.rec.Stateful.Cause != engine.CauseInvalid {
					t.Errorf("%v: want blocked as invalid", p)
				}
			}
			if probes != 3 { // ports 22, 80, 443
				t.Errorf("%d probes, want 3", probes)
			}
		})
	}
}

// outOfWindow classifies the client's segments of hping3-out-of-window.pcap:
// hping3 injects segments on the real connection's 4-tuple whose sequence
// or acknowledgement number is 2^30 away from the connection's. A segment
// is "far" when either number is more than 2^20 from what the real
// connection has reached; the real segments move the connection on.
type windowClass struct{ seqFar, ackFar bool }

func classifyOutOfWindow(t *testing.T, pkts []attackPacket) []windowClass {
	t.Helper()
	const far = 1 << 20
	dist := func(a, b uint32) int64 {
		d := int64(int32(a - b))
		if d < 0 {
			d = -d
		}
		return d
	}
	var cnext, snext uint32 // next sequence number of the client, the server
	var haveC, haveS bool
	out := make([]windowClass, len(pkts))
	for i, p := range pkts {
		tcp := p.ref.tcp
		end := tcp.Seq + uint32(len(tcp.Payload))
		if tcp.SYN {
			end++
		}
		if tcp.FIN {
			end++
		}
		if p.from(server) {
			if !haveS || int32(end-snext) > 0 {
				snext, haveS = end, true
			}
			continue
		}
		var c windowClass
		if haveC {
			c.seqFar = dist(tcp.Seq, cnext) > far
			c.ackFar = tcp.ACK && haveS && dist(tcp.Ack, snext) > far
		}
		out[i] = c
		if !c.seqFar && !c.ackFar && (!haveC || int32(end-cnext) > 0) {
			cnext, haveC = end, true
		}
	}
	return out
}

// TestOutOfWindow: segments injected into a live connection with sequence
// or acknowledgement numbers far outside its window pass the service rule
// stateless; conntrack's window tracking calls them invalid. The real
// connection's packets pass in both modes.
func TestOutOfWindow(t *testing.T) {
	pkts := replayAttack(t, "hping3-out-of-window.pcap")
	classes := classifyOutOfWindow(t, pkts)
	injected := 0
	for i, p := range pkts {
		if c := classes[i]; c.seqFar || c.ackFar {
			injected++
			onlyStatelessPasses(t, p, "invalid")
			continue
		}
		bothPass(t, p)
	}
	// testdata/README.md: 2 data segments and an RST with seq + 2^30, one
	// data segment with ack + 2^30.
	if injected != 4 {
		t.Errorf("%d far segments found, want 4", injected)
	}
}

// TestSYNFlood: every SYN of the flood is a new connection the service
// rule passes, in both modes.
func TestSYNFlood(t *testing.T) {
	syns := 0
	for _, p := range replayAttack(t, "syn-flood.pcap") {
		tcp := p.ref.tcp
		if p.ref.flags() != "S" {
			// The server's SYN/ACKs answer a SYN it passed.
			if p.from(server) && p.ref.flags() == "SA" && p.rec.Stateful.Label() != "established" {
				t.Errorf("%v: want ct established", p)
			}
			continue
		}
		if tcp.DstPort != 80 {
			t.Errorf("%v: SYN not to port 80", p)
		}
		syns++
		bothPass(t, p)
		if p.rec.Stateful.Label() != "new" || p.rec.Stateful.Cause != engine.CauseRule {
			t.Errorf("%v: want ct new, passed by a rule", p)
		}
	}
	if syns != 200 { // testdata/README.md: 5 sources x 40
		t.Errorf("%d SYNs, want 200", syns)
	}
}

// TestSummaryGroups: the summary of the attack captures groups the
// disagreements by cause: the packets of one kind (the ACK probes, the
// Xmas probes, ...) fall in one "only stateless passes" group of their own,
// whose count is the number of such packets.
func TestSummaryGroups(t *testing.T) {
	files := []string{"nmap-ack-scan.pcap", "nmap-ack-scan-sport80.pcap", "nmap-fin-scan.pcap",
		"nmap-xmas-scan.pcap", "nmap-null-scan.pcap", "hping3-out-of-window.pcap", "syn-flood.pcap"}

	// The kind of each packet, from the packet itself.
	kinds := map[string][]attackPacket{}
	var all []attackPacket
	for _, name := range files {
		pkts := replayAttack(t, name)
		all = append(all, pkts...)
		var classes []windowClass
		if strings.HasPrefix(name, "hping3") {
			classes = classifyOutOfWindow(t, pkts)
		}
		for i, p := range pkts {
			kind := ""
			switch {
			case !p.from(client):
			case strings.HasPrefix(name, "nmap-ack") && p.ref.flags() == "A":
				kind = "ACK probe"
			case strings.HasPrefix(name, "nmap-"):
				kind = p.ref.flags() + " probe"
			case classes != nil && classes[i].ackFar:
				kind = "ack out of window"
			case classes != nil && classes[i].seqFar:
				kind = "seq out of window"
			}
			if kind != "" {
				kinds[kind] = append(kinds[kind], p)
			}
		}
	}
	if len(kinds) != 6 {
		t.Errorf("packet kinds found: %d, want 6 (ACK, F, FPU and NULL probes, seq and ack out of window)", len(kinds))
	}

	// The summary of the same replay, through the Summary sink.
	var sum replay.Summary
	rp, err := replay.New(replay.Config{Rules: loadRules(t, "stateless-ack.rules")})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if err := rp.ReplayFile(filepath.Join(repoTestdata, name), sum.Add); err != nil {
			t.Fatal(err)
		}
	}

	if sum.Packets != len(all) {
		t.Errorf("summary: %d packets, want %d", sum.Packets, len(all))
	}
	differ := 0
	var pass [2]int
	byID := map[string]attackPacket{}
	for _, p := range all {
		byID[p.id] = p
		if p.rec.Agreement() != engine.Agree {
			differ++
		}
		if p.rec.Stateless.Verdict == engine.Pass {
			pass[0]++
		}
		if p.rec.Stateful.Verdict == engine.Pass {
			pass[1]++
		}
	}
	if sum.Stateless[engine.Pass] != pass[0] || sum.Stateful[engine.Pass] != pass[1] {
		t.Errorf("summary passes: stateless %d, stateful %d; the records say %d, %d",
			sum.Stateless[engine.Pass], sum.Stateful[engine.Pass], pass[0], pass[1])
	}

	groups := map[string]*replay.Group{}
	total := 0
	for _, g := range sum.Disagreements() {
		total += g.Count
		groups[g.Cause] = g
		if g.Count <= 0 || len(g.First) == 0 || len(g.First) > g.Count || len(g.First) > 5 {
			t.Errorf("group %q: count %d, first %v", g.Cause, g.Count, g.First)
		}
		for _, id := range g.First {
			p, ok := byID[id]
			if !ok || p.rec.Agreement() != g.Agreement || engine.Explain(p.rec.Stateless, p.rec.Stateful) != g.Cause {
				t.Errorf("group %v %q lists %s, which is %v", g.Agreement, g.Cause, id, p)
			}
		}
	}
	if total != differ {
		t.Errorf("the groups count %d disagreements, the records %d", total, differ)
	}

	seen := map[string]string{} // cause -> kind
	for kind, pkts := range kinds {
		cause := engine.Explain(pkts[0].rec.Stateless, pkts[0].rec.Stateful)
		for _, p := range pkts[1:] {
			if c := engine.Explain(p.rec.Stateless, p.rec.Stateful); c != cause {
				t.Errorf("%s: %s is explained %q, %s %q", kind, p.id, c, pkts[0].id, cause)
			}
		}
		if k, dup := seen[cause]; dup {
			t.Errorf("%s and %s share the explanation %q", kind, k, cause)
		}
		seen[cause] = kind
		g := groups[cause]
		switch {
		case g == nil:
			t.Errorf("%s: no group %q", kind, cause)
		case g.Agreement != engine.OnlyStatelessPasses || g.Count != len(pkts):
			t.Errorf("%s: group %v %q counts %d, want only stateless passes, %d", kind, g.Agreement, cause, g.Count, len(pkts))
		}
		// An invalid packet is explained by conntrack's reason.
		if r := pkts[0].rec.Stateful; r.Cause == engine.CauseInvalid && !strings.Contains(cause, r.CT.ReasonString()) {
			t.Errorf("%s: %q does not say why conntrack calls it invalid (%s)", kind, cause, r.CT.ReasonString())
		}
	}

	var text bytes.Buffer
	if err := sum.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"packets: " + strconv.Itoa(len(all)),
		"disagreements: " + strconv.Itoa(differ),
		"only stateless passes:",
	} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("summary text lacks %q:\n%s", s, text.String())
		}
	}
}
