package replay_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// Paths from this package's directory.
const (
	repoTestdata = "../../testdata"
	sharedPcaps  = "../../../shared/pcaps"
	rulesDir     = "../../rules"
)

// corpus lists every capture the replay is tested on: the ones made for
// this project and the public corpus. The public corpus lives outside the
// repository; a checkout without it still tests the project's own files.
func corpus(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{repoTestdata, sharedPcaps} {
		m, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 && dir == repoTestdata {
			t.Fatalf("no captures in %s", dir)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	return files
}

// needFile skips the test when a capture of the public corpus is missing.
func needFile(t testing.TB, name string) string {
	t.Helper()
	if _, err := os.Stat(name); err != nil {
		t.Skipf("capture not available: %v", err)
	}
	return name
}

func loadRules(t testing.TB, name string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.ParseFile(filepath.Join(rulesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func parseRules(t testing.TB, src string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Parse("test.rules", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// rawPacket is one packet of a capture as pcapgo reads it: the independent
// view the replay's records are checked against.
type rawPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// readPcap reads every packet of a classic pcap file with pcapgo.
func readPcap(t testing.TB, name string) ([]rawPacket, layers.LinkType) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var pkts []rawPacket
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: packet %d: %v", name, len(pkts), err)
		}
		pkts = append(pkts, rawPacket{ci, data})
	}
	return pkts, r.LinkType()
}

// writePcap writes packets as a classic pcap file in dir and returns its
// name.
func writePcap(t testing.TB, dir, name string, link layers.LinkType, pkts []rawPacket) string {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pcapOffsets returns where each packet record of a classic little- or
// big-endian pcap starts (its 16-byte header), read from the file format
// itself: a 24-byte file header, then header and captured bytes per packet.
func pcapOffsets(t testing.TB, b []byte) []int {
	t.Helper()
	if len(b) < 24 {
		t.Fatal("not a pcap file")
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	default:
		bo = binary.BigEndian
	}
	var offs []int
	for off := 24; off+16 <= len(b); {
		offs = append(offs, off)
		off += 16 + int(bo.Uint32(b[off+8:]))
	}
	return offs
}

// replayAll replays files with one Replayer and returns copies of every
// record, in the order the sink saw them.
func replayAll(t testing.TB, cfg replay.Config, files ...string) []replay.Record {
	t.Helper()
	rp, err := replay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var recs []replay.Record
	for _, f := range files {
		if err := rp.ReplayFile(f, collect(&recs)); err != nil {
			t.Fatalf("ReplayFile(%s): %v", f, err)
		}
	}
	return recs
}

// collect is a sink that keeps a copy of every record (the Replayer reuses
// its Record).
func collect(recs *[]replay.Record) replay.Sink {
	return func(r *replay.Record) error {
		*recs = append(*recs, *r)
		return nil
	}
}

// decoded is what gopacket's full decoder makes of a captured packet: the
// reference the tests derive their expectations from.
type decoded struct {
	ip4 *layers.IPv4
	ip6 *layers.IPv6
	tcp *layers.TCP
}

func decodeRef(data []byte, link layers.LinkType) decoded {
	p := gopacket.NewPacket(data, link, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var d decoded
	if l, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		d.ip4 = l
	}
	if l, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		d.ip6 = l
	}
	if l, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		d.tcp = l
	}
	return d
}

// src is the packet's source IP address as text ("" without IP).
func (d decoded) src() string {
	switch {
	case d.ip4 != nil:
		return d.ip4.SrcIP.String()
	case d.ip6 != nil:
		return d.ip6.SrcIP.String()
	}
	return ""
}

// dst is the packet's destination IP address as text ("" without IP).
func (d decoded) dst() string {
	switch {
	case d.ip4 != nil:
		return d.ip4.DstIP.String()
	case d.ip6 != nil:
		return d.ip6.DstIP.String()
	}
	return ""
}

// flags renders TCP flags in tcpdump's letters and order.
func (d decoded) flags() string {
	if d.tcp == nil {
		return ""
	}
	var s []byte
	for _, f := range []struct {
		on bool
		c  byte
	}{{d.tcp.FIN, 'F'}, {d.tcp.SYN, 'S'}, {d.tcp.RST, 'R'}, {d.tcp.PSH, 'P'}, {d.tcp.ACK, 'A'}, {d.tcp.URG, 'U'}, {d.tcp.ECE, 'E'}, {d.tcp.CWR, 'W'}} {
		if f.on {
			s = append(s, f.c)
		}
	}
	return string(s)
}

// usec is t to the microsecond, the resolution of every capture here.
func usec(t time.Time) time.Time { return t.Truncate(time.Microsecond) }
