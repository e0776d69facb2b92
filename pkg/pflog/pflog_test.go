package pflog

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// samples are records in the firewall's words, with what tcpdump -n -e
// prints for them (tcpdump 4.99.3, Debian 12) and what Format prints.
var samples = []struct {
	decision, packet string
	tcpdump, format  string
}{
	{
		"block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S",
		"rule 3/0(match): block in on eth1: 198.18.1.2.40000 > 198.18.2.2.80: Flags [S], seq 1000, win 64240, length 0",
		"rule 3/0(match): block in on eth1: 198.18.1.2.40000 > 198.18.2.2.80: tcp S",
	},
	{
		"pass out on eth0 rule 7", "udp 198.18.2.2:5000 > 198.18.1.2:6000 len=12",
		"rule 7/0(match): pass out on eth0: 198.18.2.2.5000 > 198.18.1.2.6000: UDP, length 12",
		"rule 7/0(match): pass out on eth0: 198.18.2.2.5000 > 198.18.1.2.6000: udp len 12",
	},
	{
		"block in on eth1 rule 12", "icmp 198.18.1.2 > 198.18.2.2 echo-request",
		"rule 12/0(match): block in on eth1: 198.18.1.2 > 198.18.2.2: ICMP echo request, id 7, seq 1, length 8",
		"rule 12/0(match): block in on eth1: 198.18.1.2 > 198.18.2.2: icmp echo-request id 7 seq 1",
	},
	{
		"pass in on wg0 rule 1", "tcp [fd00:198:18::1]:40000 > [fd00:198:18::2]:443 SA",
		"rule 1/0(match): pass in on wg0: fd00:198:18::1.40000 > fd00:198:18::2.443: Flags [S.], seq 1000, ack 5000, win 64240, length 0",
		"rule 1/0(match): pass in on wg0: fd00:198:18::1.40000 > fd00:198:18::2.443: tcp SA",
	},
	{
		"block out on eth0 rule 4", "udp [fd00:198:18::2]:5000 > [fd00:198:18::1]:6000 len=20",
		"rule 4/0(match): block out on eth0: fd00:198:18::2.5000 > fd00:198:18::1.6000: UDP, length 20",
		"rule 4/0(match): block out on eth0: fd00:198:18::2.5000 > fd00:198:18::1.6000: udp len 20",
	},
	{
		"block in on veth-long-name0 rule 100", "icmp6 fd00:198:18::1 > fd00:198:18::2 echo-request",
		"rule 100/0(match): block in on veth-long-name0: fd00:198:18::1 > fd00:198:18::2: ICMP6, echo request, id 7, seq 1, length 8",
		"rule 100/0(match): block in on veth-long-name0: fd00:198:18::1 > fd00:198:18::2: icmp6 echo-request id 7 seq 1",
	},
}

func sampleRecords(tb testing.TB) []Record {
	var rs []Record
	for _, s := range samples {
		rs = append(rs, rec(tb, s.decision, s.packet))
	}
	return rs
}

// TestHeaderBytes pins the header layout byte by byte (doc.go's table).
func TestHeaderBytes(t *testing.T) {
	r := rec(t, "block out on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	r.Reason = ReasonStateMismatch
	got := AppendHeader(nil, &r)
	want := "3d" + "02" + "01" + "0a" + // length 61, AF_INET, block, state-mismatch
		hex.EncodeToString([]byte("eth1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")) +
		strings.Repeat("00", 16) + // ruleset
		"00000003" + "ffffffff" + // rulenr, subrulenr
		"ffffffff" + "ffffffff" + "ffffffff" + "ffffffff" + // uid, pid, rule_uid, rule_pid
		"02" + "000000" // out, pad
	if h := hex.EncodeToString(got); h != want {
		t.Errorf("header\n got %s\nwant %s", h, want)
	}
	if len(got) != HeaderLen {
		t.Errorf("len %d, want %d", len(got), HeaderLen)
	}
	r.Packet = pkt(t, "udp [fd00:198:18::2]:5000 > [fd00:198:18::1]:6000")
	if af := AppendHeader(nil, &r)[1]; af != 24 {
		t.Errorf("IPv6 af %d, want 24", af)
	}
}

func TestMakeIfname(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"eth0", "eth0"},
		{"", ""},
		{"veth-long-name0", "veth-long-name0"},
		{"veth-longer-name0", "veth-longer-nam"}, // cut to 15 bytes
	} {
		n := MakeIfname(tt.in)
		if n.String() != tt.want || n[15] != 0 {
			t.Errorf("MakeIfname(%q) = %q (last byte %d), want %q", tt.in, n.String(), n[15], tt.want)
		}
	}
}

