//go:build linux

package replay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/internal/oracle"
	"github.com/statewall/statewall/internal/testenv"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// The classic ways around a stateless filter, each replayed in compare mode
// with a ruleset (testdata/evasion-*.rules) whose stateless reading lets the
// evasive packets through, and what connection tracking makes of them.
//
// For every packet of interest a row says the stateless verdict, the
// stateful verdict, the ct label under that ruleset, and the kernel's label.
// The kernel's labels were taken with a ruleset that passes everything
// (internal/oracle/testdata/kernel-labels), and a ruleset that blocks packets
// changes which connections exist afterwards; so the capture is replayed a
// second time with rules/default-pass.rules, and that run must give the
// kernel's label for every packet the kernel labels.

const goldenDir = "../../internal/oracle/testdata/kernel-labels"

// evasionPacket is what the engines must do with one packet of a capture.
type evasionPacket struct {
	index     int
	tcp       string // its TCP flags as tcpdump prints them; "" for no TCP header
	stateless engine.Verdict
	stateful  engine.Verdict
	ct        string // the stateful engine's label under the row's ruleset
	kernel    string // the kernel's label (pass-everything), "" when it gives none
}

type evasionCase struct {
	name    string // the evasion technique
	capture string // a path, or "" when build makes the capture
	build   func(t *testing.T) string
	rules   string // in testdata/
	packets []evasionPacket
}

var (
	pass  = engine.Pass
	block = engine.Block
)

