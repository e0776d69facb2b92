package replay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/replay"
)

// logged replays files with a pflog log and returns the records, the
// log's lines as pflog.Format prints them (with the interface) and the
// replay's records.
func logged(t *testing.T, cfg replay.Config, files ...string) (lines []string, logs []pflog.Record, recs []replay.Record) {
	t.Helper()
	var buf bytes.Buffer
	w, err := pflog.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Log = w
	recs = replayAll(t, cfg, files...)
	rd, err := pflog.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for {
		var rec pflog.Record
		if err := rd.Next(&rec); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rec.Packet = append([]byte(nil), rec.Packet...)
		logs = append(logs, rec)
		lines = append(lines, pflog.Format(&rec))
	}
	n := 0
	for i := range recs {
		n += int(recs[i].Logged)
	}
	if n != len(logs) {
		t.Errorf("the records count %d logged, the log has %d", n, len(logs))
	}
	return lines, logs, recs
}

// checkLines requires each line to start with the wanted prefix.
func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d log records:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("record %d: %q, want %q...", i, got[i], want[i])
		}
	}
}

// TestLogRules: a packet decided by a `log` rule is logged with the
// rule's number, action, direction and interface, and its IP bytes and
// time from the capture; others are not.
func TestLogRules(t *testing.T) {
	rs := parseRules(t, `
set local 198.18.0.1
pass in on lan0 proto udp to port 53 log
block in on wan0 proto udp log
pass out proto udp
`)
	ng := writeNamedNg(t, []string{"lan0", "wan0"}, []ifPacket{
		{0, "198.18.1.2", "198.18.0.1", 1000, 53}, // rule 1
		{0, "198.18.0.1", "198.18.1.2", 53, 1000}, // the reply: by state, not logged
		{1, "198.18.2.2", "198.18.0.1", 1000, 53}, // rule 2
		{1, "198.18.0.1", "198.18.2.2", 1000, 53}, // rule 3: no log
		{0, "198.18.1.2", "198.18.0.1", 1000, 54}, // the default: not logged
	})
	for _, mode := range []replay.Mode{replay.Compare, replay.Stateful, replay.Stateless} {
		lines, logs, recs := logged(t, replay.Config{Rules: rs, Mode: mode}, ng)
		checkLines(t, lines, []string{
			"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53: udp",
			"rule 2/0(match): block in on wan0: 198.18.2.2.1000 > 198.18.0.1.53: udp",
		})
		if len(logs) != 2 {
			continue
		}
		// The packet from its IP header to its end (without the
		// Ethernet frame's padding), as captured, and its time.
		for i, at := range []int{0, 2} {
			frame := udpFrame(t, recs[at].Src, recs[at].Dst, recs[at].SrcPort, recs[at].DstPort)
			ip := frame[14 : 14+int(binary.BigEndian.Uint16(frame[16:]))]
			if !bytes.Equal(logs[i].Packet, ip) || !logs[i].Time.Equal(recs[at].TS) || logs[i].Family != 4 {
				t.Errorf("%v: record %d: packet % x at %v, want % x at %v", mode, i, logs[i].Packet, logs[i].Time, ip, recs[at].TS)
			}
		}
		for i, want := range []uint8{1, 0, 1, 0, 0} {
			if recs[i].Logged != want {
				t.Errorf("%v: packet %d: Logged %d, want %d", mode, i, recs[i].Logged, want)
			}
		}
	}
}

// TestLogAll: `log (all)` logs the later packets of the connections its
// rule created, replies included, which pass by state with no rule; in
// stateless mode only the rule's own matches.
func TestLogAll(t *testing.T) {
	rs := parseRules(t, `
set local 198.18.0.1
pass in on lan0 proto udp to port 53 log (all)
pass in on lan0 proto udp to port 54
pass out proto udp
`)
	ng := writeNamedNg(t, []string{"lan0"}, []ifPacket{
		{0, "198.18.1.2", "198.18.0.1", 1000, 53},
		{0, "198.18.0.1", "198.18.1.2", 53, 1000},
		{0, "198.18.1.2", "198.18.0.1", 1000, 53},
		{0, "198.18.1.2", "198.18.0.1", 1000, 54}, // another connection, another rule
		{0, "198.18.0.1", "198.18.1.2", 54, 1000},
	})
	lines, _, _ := logged(t, replay.Config{Rules: rs, Mode: replay.Stateful}, ng)
	checkLines(t, lines, []string{
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53",
		"rule 1/0(match): pass out on lan0: 198.18.0.1.53 > 198.18.1.2.1000",
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53",
	})
	lines, _, _ = logged(t, replay.Config{Rules: rs, Mode: replay.Stateless}, ng)
	checkLines(t, lines, []string{
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53",
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53",
	})
}

// TestLogForwarded: a forwarded packet is logged once per evaluation
// whose rule logs, in on the interface it arrived on and out on the one it
// leaves by, as pf logs it.
func TestLogForwarded(t *testing.T) {
	rs := parseRules(t, `
pass in on lan0 proto udp log
pass out on wan0 proto udp to port 53 log
block out on wan0 proto udp to port 54 log
pass out on wan0 proto udp to port 55
`)
	pcap := writeUDPPcap(t, []ifPacket{
		{0, "198.18.1.2", "198.19.0.9", 1000, 53},
		{0, "198.18.1.2", "198.19.0.9", 1000, 54},
		{0, "198.18.1.2", "198.19.0.9", 1000, 55},
	})
	lines, _, recs := logged(t, replay.Config{Rules: rs, Mode: replay.Stateless, Iface: "lan0", IfaceOut: "wan0"}, pcap)
	checkLines(t, lines, []string{
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.19.0.9.53",
		"rule 2/0(match): pass out on wan0: 198.18.1.2.1000 > 198.19.0.9.53",
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.19.0.9.54",
		"rule 3/0(match): block out on wan0: 198.18.1.2.1000 > 198.19.0.9.54",
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.19.0.9.55",
	})
	for i, want := range []uint8{2, 2, 1} {
		if recs[i].Logged != want {
			t.Errorf("packet %d: Logged %d, want %d", i, recs[i].Logged, want)
		}
	}
}

