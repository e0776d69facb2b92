package replay_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// ipv4-frag-tcp-syn.pcap is one TCP SYN 1.1.1.1:12345 > 2.2.2.2:8080 in
// three 8-byte IPv4 fragments: even the TCP header is split, so no single
// fragment shows both the ports and the flags.
func fragSyn(t *testing.T) string {
	return needFile(t, filepath.Join(sharedPcaps, "ipv4-frag-tcp-syn.pcap"))
}

// reassemble builds the datagram the IPv4 fragments make, independently of
// package defrag: payloads placed by offset under the first fragment's
// header with MF and the offset cleared.
func reassemble(t *testing.T, frags []rawPacket) []byte {
	t.Helper()
	var first *layers.IPv4
	var payload []byte
	for _, f := range frags {
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(f.data, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		if ip.Flags&layers.IPv4MoreFragments == 0 && ip.FragOffset == 0 {
			t.Fatal("not a fragment")
		}
		off := int(ip.FragOffset) * 8
		if n := off + len(ip.Payload); n > len(payload) {
			payload = append(payload, make([]byte, n-len(payload))...)
		}
		copy(payload[off:], ip.Payload)
		if ip.FragOffset == 0 {
			first = &ip
		}
	}
	if first == nil {
		t.Fatal("no first fragment")
	}
	whole := *first
	whole.Flags &^= layers.IPv4MoreFragments
	whole.FragOffset = 0
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&whole, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dirOf(rs *rules.Ruleset, p *packet.Packet) rules.Dir { return rs.Direction(p.Src, p.Dst) }

// TestFragmentsShareTheDatagramsDecision: conntrack sees the reassembled
// datagram only, so every fragment gets its decision and label, as in the
// kernel; the stateless engine judges each fragment alone, and a rule with
// a port cannot match a fragment that carries no ports.
func TestFragmentsShareTheDatagramsDecision(t *testing.T) {
	file := fragSyn(t)
	frags, link := readPcap(t, file)
	if len(frags) != 3 {
		t.Fatalf("%s: %d packets, want 3 fragments", file, len(frags))
	}
	whole := reassemble(t, frags)
	var wp packet.Packet
	wp.Decode(whole, packet.LinkIP)
	if wp.Kind != packet.KindOK || wp.Proto != packet.ProtoTCP || wp.TCPFlags != packet.TCPSyn || wp.DstPort != 8080 {
		t.Fatalf("the reassembled datagram is not the SYN to port 8080: %v", wp.String())
	}

	for _, tc := range []struct {
		name, rules string
		// What the rules do with the datagram and with its fragments.
		wantStateful, wantStateless engine.Verdict
	}{
		{"webserver", "", engine.Block, engine.Block},
		// The port rule passes the SYN stateful; stateless, no fragment
		// shows a port, so none matches and all are blocked.
		{"port rule", "pass proto tcp to 2.2.2.2 port 8080\n", engine.Pass, engine.Block},
		// A rule without transport conditions matches fragments by
		// address and protocol.
		{"address rule", "pass proto tcp to 2.2.2.2\n", engine.Pass, engine.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := loadRules(t, "webserver.rules")
			if tc.rules != "" {
				rs = parseRules(t, tc.rules)
			}
			// The datagram, decided whole by a fresh stateful engine.
			st := engine.NewStateful(rs, conntrack.New(conntrack.Config{}))
			want := st.Decide(&wp, dirOf(rs, &wp), frags[2].ci.Timestamp.UnixNano())
			if want.Verdict != tc.wantStateful || want.Label() != "new" {
				t.Fatalf("the whole datagram: %v %s, ct %s; want %v, ct new", want.Verdict, want.Reason(), want.Label(), tc.wantStateful)
			}
			sl := engine.NewStateless(rs)

			recs := replayAll(t, replay.Config{Rules: rs}, file)
			if len(recs) != len(frags) {
				t.Fatalf("%d records for %d fragments", len(recs), len(frags))
			}
			for i, r := range recs {
				if r.Index != i {
					t.Errorf("record %d has index %d: not in file order", i, r.Index)
				}
				if !r.Fragment {
					t.Errorf("#%d: not marked as a fragment", i)
				}
				if r.HasPorts {
					t.Errorf("#%d: ports %d > %d on a fragment whose TCP header is split", i, r.SrcPort, r.DstPort)
				}
				if r.Stateful.Verdict != want.Verdict || r.Stateful.Reason() != want.Reason() || r.Stateful.Label() != "new" {
					t.Errorf("#%d: stateful %v %q ct %s, the datagram gets %v %q ct new", i,
						r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label(), want.Verdict, want.Reason())
				}
				// Stateless: the fragment alone.
				var fp packet.Packet
				fp.Decode(frags[i].data, packet.LinkType(link))
				alone := sl.Decide(&fp, dirOf(rs, &fp))
				if r.Stateless.Verdict != alone.Verdict || r.Stateless.Reason() != alone.Reason() {
					t.Errorf("#%d: stateless %v %q, the fragment alone gets %v %q", i,
						r.Stateless.Verdict, r.Stateless.Reason(), alone.Verdict, alone.Reason())
				}
				if r.Stateless.Verdict != tc.wantStateless {
					t.Errorf("#%d: stateless %v, want %v", i, r.Stateless.Verdict, tc.wantStateless)
				}
			}
		})
	}
}

// TestFragmentsAmongOtherPackets: records come out in file order while a
// datagram waits for its last fragment, and a datagram that follows other
// packets is reassembled like one at the start of the file.
//
// Regression: the queue of held records kept a stale base after packets
// went straight to the sink, so the fragments of a datagram that came after
// them never got its decision and were reported as "incomplete datagram at
// end of capture".
func TestFragmentsAmongOtherPackets(t *testing.T) {
	file := fragSyn(t)
	frags, link := readPcap(t, file)
	rs := parseRules(t, "pass proto tcp to 2.2.2.2 port 8080\npass proto udp to 2.2.2.2 port 53\n")

	// A DNS query on the same hosts, unfragmented, at the fragments' time.
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(1, 1, 1, 1), DstIP: net.IPv4(2, 2, 2, 2)}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, udp, gopacket.Payload("query")); err != nil {
		t.Fatal(err)
	}
	other := func(dt time.Duration) rawPacket {
		ci := frags[0].ci
		ci.Timestamp = ci.Timestamp.Add(dt)
		ci.CaptureLength, ci.Length = len(buf.Bytes()), len(buf.Bytes())
		return rawPacket{ci, append([]byte(nil), buf.Bytes()...)}
	}

	for _, tc := range []struct {
		name  string
		order []int // indexes into frags; -1 is the other packet
	}{
		{"fragments first", []int{0, 1, 2, -1}},
		{"one packet before", []int{-1, 0, 1, 2}},
		{"one packet between", []int{0, -1, 1, 2}},
		{"around and between", []int{-1, 2, -1, 0, -1, 1, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pkts []rawPacket
			for _, i := range tc.order {
				if i < 0 {
					pkts = append(pkts, other(0))
				} else {
					pkts = append(pkts, frags[i])
				}
			}
			name := writePcap(t, t.TempDir(), "mixed.pcap", link, pkts)
			recs := replayAll(t, replay.Config{Rules: rs}, name)
			if len(recs) != len(pkts) {
				t.Fatalf("%d records for %d packets", len(recs), len(pkts))
			}
			for i, r := range recs {
				if r.Index != i {
					t.Fatalf("record %d has index %d: not in file order", i, r.Index)
				}
				if isFrag := tc.order[i] >= 0; r.Fragment != isFrag {
					t.Errorf("#%d: fragment %v, want %v", i, r.Fragment, isFrag)
				}
				if r.Fragment {
					// The SYN passes rule 1 and is the connection's first
					// packet.
					if r.Stateful.Verdict != engine.Pass || r.Stateful.Rule != &rs.Rules[0] || r.Stateful.Label() != "new" {
						t.Errorf("#%d (fragment): stateful %v %s ct %s, want pass by rule 1, ct new", i, r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label())
					}
					continue
				}
				if r.Proto != packet.ProtoUDP || r.DstPort != 53 {
					t.Errorf("#%d: %s %v:%d > %v:%d, want the DNS query", i, r.ProtoName(), r.Src, r.SrcPort, r.Dst, r.DstPort)
				}
				// The first query creates the UDP entry; the same query
				// again is still new (no reply yet).
				if r.Stateful.Verdict != engine.Pass || r.Stateful.Label() != "new" || r.Stateless.Verdict != engine.Pass {
					t.Errorf("#%d (query): stateless %v, stateful %v %s ct %s; want pass, pass, new", i,
						r.Stateless.Verdict, r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label())
				}
			}
		})
	}
}