var evasionCases = []evasionCase{
	{
		// One SYN 1.1.1.1:12345 > 2.2.2.2:8080 in three 8-byte fragments:
		// the first holds the ports and the sequence number, not the flags,
		// so the rule against inbound SYNs cannot match any fragment and
		// the address rule passes them all. Conntrack sees the reassembled
		// SYN, the SYN rule blocks it, and every fragment gets that verdict.
		name:    "tiny fragments: TCP flags not in the first fragment",
		capture: sharedPcaps + "/ipv4-frag-tcp-syn.pcap",
		rules:   "evasion-fragments.rules",
		packets: []evasionPacket{
			{0, "", pass, block, "new", "new"}, // offset 0: ports and seq only
			{1, "", pass, block, "new", "new"}, // offset 8: the flags are here
			{2, "", pass, block, "new", "new"}, // offset 16
		},
	},
	{
		// A fragmented ICMPv6 echo request 2001:db8:1::2 > 2001:db8:1::1
		// (frag id 1). The offset-408 fragment is sent twice with different
		// bytes: first with hop limit 1 (a decoy that would expire at the
		// first router), then with hop limit 64. Stateless, each fragment
		// passes alone. The kernel keeps the first copy, discards the second
		// and the datagram it rebuilds fails its checksum: invalid, blocked.
		name:    "overlapping fragments: a second copy with different bytes",
		capture: sharedPcaps + "/ipv6-malformed-fragments.pcap",
		rules:   "evasion-fragments.rules",
		packets: []evasionPacket{
			{4, "", pass, block, "invalid", "invalid"},        // offset 0, hop limit 64
			{5, "", pass, block, "invalid", "invalid"},        // offset 408, hop limit 1: the decoy
			{7, "", pass, block, "invalid", ""},               // offset 408 again, other bytes: the kernel drops it in reassembly
			{8, "", pass, block, "invalid", "invalid"},        // offset 808, the last
			{9, "", pass, pass, "established", "established"}, // an unfragmented echo request on the same id
		},
	},
	{
		// 1.1.1.1:12345 > 2.2.2.2:80. The server answers the SYN with a bare
		// SYN, the client sends the SYN/ACK: a split handshake that would
		// make the client look like the server. Conntrack follows it as
		// the kernel does (SYN_SENT2) and keeps 1.1.1.1 the originator; the
		// stateless reply rule wants ACK and blocks the bare SYN.
		name:    "TCP split handshake (4 packets: SYN, SYN, SYN/ACK, ACK)",
		capture: sharedPcaps + "/split-handshake-4whs.pcap",
		rules:   "evasion-client.rules",
		packets: []evasionPacket{
			{0, "S", pass, pass, "new", "new"},                  // client SYN, seq 1000
			{1, "S", block, pass, "established", "established"}, // server bare SYN, seq 3000
			{2, "SA", pass, pass, "established", "established"}, // client SYN/ACK
			{3, "A", pass, pass, "established", "established"},  // server ACK
			{4, "A", pass, pass, "established", "established"},  // client data, 4 bytes
			{6, "R", pass, pass, "established", "established"},  // client RST, seq 1005
		},
	},
	{
		// The same with a bare ACK (ack 1001) from the server before its SYN.
		name:    "TCP split handshake (5 packets: SYN, ACK, SYN, SYN/ACK, ACK)",
		capture: sharedPcaps + "/split-handshake-5whs.pcap",
		rules:   "evasion-client.rules",
		packets: []evasionPacket{
			{0, "S", pass, pass, "new", "new"},                  // client SYN
			{1, "A", pass, pass, "established", "established"},  // server bare ACK, ack 1001
			{2, "S", block, pass, "established", "established"}, // server bare SYN
			{3, "SA", pass, pass, "established", "established"}, // client SYN/ACK
			{5, "A", pass, pass, "established", "established"},  // client data
		},
	},
	{
		// 192.168.1.43:35532 > 192.168.1.90:80. Before the real SYN/ACK an
		// attacker injects a RST/ACK acking the SYN (in window), a FIN/ACK,
		// and the client answers with a RST. The in-window RST is accepted,
		// as by the kernel, and ends the connection in conntrack: the FIN,
		// the client's RST and the real SYN/ACK are invalid. What follows
		// is the real connection, but conntrack has no entry for it: the
		// client's ACK and GET are a mid-stream pickup, which the web rule
		// (flags S/SA when it keeps state) does not open, so stateful mode
		// blocks them. The injection is caught, at the price of the
		// connection (the kernel's ct would do the same). Passing
		// everything, the kernel picks the connection up at the ACK.
		name:    "RST injection in window, before the SYN/ACK (Linux client)",
		capture: sharedPcaps + "/tcp-evasion-linux.pcap",
		rules:   "evasion-client.rules",
		packets: []evasionPacket{
			{0, "S", pass, pass, "new", "new"},                  // client SYN
			{1, "RA", pass, pass, "established", "established"}, // injected RST/ACK, ack = ISN+1
			{2, "FA", pass, block, "invalid", "invalid"},        // injected FIN/ACK
			{3, "R", pass, block, "invalid", "invalid"},         // the client's RST
			{4, "SA", pass, block, "invalid", "invalid"},        // the real SYN/ACK
			{5, "A", pass, block, "new", "new"},                 // client ACK
			{6, "PA", pass, block, "new", "new"},                // client GET /
			{7, "A", pass, pass, "new", "established"},          // server ACK: ACK rule, no state
			{9, "A", pass, block, "new", "established"},         // client ACK of the 200 OK
		},
	},
	{
		// The same injection with a Windows client (no client RST).
		name:    "RST injection in window, before the SYN/ACK (Windows client)",
		capture: sharedPcaps + "/tcp-evasion-windows.pcap",
		rules:   "evasion-client.rules",
		packets: []evasionPacket{
			{1, "RA", pass, pass, "established", "established"}, // injected RST/ACK
			{2, "FA", pass, block, "invalid", "invalid"},        // injected FIN/ACK
			{3, "SA", pass, block, "invalid", "invalid"},        // the real SYN/ACK
			{4, "A", pass, block, "new", "new"},                 // client ACK
			{5, "PA", pass, block, "new", "new"},                // client GET /
		},
	},
	{
		// 1.1.1.1:12345 > 2.2.2.2:8080: a RST/ACK at the expected sequence
		// number carrying 13 bytes: in window, accepted by both.
		name:    "RST in window, with data",
		capture: sharedPcaps + "/tcp-rst-with-data.pcap",
		rules:   "evasion-server.rules",
		packets: []evasionPacket{
			{6, "PA", pass, pass, "established", "established"}, // server data, seq 15:18
			{7, "RA", pass, pass, "established", "established"}, // client RST/ACK seq 1:14, ack 18
		},
	},
	{
		// 192.0.2.10:43210 > 198.51.100.5:80: SYN, SYN/ACK, then data
		// at seq 100001, about 100 KB past a 256-byte window.
		name:    "data out of window",
		capture: sharedPcaps + "/tcp-stream-out-of-window.pcap",
		rules:   "evasion-server.rules",
		packets: []evasionPacket{
			{1, "SA", pass, pass, "established", "established"}, // server SYN/ACK
			{2, "PA", pass, block, "invalid", "invalid"},        // data at seq 100001
		},
	},
	{
		// 198.18.0.1:40000 > 198.18.0.2:80, a real HTTP connection into
		// which hping3 injects on the same 4-tuple: data with seq or ack
		// 2^30 away, a RST 2^30 away (out of window), and a RST about 1000
		// bytes ahead of the expected seq (in window, not exact). The
		// in-window RST is accepted without closing the connection, as
		// by the kernel: the real data that follows still passes.
		name:    "blind RSTs and data in and out of window",
		capture: repoTestdata + "/hping3-out-of-window.pcap",
		rules:   "evasion-server.rules",
		packets: []evasionPacket{
			{5, "PA", pass, block, "invalid", "invalid"},         // data, seq 2^30 ahead
			{9, "PA", pass, block, "invalid", "invalid"},         // data, ack 2^30 ahead
			{11, "R", pass, block, "invalid", "invalid"},         // RST out of window
			{12, "R", pass, pass, "established", "established"},  // RST in window, 999 past the expected seq
			{14, "PA", pass, pass, "established", "established"}, // the client's real next data
			{16, "PA", pass, pass, "established", "established"}, // the server's 200 OK
		},
	},
	{
		// ICMP errors from 198.18.0.1 (fd00:198:18::1) to this host that
		// quote connections that never existed: port unreachable,
		// fragmentation needed, ICMPv6 port unreachable and packet too
		// big. Each passes the stateless ICMP error rules; conntrack finds
		// no connection for the quoted packet: invalid. The host's own
		// port unreachable for a datagram it received is related.
		name:    "spoofed ICMP errors",
		capture: repoTestdata + "/icmp-errors.pcap",
		rules:   "evasion-icmp.rules",
		packets: []evasionPacket{
			{1, "", pass, pass, "related", "related"},   // port unreachable for the UDP datagram #0
			{10, "", pass, block, "invalid", "invalid"}, // spoofed port unreachable (udp 40020)
			{11, "", pass, block, "invalid", "invalid"}, // spoofed need-to-frag, mtu 1280
			{12, "", pass, block, "invalid", "invalid"}, // spoofed ICMPv6 port unreachable (udp 40022)
			{13, "", pass, block, "invalid", "invalid"}, // spoofed ICMPv6 packet too big
		},
	},
	{
		// The contrast: a genuine error. 192.168.10.31 asked this DNS
		// server three times, got three ServFails, and answers the last one
		// with a port unreachable quoting it: related, passes.
		name:    "a genuine ICMP error (related)",
		capture: sharedPcaps + "/flow-drop-iponly.pcap",
		rules:   "evasion-icmp.rules",
		packets: []evasionPacket{
			{5, "", pass, pass, "established", "established"}, // the third ServFail
			{6, "", pass, pass, "related", "related"},         // port unreachable quoting it
		},
	},
	{
		// Built by synSYNEstablished: a 3WHS 198.18.0.1:40000 > 198.18.0.2:80,
		// a request and its ACK, then a SYN with another ISN on the same
		// 4-tuple, then more data. The kernel IGNOREs a SYN on an
		// established connection (it may be a restart conntrack missed):
		// established, passes, and the connection goes on. The labels come
		// from a live kernel run.
		name:  "SYN on an established connection",
		build: buildSYNOnEstablished,
		rules: "evasion-server.rules",
		packets: []evasionPacket{
			{0, "S", pass, pass, "new", "new"},                  // client SYN, ISN 1000
			{3, "PA", pass, pass, "established", "established"}, // client request
			{5, "S", pass, pass, "established", "established"},  // SYN with ISN 900000000
			{6, "PA", pass, pass, "established", "established"}, // client data after it
			{7, "A", pass, pass, "established", "established"},  // server ACK
		},
	},
}

