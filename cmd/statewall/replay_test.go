package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/pflog"
)

// countPackets counts a pcap's packets with pcapgo and returns the byte
// offset where each packet record starts.
func countPackets(t *testing.T, name string) []int {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	off := 24
	for {
		_, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return offs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		offs = append(offs, off)
		off += 16 + ci.CaptureLength
	}
}

// jsonLines parses every line of out as a JSON object and returns the
// packet records; the last line must be the summary record, and only it.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	recs, _ := jsonRecords(t, out)
	return recs
}

// jsonRecords is jsonLines that also returns the summary record's object.
func jsonRecords(t *testing.T, out string) (recs []map[string]any, summary map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", len(recs)+1, err, sc.Text())
		}
		if summary != nil {
			t.Fatalf("line %d follows the summary record: %s", len(recs)+2, sc.Text())
		}
		if s, ok := m["summary"]; ok {
			if summary, ok = s.(map[string]any); !ok {
				t.Fatalf("summary record %s: not an object", sc.Text())
			}
			continue
		}
		recs = append(recs, m)
	}
	if summary == nil {
		t.Fatal("no summary record at the end of the JSONL output")
	}
	return recs, summary
}

// TestReplayJSONL: --format jsonl prints one object per packet, in file
// order, with the keys of the contract (README "Output formats"); the keys
// of an engine appear only in the modes that run it.
func TestReplayJSONL(t *testing.T) {
	rules := rulesDir + "/webserver.rules"
	files := []string{testdata + "/http-curl-v4.pcap", testdata + "/nmap-ack-scan.pcap", testdata + "/ping-v6.pcap"}
	want := map[string]int{}
	for _, f := range files {
		want[f] = len(countPackets(t, f))
	}
	for _, tc := range []struct {
		mode            string
		stateless, full bool
	}{
		{"compare", true, true},
		{"stateless", true, false},
		{"stateful", false, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			code, out, errs := statewall(t, append([]string{"replay", "--rules", rules, "--format", "jsonl", "--mode", tc.mode}, files...)...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			got := map[string]int{}
			fi := 0
			recs, sum := jsonRecords(t, out)
			if n, _ := sum["packets"].(float64); int(n) != len(recs) {
				t.Errorf("summary record: %v packets, %d records", sum["packets"], len(recs))
			}
			for k, on := range map[string]bool{"stateless": tc.stateless, "stateful": tc.full, "ct": tc.full, "disagreements": tc.stateless && tc.full} {
				if _, ok := sum[k]; ok != on {
					t.Errorf("summary record: key %q present %v in mode %s: %v", k, ok, tc.mode, sum)
				}
			}
			// The files were captured in another order than given: the
			// clock steps back where a file starts before the previous
			// one's end.
			if _, ok := sum["clock_steps_back"].(float64); sum["seed"] != float64(1) || !ok {
				t.Errorf("summary record: seed %v, clock steps back %v; want the default seed 1 and a count", sum["seed"], sum["clock_steps_back"])
			}
			for i, m := range recs {
				where := "line " + strconv.Itoa(i+1)
				f, _ := m["file"].(string)
				for fi < len(files) && f != files[fi] {
					fi++ // files come in the order given, each once
				}
				if fi == len(files) {
					t.Fatalf("%s: file %q out of order", where, f)
				}
				if idx, ok := m["index"].(float64); !ok || int(idx) != got[f] {
					t.Errorf("%s: index %v, want %d", where, m["index"], got[f])
				}
				got[f]++
				keys := []string{"ts", "proto", "len"}
				if tc.stateless {
					keys = append(keys, "stateless", "stateless_reason")
				}
				if tc.full {
					keys = append(keys, "stateful", "stateful_reason", "ct")
				}
				for _, k := range keys {
					if _, ok := m[k]; !ok {
						t.Errorf("%s: no %q: %v", where, k, m)
					}
				}
				for k, on := range map[string]bool{"stateless": tc.stateless, "stateful": tc.full, "ct": tc.full} {
					if _, ok := m[k]; ok != on {
						t.Errorf("%s: key %q present %v in mode %s", where, k, ok, tc.mode)
					}
				}
				if ts, _ := m["ts"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000000Z") {
					t.Errorf("%s: ts %q", where, ts)
				}
				if m["proto"] != "invalid" && (m["src"] == nil || m["dst"] == nil) {
					t.Errorf("%s: IP packet without src/dst: %v", where, m)
				}
			}
			for _, f := range files {
				if got[f] != want[f] {
					t.Errorf("%s: %d lines, the file has %d packets", f, got[f], want[f])
				}
			}
		})
	}
}