func writeFile(tb testing.TB, rs []Record) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range rs {
		if err := w.Write(&rs[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

func readAll(tb testing.TB, r io.Reader) []Record {
	tb.Helper()
	rd, err := NewReader(r)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Record
	for {
		var rec Record
		err := rd.Next(&rec)
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		rec.Packet = bytes.Clone(rec.Packet)
		out = append(out, rec)
	}
}

func TestRoundTrip(t *testing.T) {
	rs := sampleRecords(t)
	rs[1].Reason = ReasonShort
	rs[2].RuleNr = NoRule
	got := readAll(t, bytes.NewReader(writeFile(t, rs)))
	if len(got) != len(rs) {
		t.Fatalf("read %d records, want %d", len(got), len(rs))
	}
	for i := range rs {
		want := rs[i]
		want.Family = want.family()
		want.Length = len(want.Packet)
		g := got[i]
		if !g.Time.Equal(want.Time) {
			t.Errorf("%d: time %v, want %v", i, g.Time, want.Time)
		}
		g.Time = want.Time
		if g.Action != want.Action || g.Reason != want.Reason || g.Dir != want.Dir || g.Family != want.Family ||
			g.RuleNr != want.RuleNr || g.Ifname != want.Ifname || g.Length != want.Length || !bytes.Equal(g.Packet, want.Packet) {
			t.Errorf("%d:\n got %+v\nwant %+v", i, g, want)
		}
	}
}

// TestPcapgoReads checks the file against an independent reader.
func TestPcapgoReads(t *testing.T) {
	rs := sampleRecords(t)
	r, err := pcapgo.NewReader(bytes.NewReader(writeFile(t, rs)))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != LinkTypePFLOG || r.Snaplen() != FileSnapLen {
		t.Errorf("link type %d snaplen %d", r.LinkType(), r.Snaplen())
	}
	for i := range rs {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data[HeaderLen:], rs[i].Packet) || !ci.Timestamp.Equal(rs[i].Time) || ci.Length != HeaderLen+len(rs[i].Packet) {
			t.Errorf("%d: pcapgo read %d bytes at %v", i, len(data), ci.Timestamp)
		}
	}
}

func TestFormat(t *testing.T) {
	for i, r := range sampleRecords(t) {
		if got := Format(&r); got != samples[i].format {
			t.Errorf("Format\n got %s\nwant %s", got, samples[i].format)
		}
	}
	r := rec(t, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	r.RuleNr, r.Reason, r.Packet = NoRule, ReasonShort, r.Packet[:30]
	if got, want := Format(&r), "rule /3(short): block in on eth1: 198.18.1.2 > 198.18.2.2: tcp (truncated)"; got != want {
		t.Errorf("Format\n got %s\nwant %s", got, want)
	}
	r.Packet = []byte{0x55}
	if got, want := Format(&r), "rule /3(short): block in on eth1: bad packet (malformed), 1 bytes"; got != want {
		t.Errorf("Format\n got %s\nwant %s", got, want)
	}
}

// tcpdumpLines runs tcpdump -n -e -r on file (or stdin) and returns its
// lines without the timestamp. It skips the test when tcpdump is missing.
func tcpdumpLines(t *testing.T, file string, stdin io.Reader) []string {
	t.Helper()
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed")
	}
	cmd := exec.Command(path, "-n", "-e", "-t", "-r", file)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", file, err, stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// TestTcpdump is the differential test: tcpdump reads what Writer writes.
func TestTcpdump(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pflog")
	if err := os.WriteFile(file, writeFile(t, sampleRecords(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := tcpdumpLines(t, file, nil)
	if len(lines) != len(samples) {
		t.Fatalf("tcpdump printed %d lines, want %d:\n%s", len(lines), len(samples), strings.Join(lines, "\n"))
	}
	for i, s := range samples {
		if lines[i] != s.tcpdump {
			t.Errorf("tcpdump\n got %s\nwant %s", lines[i], s.tcpdump)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	good := writeFile(t, sampleRecords(t)[:1])
	for _, tt := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotPcap},
		{"short", good[:10], ErrNotPcap},
		{"magic", append([]byte{1, 2, 3, 4}, good[4:]...), ErrNotPcap},
		{"linktype", func() []byte { b := bytes.Clone(good); b[20] = 1; return b }(), ErrLinkType},
	} {
		if _, err := NewReader(bytes.NewReader(tt.b)); !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
	}
	var r Record
	next := func(b []byte) error {
		rd, err := NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return rd.Next(&r)
	}
	if err := next(good[:FileHeaderLen+20]); err != io.ErrUnexpectedEOF {
		t.Errorf("cut record: %v", err)
	}
	b := bytes.Clone(good)
	b[FileHeaderLen+RecordHeaderLen] = 40 // header length field
	if err := next(b); !errors.Is(err, ErrBadHeader) {
		t.Errorf("length 40: %v", err)
	}
	b = bytes.Clone(good)
	b[FileHeaderLen+8] = 0xff // caplen > len
	if err := next(b); !errors.Is(err, ErrBadRecord) {
		t.Errorf("caplen: %v", err)
	}
}
