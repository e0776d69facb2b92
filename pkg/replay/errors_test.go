package replay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/replay"
)

// TestTruncatedCapture: a capture cut short (a copy interrupted, a disk
// full under tcpdump) replays up to the cut, then fails with a *FileError
// that names the file and the packet that could not be read.
func TestTruncatedCapture(t *testing.T) {
	orig := filepath.Join(repoTestdata, "http-curl-v4.pcap")
	pcap, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	pkts, link := readPcap(t, orig)
	ng, err := os.ReadFile(writeNg(t, t.TempDir(), "x.pcapng", []layers.LinkType{link}, [][]rawPacket{pkts}))
	if err != nil {
		t.Fatal(err)
	}
	const k = 5 // the packet the cut falls in
	for _, f := range []struct {
		ext  string
		b    []byte
		offs []int // where each packet's record (pcap) or block (pcapng) starts
		hdr  int   // the bytes before the packet data in it
	}{
		{".pcap", pcap, pcapOffsets(t, pcap), 16},
		{".pcapng", ng, pcapngOffsets(t, ng), 28},
	} {
		if len(f.offs) <= k+1 {
			t.Fatalf("%s has %d packets; the test cuts packet %d", f.ext, len(f.offs), k)
		}
		for _, tc := range []struct {
			name string
			cut  int
		}{
			{"mid-header", f.offs[k] + 7},                                     // inside the record or block header
			{"mid-data", f.offs[k] + f.hdr + (f.offs[k+1]-f.offs[k]-f.hdr)/2}, // inside the packet's bytes
			{"header-only", f.offs[k] + f.hdr},                                // the header promises bytes that never come
		} {
			t.Run(f.ext[1:]+"/"+tc.name, func(t *testing.T) {
				name := filepath.Join(t.TempDir(), "cut"+f.ext)
				if err := os.WriteFile(name, f.b[:tc.cut], 0o644); err != nil {
					t.Fatal(err)
				}
				rp, err := replay.New(replay.Config{Rules: loadRules(t, "webserver.rules")})
				if err != nil {
					t.Fatal(err)
				}
				var recs []replay.Record
				err = rp.ReplayFile(name, collect(&recs))
				var fe *replay.FileError
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v (%T), want *replay.FileError", err, err)
				}
				if fe.File != name || fe.Index != k {
					t.Errorf("FileError{File: %q, Index: %d}, want {%q, %d}", fe.File, fe.Index, name, k)
				}
				if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "packet "+strconv.Itoa(k)) {
					t.Errorf("error %q does not name the file and packet %d", err, k)
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("error %q does not wrap io.ErrUnexpectedEOF", err)
				}
				// The packets before the cut reached the sink, in order.
				if len(recs) != k {
					t.Fatalf("%d records reached the sink before the error, want %d", len(recs), k)
				}
				for i, r := range recs {
					if r.Index != i || r.File != name {
						t.Errorf("record %d is %s#%d", i, r.File, r.Index)
					}
				}
			})
		}
	}
}

// pcapngOffsets returns where each Enhanced Packet Block of a little-endian
// pcapng starts: blocks are type, total length, body, total length.
func pcapngOffsets(t testing.TB, b []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off+8 <= len(b); {
		typ, n := binary.LittleEndian.Uint32(b[off:]), int(binary.LittleEndian.Uint32(b[off+4:]))
		if n < 12 {
			t.Fatalf("block at %d: length %d", off, n)
		}
		if typ == 6 {
			offs = append(offs, off)
		}
		off += n
	}
	return offs
}

// TestNotACapture: files that are not captures fail with an error that
// names the file, before any packet.
func TestNotACapture(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"text.pcap", "this is not a capture\n", "not a pcap or pcapng file"},
		{"empty.pcap", "", "not a pcap or pcapng file"},
		{"short.pcap", "\xd4\xc3", "not a pcap or pcapng file"},
		// The pcapng magic, then garbage: the section header is broken.
		{"bad.pcapng", "\x0a\x0d\x0d\x0a" + strings.Repeat("\xff", 40), "not a pcap or pcapng file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(dir, tc.name)
			if err := os.WriteFile(name, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			rp, err := replay.New(replay.Config{Rules: loadRules(t, "webserver.rules")})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = rp.ReplayFile(name, func(*replay.Record) error { n++; return nil })
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), name+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q: ...%s...", err, name, tc.want)
			}
			if n != 0 {
				t.Errorf("%d records from a file that is no capture", n)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		rp, _ := replay.New(replay.Config{Rules: loadRules(t, "webserver.rules")})
		name := filepath.Join(dir, "does-not-exist.pcap")
		err := rp.ReplayFile(name, func(*replay.Record) error { return nil })
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v, want a not-exist error naming the file", err)
		}
	})
}