// udpFragments returns an Ethernet frame per fragment of a UDP datagram
// 198.18.1.2:1000 > 198.18.0.1:53 with 16 bytes of data, in three
// fragments of 8 bytes.
func udpFragments(t *testing.T) [][]byte {
	t.Helper()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	ip := layers.IPv4{Version: 4, TTL: 64, Id: 7, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(198, 18, 1, 2), DstIP: net.IPv4(198, 18, 0, 1)}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 53}
	if err := udp.SetNetworkLayerForChecksum(&ip); err != nil {
		t.Fatal(err)
	}
	l4 := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(l4, opts, udp, gopacket.Payload("a query, 3 parts")); err != nil {
		t.Fatal(err)
	}
	var frags [][]byte
	for off := 0; off < len(l4.Bytes()); off += 8 {
		f := ip
		f.FragOffset = uint16(off / 8)
		if off+8 < len(l4.Bytes()) {
			f.Flags = layers.IPv4MoreFragments
		}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, eth, &f, gopacket.Payload(l4.Bytes()[off:off+8])); err != nil {
			t.Fatal(err)
		}
		frags = append(frags, append([]byte(nil), buf.Bytes()...))
	}
	return frags
}

// TestLogFragments: the stateful engine decides a datagram once it is
// whole, and it is logged once, whole (pf filters reassembled packets);
// the stateless engine decides, and logs, each fragment.
func TestLogFragments(t *testing.T) {
	rs := parseRules(t, "set local 198.18.0.1\npass in proto udp log\n")
	var raw []rawPacket
	for i, f := range udpFragments(t) {
		raw = append(raw, rawPacket{gopacket.CaptureInfo{Timestamp: ifStart.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f)}, f})
	}
	pcap := writePcap(t, t.TempDir(), "frags.pcap", layers.LinkTypeEthernet, raw)
	lines, logs, recs := logged(t, replay.Config{Rules: rs, Mode: replay.Stateful, Iface: "lan0"}, pcap)
	checkLines(t, lines, []string{"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53: udp"})
	if len(logs) == 1 {
		var p packet.Packet
		p.Decode(logs[0].Packet, packet.LinkIP)
		if p.Frag.IsFragment || p.IPLen != 20+8+16 || !logs[0].Time.Equal(recs[2].TS) {
			t.Errorf("logged %d bytes at %v, fragment %v; want the whole datagram (44 bytes) at %v", p.IPLen, logs[0].Time, p.Frag.IsFragment, recs[2].TS)
		}
		if recs[0].Logged != 0 || recs[1].Logged != 0 || recs[2].Logged != 1 {
			t.Errorf("Logged %d %d %d, want 0 0 1", recs[0].Logged, recs[1].Logged, recs[2].Logged)
		}
	}
	lines, _, _ = logged(t, replay.Config{Rules: rs, Mode: replay.Stateless, Iface: "lan0"}, pcap)
	if len(lines) != 3 {
		t.Errorf("stateless: %d records, want one per fragment:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// failWriter fails every write after the first (the pcap header).
type failWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (f *failWriter) Write(b []byte) (int, error) {
	if f.n++; f.n > 1 {
		return 0, errDiskFull
	}
	return len(b), nil
}

// TestLogWriteErrorStops: replay writes its log synchronously and stops
// at an error, which it returns.
func TestLogWriteErrorStops(t *testing.T) {
	w, err := pflog.NewWriter(&failWriter{})
	if err != nil {
		t.Fatal(err)
	}
	rs := parseRules(t, "pass proto udp log\n")
	pcap := writeUDPPcap(t, []ifPacket{{0, "198.18.1.2", "198.18.0.1", 1000, 53}, {0, "198.18.1.2", "198.18.0.1", 1000, 53}})
	rp, err := replay.New(replay.Config{Rules: rs, Log: w})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = rp.ReplayFile(pcap, func(*replay.Record) error { n++; return nil })
	if !errors.Is(err, errDiskFull) || n != 0 {
		t.Errorf("ReplayFile: %v after %d records, want %v before any", err, n, errDiskFull)
	}
}

// TestLogNoAllocsPerPacket: logging allocates nothing per packet either,
// `log (all)` connections included once they exist.
func TestLogNoAllocsPerPacket(t *testing.T) {
	rs := parseRules(t, "set local 198.18.0.1\npass in on lan0 proto udp log (all)\npass out on wan0 proto udp log\n")
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
		w, err := pflog.NewWriter(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		rp, err := replay.New(replay.Config{Rules: rs, Mode: mode, IfaceOut: "wan0", Log: w})
		if err != nil {
			t.Fatal(err)
		}
		logged := 0
		sink := func(r *replay.Record) error { logged += int(r.Logged); return nil }
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
		if logged == 0 {
			t.Errorf("%v: nothing logged", mode)
		}
	}
}