func TestEvasion(t *testing.T) {
	passAll, err := rules.ParseFile(filepath.Join(rulesDir, "default-pass.rules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range evasionCases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.capture
			var kernel []oracle.Label
			if tc.build != nil {
				testenv.NeedRoot(t, "the kernel's labels for a built capture: network namespaces, nftables, NFQUEUE", "ip", "nft")
				path = tc.build(t)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if kernel, err = oracle.Labels(ctx, path); err != nil {
					t.Fatalf("kernel oracle: %v", err)
				}
			} else {
				needFile(t, path)
				kernel = readGolden(t, filepath.Base(path))
			}
			name := filepath.Base(path)
			pkts, link := readPcap(t, path)
			rs, err := rules.ParseFile(filepath.Join("testdata", tc.rules))
			if err != nil {
				t.Fatal(err)
			}
			recs := replayAll(t, replay.Config{Rules: rs, Mode: replay.Compare}, path)
			base := replayAll(t, replay.Config{Rules: passAll, Mode: replay.Stateful}, path)
			if len(recs) != len(pkts) || len(base) != len(pkts) || len(kernel) != len(pkts) {
				t.Fatalf("%s: %d packets, %d records with %s, %d with default-pass, %d kernel labels", name, len(pkts), len(recs), tc.rules, len(base), len(kernel))
			}
			// Passing everything, statewall labels every packet of the
			// capture as the kernel does.
			for i, k := range kernel {
				if k.Index != i {
					t.Fatalf("%s: kernel label %d has index %d", name, i, k.Index)
				}
				if k.CT != "" && base[i].Stateful.Label() != k.CT {
					t.Errorf("%s#%d: passing everything, ct %s (%s); the kernel says %s", name, i, base[i].Stateful.Label(), base[i].Stateful.Reason(), k.CT)
				}
			}
			for _, want := range tc.packets {
				i := want.index
				r := &recs[i]
				if r.Index != i {
					t.Fatalf("%s: record %d is packet %d", name, i, r.Index)
				}
				if got := decodeRef(pkts[i].data, link).flags(); got != want.tcp {
					t.Errorf("%s#%d: TCP flags %q, want %q: not the packet the row describes", name, i, got, want.tcp)
				}
				if r.Stateless.Verdict != want.stateless || r.Stateful.Verdict != want.stateful || r.Stateful.Label() != want.ct {
					t.Errorf("%s#%d: stateless %v (%s), stateful %v (%s), ct %s\n\twant: stateless %v, stateful %v, ct %s",
						name, i, r.Stateless.Verdict, r.Stateless.Reason(), r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label(),
						want.stateless, want.stateful, want.ct)
				}
				if kernel[i].CT != want.kernel {
					t.Errorf("%s#%d: the kernel says %q (%s), the row says %q", name, i, kernel[i].CT, kernel[i].Note, want.kernel)
				}
			}
		})
	}
}