// TestSinkErrorStops: an error from the sink (a closed pipe) stops the
// replay and comes back unchanged.
func TestSinkErrorStops(t *testing.T) {
	rp, err := replay.New(replay.Config{Rules: loadRules(t, "webserver.rules")})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("pipe closed")
	n := 0
	err = rp.ReplayFile(filepath.Join(repoTestdata, "http-curl-v4.pcap"), func(*replay.Record) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Errorf("err = %v after %d records, want the sink's error after 3", err, n)
	}
}

func TestNoRules(t *testing.T) {
	if _, err := replay.New(replay.Config{}); err == nil {
		t.Error("New without a ruleset: no error")
	}
}

// TestPcapngSameAsPcap: the same packets in a pcapng file get the same
// records as in the classic pcap, including a file with several interfaces
// of different link types, where each packet is decoded by its own
// interface's link type.
func TestPcapngSameAsPcap(t *testing.T) {
	rs := loadRules(t, "stateless-ack.rules")
	dir := t.TempDir()

	type part struct {
		file string
		pkts []rawPacket
		link layers.LinkType
	}
	var parts []part
	for _, f := range []string{
		filepath.Join(repoTestdata, "hping3-out-of-window.pcap"), // Ethernet
		filepath.Join(sharedPcaps, "ipv4-frag-tcp-syn.pcap"),     // raw IPv4, fragments
		filepath.Join(repoTestdata, "ping-v6.pcap"),              // Ethernet, IPv6
	} {
		if _, err := os.Stat(f); err != nil {
			continue // the public corpus may be absent
		}
		pkts, link := readPcap(t, f)
		parts = append(parts, part{f, pkts, link})
	}

	// One pcapng per pcap.
	for _, p := range parts {
		ng := writeNg(t, dir, filepath.Base(p.file)+"ng", []layers.LinkType{p.link}, [][]rawPacket{p.pkts})
		want := replayAll(t, replay.Config{Rules: rs}, p.file)
		got := replayAll(t, replay.Config{Rules: rs}, ng)
		compareRecords(t, ng, got, want)
	}

	// All in one pcapng, one interface each, packets in file order.
	if len(parts) < 2 {
		return
	}
	var links []layers.LinkType
	var pkts [][]rawPacket
	var files []string
	for _, p := range parts {
		links, pkts, files = append(links, p.link), append(pkts, p.pkts), append(files, p.file)
	}
	ng := writeNg(t, dir, "all.pcapng", links, pkts)
	var want []replay.Record
	for _, f := range files {
		// A fresh Replayer for each, as the packets of the pcapng go
		// through one; the files share no connection, so state does not
		// matter.
		want = append(want, replayAll(t, replay.Config{Rules: rs}, f)...)
	}
	for i := range want {
		want[i].Index = i
	}
	got := replayAll(t, replay.Config{Rules: rs}, ng)
	compareRecords(t, ng, got, want)
}

// writeNg writes a pcapng with one interface per link type; the packets of
// pkts[i] go out on interface i, all of interface 0's first.
func writeNg(t *testing.T, dir, name string, links []layers.LinkType, pkts [][]rawPacket) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, links[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range links[1:] {
		id, err := w.AddInterface(pcapgo.NgInterface{Name: "intf" + strconv.Itoa(i+1), LinkType: l, TimestampResolution: 9})
		if err != nil || id != i+1 {
			t.Fatalf("AddInterface: %d, %v", id, err)
		}
	}
	for i, ps := range pkts {
		for _, p := range ps {
			ci := p.ci
			ci.InterfaceIndex = i
			if err := w.WritePacket(ci, p.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// compareRecords requires the same records but for the file name: the
// same packet fields, verdicts, reasons and labels.
func compareRecords(t *testing.T, name string, got, want []replay.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", name, len(got), len(want))
	}
	for i := range got {
		if g, w := describe(&got[i]), describe(&want[i]); g != w {
			t.Errorf("%s#%d:\n got %s\nwant %s", name, i, g, w)
		}
	}
}

// describe is everything a report shows of a record but its file.
func describe(r *replay.Record) string {
	return fmt.Sprintf("#%d %s %s %v:%d > %v:%d proto=%d flags=%#x icmp=%d/%d frag=%v len=%d kind=%v dir=%v | %v %s | %v %s ct=%s",
		r.Index, r.TS.UTC().Format(time.RFC3339Nano), r.ProtoName(), r.Src, r.SrcPort, r.Dst, r.DstPort, r.Proto, r.TCPFlags,
		r.ICMPType, r.ICMPCode, r.Fragment, r.Len, r.Kind, r.Dir,
		r.Stateless.Verdict, r.Stateless.Reason(), r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label())
}