// TestIncompleteDatagram: fragments whose datagram never completes are
// reported at the end of the capture, blocked and invalid, as the kernel
// drops them when reassembly times out; the stateless engine still judges
// each alone.
func TestIncompleteDatagram(t *testing.T) {
	file := fragSyn(t)
	frags, link := readPcap(t, file)
	rs := parseRules(t, "pass proto tcp to 2.2.2.2\n")
	name := writePcap(t, t.TempDir(), "two-of-three.pcap", link, frags[:2])
	recs := replayAll(t, replay.Config{Rules: rs}, name)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for i, r := range recs {
		if r.Index != i {
			t.Errorf("record %d has index %d", i, r.Index)
		}
		if r.Stateful.Verdict != engine.Block || r.Stateful.Cause != engine.CauseFragment || r.Stateful.Label() != "invalid" {
			t.Errorf("#%d: stateful %v %s ct %s, want blocked by defrag, invalid", i, r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label())
		}
		if r.Stateless.Verdict != engine.Pass {
			t.Errorf("#%d: stateless %v %s, want pass by the address rule", i, r.Stateless.Verdict, r.Stateless.Reason())
		}
	}
}

// TestIPv6FragmentsShareOneDecision: the same for IPv6 (a fragment
// header); the datagram is an ACK with data and no connection: new.
func TestIPv6FragmentsShareOneDecision(t *testing.T) {
	file := needFile(t, filepath.Join(sharedPcaps, "ipv6-frag-tcp.pcap"))
	rs := parseRules(t, "pass proto tcp to ::1 port 8080 flags any\n")
	// After other traffic, so the datagram does not start the stream.
	recs := replayAll(t, replay.Config{Rules: rs}, filepath.Join(repoTestdata, "ping-v4.pcap"), file)
	recs = recs[len(recs)-3:]
	for i, r := range recs {
		if r.File != file || r.Index != i || !r.Fragment {
			t.Fatalf("record %s#%d (fragment %v), want %s#%d, a fragment", r.File, r.Index, r.Fragment, file, i)
		}
		if r.Stateful.Verdict != engine.Pass || r.Stateful.Rule != &rs.Rules[0] || r.Stateful.Label() != "new" {
			t.Errorf("#%d: stateful %v %s ct %s, want pass by rule 1, new", i, r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label())
		}
	}
}