// readGolden reads the kernel's labels for a capture from
// internal/oracle/testdata/kernel-labels.
func readGolden(t *testing.T, capture string) []oracle.Label {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, strings.TrimSuffix(capture, ".pcap")+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []oracle.Label
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			File string `json:"file"`
			oracle.Label
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		if l.File != capture {
			t.Fatalf("%s: line for %q", f.Name(), l.File)
		}
		out = append(out, l.Label)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// buildSYNOnEstablished writes a capture of one HTTP-like connection
// 198.18.0.1:40000 > 198.18.0.2:80 that receives a SYN with a new ISN once
// established.
func buildSYNOnEstablished(t *testing.T) string {
	t.Helper()
	cmac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	smac := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	cip, sip := net.IPv4(198, 18, 0, 1).To4(), net.IPv4(198, 18, 0, 2).To4()
	const cport, sport = 40000, 80
	type seg struct {
		fromClient bool
		flags      string
		seq, ack   uint32
		payload    string
	}
	segs := []seg{
		{true, "S", 1000, 0, ""},                           // 0 SYN
		{false, "SA", 5000, 1001, ""},                      // 1 SYN/ACK
		{true, "A", 1001, 5001, ""},                        // 2 ACK
		{true, "PA", 1001, 5001, "GET / HTTP/1.0\r\n\r\n"}, // 3 request, 18 bytes
		{false, "A", 5001, 1019, ""},                       // 4 ACK
		{true, "S", 900000000, 0, ""},                      // 5 SYN, other ISN, same 4-tuple
		{true, "PA", 1019, 5001, "Host: x\r\n"},            // 6 more data, 9 bytes
		{false, "A", 5001, 1028, ""},                       // 7 ACK
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pkts []rawPacket
	for i, s := range segs {
		eth := &layers.Ethernet{SrcMAC: smac, DstMAC: cmac, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: sip, DstIP: cip, Id: uint16(100 + i)}
		tcp := &layers.TCP{SrcPort: sport, DstPort: cport, Seq: s.seq, Ack: s.ack, Window: 64240,
			SYN: strings.Contains(s.flags, "S"), ACK: strings.Contains(s.flags, "A"), PSH: strings.Contains(s.flags, "P")}
		if s.fromClient {
			eth.SrcMAC, eth.DstMAC = cmac, smac
			ip.SrcIP, ip.DstIP = cip, sip
			tcp.SrcPort, tcp.DstPort = cport, sport
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(s.payload)); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}
		pkts = append(pkts, rawPacket{ci, data})
	}
	return writePcap(t, t.TempDir(), "syn-on-established.pcap", layers.LinkTypeEthernet, pkts)
}