// TestReplayTruncated: a capture cut inside a packet: the packets before
// the cut are printed, then an error that names the file and the packet,
// exit 1.
func TestReplayTruncated(t *testing.T) {
	orig := testdata + "/http-curl-v4.pcap"
	offs := countPackets(t, orig)
	b, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	const k = 7
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, b[:offs[k]+20], 0o644); err != nil { // 4 bytes into packet k's data
		t.Fatal(err)
	}
	rules := rulesDir + "/webserver.rules"

	code, out, errs := statewall(t, "replay", "--rules", rules, "--format", "jsonl", cut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	recs := jsonLines(t, out)
	if len(recs) != k {
		t.Errorf("%d packets printed before the error, want %d", len(recs), k)
	}
	for i, m := range recs {
		if m["file"] != cut || m["index"] != float64(i) {
			t.Errorf("line %d: %v#%v", i+1, m["file"], m["index"])
		}
	}
	if !strings.HasPrefix(errs, "statewall replay: "+cut+": packet "+strconv.Itoa(k)+": ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("stderr %q: want one line naming %s and packet %d", errs, cut, k)
	}

	// The text format prints the packets and the summary of them first.
	code, out, errs = statewall(t, "replay", "--rules", rules, cut)
	if code != 1 || !strings.Contains(out, "packets: "+strconv.Itoa(k)+"\n") || !strings.Contains(errs, cut) {
		t.Errorf("text: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	if n := strings.Count(out, "198.18.0."); n < k {
		t.Errorf("text: %d packet lines, want %d", n, k)
	}
}

// TestReplayNotACapture: a file that is no capture: an error naming it,
// exit 1; the files before it were replayed.
func TestReplayNotACapture(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "notes.pcap")
	if err := os.WriteFile(bad, []byte("GET / HTTP/1.0\r\n\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := testdata + "/ping-v4.pcap"
	code, out, errs := statewall(t, "replay", "--rules", rulesDir+"/webserver.rules", "--format", "jsonl", good, bad)
	if code != 1 || !strings.HasPrefix(errs, "statewall replay: "+bad+": ") || !strings.Contains(errs, "not a pcap or pcapng file") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if n := len(jsonLines(t, out)); n != len(countPackets(t, good)) {
		t.Errorf("%d lines for the good file, want %d", n, len(countPackets(t, good)))
	}
	code, _, errs = statewall(t, "replay", "--rules", rulesDir+"/webserver.rules", filepath.Join(t.TempDir(), "missing.pcap"))
	if code != 1 || !strings.Contains(errs, "missing.pcap") {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
}

// TestReplaySummary: --format summary prints only the counts and groups.
func TestReplaySummary(t *testing.T) {
	f := testdata + "/nmap-ack-scan.pcap"
	n := len(countPackets(t, f))
	code, out, errs := statewall(t, "replay", "--rules", rulesDir+"/stateless-ack.rules", "--format", "summary", f)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if !strings.HasPrefix(out, "packets: "+strconv.Itoa(n)+"\n") || !strings.Contains(out, "only stateless passes:") || strings.Contains(out, "198.18.0.1:") {
		t.Errorf("summary:\n%s", out)
	}
}

// TestReplayWarnsDirection: rules with in/out and no `set local` match
// nothing in replay; replay says so on stderr but runs.
func TestReplayWarnsDirection(t *testing.T) {
	rf := filepath.Join(t.TempDir(), "nolocal.rules")
	if err := os.WriteFile(rf, []byte("pass in proto icmp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := statewall(t, "replay", "--rules", rf, "--format", "summary", testdata+"/ping-v4.pcap")
	if code != 0 || !strings.Contains(errs, "warning") || !strings.Contains(errs, "set local") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// TestReplayNoChecksum: a TCP checksum broken in the capture makes the SYN
// invalid for conntrack, as in the kernel; --no-checksum (the kernel's
// nf_conntrack_checksum=0) tracks it as new.
func TestReplayNoChecksum(t *testing.T) {
	src := testdata + "/http-curl-v4.pcap"
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := r.ReadPacketData()
	if err != nil {
		t.Fatal(err)
	}
	var p packet.Packet
	p.Decode(data, packet.LinkType(r.LinkType()))
	if p.Kind != packet.KindOK || p.Proto != packet.ProtoTCP || p.TCPFlags&packet.TCPSyn == 0 || !p.L4ChecksumOK() {
		t.Fatalf("%s: the first packet is not a SYN with a good checksum", src)
	}
	b[24+16+p.L4Off+16] ^= 0xff // the TCP checksum's first byte
	f := filepath.Join(t.TempDir(), "badsum.pcap")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		want  string
	}{{nil, "invalid"}, {[]string{"--no-checksum"}, "new"}} {
		args := append([]string{"replay", "--rules", rulesDir + "/webserver.rules", "--mode", "stateful", "--format", "jsonl"}, tc.flags...)
		code, out, errs := statewall(t, append(args, f)...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", tc.flags, code, errs)
		}
		recs := jsonLines(t, out)
		if len(recs) == 0 || recs[0]["ct"] != tc.want {
			t.Errorf("%v: the SYN is %v, want %s", tc.flags, recs[0]["ct"], tc.want)
		}
	}
}

// ifPkt is a UDP packet of a test capture and the index of the
// interface it is captured on.
type ifPkt struct {
	iface    int
	src, dst string
	dport    uint16
}

// udpEther is an Ethernet frame carrying a UDP datagram from src:1000 to
// dst:dport.
func udpEther(t *testing.T, src, dst string, dport uint16) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	udp := &layers.UDP{SrcPort: 1000, DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("x")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeIfCapture writes pkts 1 ms apart into dir/name: a pcapng with one
// Ethernet interface per name when names is not nil, else a pcap.
func writeIfCapture(t *testing.T, name string, names []string, pkts []ifPkt) string {
	t.Helper()
	var buf bytes.Buffer
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var write func(gopacket.CaptureInfo, []byte) error
	var flush func() error
	if names != nil {
		w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: names[0], LinkType: layers.LinkTypeEthernet}, pcapgo.DefaultNgWriterOptions)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names[1:] {
			if _, err := w.AddInterface(pcapgo.NgInterface{Name: n, LinkType: layers.LinkTypeEthernet}); err != nil {
				t.Fatal(err)
			}
		}
		write, flush = w.WritePacket, w.Flush
	} else {
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		write, flush = w.WritePacket, func() error { return nil }
	}
	for i, p := range pkts {
		data := udpEther(t, p.src, p.dst, p.dport)
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data), InterfaceIndex: p.iface}
		if err := write(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeRules writes a rules file and returns its name.
func writeRules(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.rules")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ifVerdicts runs replay with --format jsonl and returns, per packet,
// "in>out verdict" of the mode's engine (stateful unless stateless).
func ifVerdicts(t *testing.T, args ...string) (got []string, stderr string) {
	t.Helper()
	code, out, errs := statewall(t, append([]string{"replay", "--format", "jsonl"}, args...)...)
	if code != 0 {
		t.Fatalf("%q: exit %d, stderr %q", args, code, errs)
	}
	for _, r := range jsonLines(t, out) {
		v, _ := r["stateful"].(string)
		if v == "" {
			v, _ = r["stateless"].(string)
		}
		in, _ := r["in"].(string)
		o, _ := r["out"].(string)
		got = append(got, in+">"+o+" "+v)
	}
	return got, errs
}

// TestReplayPcapngInterfaces: a pcapng's interface names decide `on`
// rules, and the JSONL records name them.
func TestReplayPcapngInterfaces(t *testing.T) {
	rf := writeRules(t, "set default pass\nset local 198.18.0.1\npass in on lan0 proto udp\nblock in on wan0 proto udp\n")
	ng := writeIfCapture(t, "two.pcapng", []string{"lan0", "wan0"}, []ifPkt{
		{0, "198.18.1.2", "198.18.0.1", 53},
		{1, "198.18.2.2", "198.18.0.1", 53},
	})
	got, errs := ifVerdicts(t, "--rules", rf, ng)
	if want := []string{"lan0> pass", "wan0> block"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if errs != "" {
		t.Errorf("stderr %q", errs)
	}
	// The text table shows the interfaces too.
	_, out, _ := statewall(t, "replay", "--rules", rf, ng)
	if !strings.Contains(out, "iface") || !strings.Contains(out, "in lan0") || !strings.Contains(out, "in wan0") {
		t.Errorf("text output lacks the interfaces:\n%s", out)
	}
}

// TestReplayIfaceFlags: --iface names a pcap's interface, --iface-out the
// one forwarded packets leave by; --iface-addr gives antispoof its
// addresses.
func TestReplayIfaceFlags(t *testing.T) {
	pcap := writeIfCapture(t, "one.pcap", nil, []ifPkt{
		{0, "198.18.1.2", "198.19.0.9", 53},
		{0, "198.18.1.2", "198.19.0.9", 54},
	})
	rf := writeRules(t, "pass in on lan0 proto udp\npass out on wan0 proto udp to port 53\n")
	for _, tc := range []struct {
		flags []string
		want  []string
	}{
		{nil, []string{"> block", "> block"}},
		{[]string{"--iface", "lan0"}, []string{"lan0> block", "lan0> block"}},
		{[]string{"--iface", "lan0", "--iface-out", "wan0"}, []string{"lan0>wan0 pass", "lan0>wan0 block"}},
		{[]string{"--iface", "wan0", "--iface-out", "lan0"}, []string{"wan0>lan0 block", "wan0>lan0 block"}},
	} {
		got, _ := ifVerdicts(t, append(append([]string{"--rules", rf}, tc.flags...), pcap)...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.flags, got, tc.want)
		}
	}

	spoof := writeIfCapture(t, "spoof.pcap", nil, []ifPkt{
		{0, "198.18.1.5", "198.18.0.1", 53}, // lan0's network, arriving on wan0
		{0, "198.18.9.9", "198.18.0.1", 53},
	})
	rf = writeRules(t, "set default pass\nset local 198.18.0.1\nantispoof for lan0\n")
	got, errs := ifVerdicts(t, "--rules", rf, "--iface", "wan0", "--iface-addr", "lan0=198.18.1.1/24", spoof)
	if want := []string{"wan0> block", "wan0> pass"}; !slices.Equal(got, want) {
		t.Errorf("antispoof: got %q, want %q", got, want)
	}
	if errs != "" {
		t.Errorf("antispoof: stderr %q", errs)
	}
	// Without the addresses antispoof blocks nothing, and lint says so.
	got, errs = ifVerdicts(t, "--rules", rf, "--iface", "wan0", "--iface-addr", "wan0=198.18.2.1/24", spoof)
	if want := []string{"wan0> pass", "wan0> pass"}; !slices.Equal(got, want) {
		t.Errorf("antispoof without addresses: got %q, want %q", got, want)
	}
	if !strings.Contains(errs, "antispoof for lan0: there is no interface lan0") {
		t.Errorf("antispoof without addresses: stderr %q", errs)
	}
}

// TestReplayLintWarnings: replay prints the ruleset's warnings on stderr
// before the packets, and runs.
func TestReplayLintWarnings(t *testing.T) {
	rf := writeRules(t, "set local 198.18.0.1\npass in on eth9 inet proto udp\n")
	code, out, errs := statewall(t, "replay", "--rules", rf, "--iface", "lan0", "--format", "summary", testdata+"/dns-udp.pcap")
	want := rf + ":2:1: warning: rule 1: there is no interface eth9"
	if code != 0 || !strings.Contains(errs, want) || !strings.Contains(out, "packets:") {
		t.Errorf("exit %d, stderr %q (want %q), stdout %q", code, errs, want, out)
	}
}

// TestReplayIfaceUsageErrors: bad interface flags are usage errors that
// name the flag.
func TestReplayIfaceUsageErrors(t *testing.T) {
	rf := rulesDir + "/webserver.rules"
	pcap := testdata + "/ping-v4.pcap"
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--iface-addr", "eth1"}, `invalid value "eth1" for flag -iface-addr: "eth1": want NAME=PREFIX[,PREFIX...]`},
		{[]string{"--iface-addr", "eth1=198.18.1.1/33"}, `invalid value "eth1=198.18.1.1/33" for flag -iface-addr: eth1: "198.18.1.1/33" is not an address with its prefix length`},
		{[]string{"--iface-addr", "eth1=lan"}, `for flag -iface-addr: eth1: "lan" is not an address`},
		{[]string{"--iface", "a/b"}, `invalid value "a/b" for flag -iface: "a/b" is not an interface name`},
		{[]string{"--iface-out", "averyverylongname0"}, `for flag -iface-out: "averyverylongname0" is not an interface name`},
		{[]string{"--iface-out", ""}, `for flag -iface-out: "" is not an interface name`},
	} {
		code, out, errs := statewall(t, append(append([]string{"replay", "--rules", rf}, tc.args...), pcap)...)
		if code != 2 || !strings.Contains(errs, tc.msg) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errs, tc.msg)
		}
	}
}

// TestReplayLogTcpdump: --log writes a pflog capture that tcpdump reads,
// one line per logged record naming its rule and action, as many as the
// replay's output counts.
func TestReplayLogTcpdump(t *testing.T) {
	rf := writeRules(t, "set local 198.18.0.1\npass in on lan0 proto udp to port 53 log (all)\nblock in on wan0 proto udp log\npass out proto udp\n")
	ng := writeIfCapture(t, "two.pcapng", []string{"lan0", "wan0"}, []ifPkt{
		{0, "198.18.1.2", "198.18.0.1", 53},
		{1, "198.18.2.2", "198.18.0.1", 53},
		{0, "198.18.1.2", "198.18.0.1", 54}, // the default: not logged
	})
	logf := filepath.Join(t.TempDir(), "pflog")
	code, out, errs := statewall(t, "replay", "--rules", rf, "--format", "jsonl", "--log", logf, ng)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	recs, sum := jsonRecords(t, out)
	n := 0
	for _, r := range recs {
		if l, ok := r["logged"].(float64); ok {
			n += int(l)
		}
	}
	if lg, _ := sum["logged"].(map[string]any); n != 2 || lg["records"] != float64(2) || lg["packets"] != float64(2) {
		t.Errorf("%d packets logged, summary %v; want 2", n, sum["logged"])
	}
	// pflog's own reader agrees.
	f, err := os.Open(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pflog.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		var rec pflog.Record
		if err := rd.Next(&rec); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, pflog.Format(&rec))
	}
	want := []string{
		"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53",
		"rule 2/0(match): block in on wan0: 198.18.2.2.1000 > 198.18.0.1.53",
	}
	if len(got) != len(want) {
		t.Fatalf("log: %q, want %q", got, want)
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("log record %d: %q, want %q...", i, got[i], want[i])
		}
	}

	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed")
	}
	b, err := exec.Command(tcpdump, "-n", "-e", "-r", logf).Output()
	if err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != n {
		t.Fatalf("tcpdump printed %d lines, replay logged %d:\n%s", len(lines), n, b)
	}
	for i, w := range []string{"rule 1/0(match): pass in on lan0: 198.18.1.2.1000 > 198.18.0.1.53: ", "rule 2/0(match): block in on wan0: 198.18.2.2.1000 > 198.18.0.1.53: "} {
		if !strings.Contains(lines[i], w) {
			t.Errorf("tcpdump line %d: %q, want %q", i, lines[i], w)
		}
	}
}

// TestReplayLogBadFile: a --log file that cannot be created is an error
// before any packet.
func TestReplayLogBadFile(t *testing.T) {
	code, out, errs := statewall(t, "replay", "--rules", rulesDir+"/webserver.rules", "--log", filepath.Join(t.TempDir(), "no", "such", "dir"), testdata+"/ping-v4.pcap")
	if code == 0 || out != "" || !strings.Contains(errs, "--log") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestReplayBlockReturn: replay shows a block return rule's action, pf's
// words, and sends nothing (it has no sockets to send with).
func TestReplayBlockReturn(t *testing.T) {
	rf := writeRules(t, "set local 198.18.0.1\nblock return-icmp (filter-prohib) in proto udp to port 53\npass\n")
	ng := writeIfCapture(t, "ret.pcapng", []string{"lan0"}, []ifPkt{{0, "198.18.1.2", "198.18.0.1", 53}})
	code, out, errs := statewall(t, "replay", "--rules", rf, ng)
	if code != 0 || strings.Count(out, "block return-icmp rule 1") != 2 {
		t.Errorf("exit %d, stderr %q; want both engines' 'block return-icmp rule 1':\n%s", code, errs, out)
	}
}
