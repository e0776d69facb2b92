package hasync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
)

// connLines are packets that start one connection each, of every kind
// of tuple.
var connLines = []string{
	"tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192 wscale=7",
	"tcp [2001:db8::1]:40000 > [2001:db8::2]:443 S seq=1 win=65535",
	"udp 198.18.0.1:5353 > 198.18.0.2:53 len=30",
	"udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=12",
	"icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1 len=56",
	"icmp6 2001:db8::1 > 2001:db8::2 type=128 id=9",
	"gre 198.18.0.1 > 198.18.0.2",
	"proto=33 198.18.0.1 > 198.18.0.2",
}

// testRecords returns n records of real entries: the connections of
// connLines, then UDP flows.
func testRecords(tb testing.TB, n int) []conntrack.Record {
	tb.Helper()
	t := conntrack.New(conntrack.Config{Seed: 1, Limit: n + 16})
	now := int64(1e9)
	commit := func(line string) {
		p := pkttest.MustFields(tb, line)
		r := t.Track(p, now)
		if r.Label != conntrack.LabelNew || !t.Commit(p, &r, now) {
			tb.Fatalf("%s: not committed (%v %s)", line, r.Label, r.ReasonString())
		}
	}
	for i := 0; i < n; i++ {
		if i < len(connLines) {
			commit(connLines[i])
			continue
		}
		commit(fmt.Sprintf("udp 198.18.%d.%d:%d > 198.19.0.1:53", i>>8&255, i&255, 1024+i>>16))
	}
	var recs []conntrack.Record
	t.ExportAll(now, func(r *conntrack.Record) bool {
		recs = append(recs, *r)
		return true
	})
	if len(recs) != n {
		tb.Fatalf("exported %d records, want %d", len(recs), n)
	}
	return recs
}

// recordsFrame encodes recs as RECORDS frames (as many as they need).
func recordsFrames(recs []conntrack.Record, seq uint64, flags uint8) []byte {
	bt := newBatch(typeRecords)
	var out []byte
	for i := range recs {
		if bt.full() {
			out = append(out, bt.frame(seq, flags)...)
			seq++
			bt.reset()
		}
		bt.addRecord(&recs[i])
	}
	return append(out, bt.frame(seq, flags)...)
}

func TestRoundTrip(t *testing.T) {
	recs := testRecords(t, 40)
	var keys []conntrack.Key
	for i := range recs {
		k, err := recs[i].Key()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	del := newBatch(typeDelete)
	for _, k := range keys {
		del.addKey(k)
	}
	h := hello{version: Version, limit: 262144, session: [16]byte{1, 2, 3, 15: 16}, name: "fw-b.example"}
	var stream []byte
	stream = appendHello(stream, 1, h)
	stream = append(stream, recordsFrames(recs, 2, flagAck)...)
	stream = append(stream, del.frame(3, flagAck)...)
	stream = appendValue(stream, typeAck, 0, 4, 3)
	stream = appendValue(stream, typeBulkStart, 0, 5, 40)
	stream = appendValue(stream, typeBulkEnd, flagAck, 6, 40)
	stream = appendKeepalive(stream, 7)

	var got []frame
	for b := stream; len(b) > 0; {
		f, n, err := parseFrame(b)
		if err != nil {
			t.Fatalf("frame %d: %v", len(got)+1, err)
		}
		got = append(got, f)
		b = b[n:]
	}
	if len(got) != 7 {
		t.Fatalf("%d frames, want 7", len(got))
	}
	for i, f := range got {
		if f.seq != uint64(i+1) || f.version != Version {
			t.Errorf("frame %d: seq %d version %d", i, f.seq, f.version)
		}
	}
	if g := got[0].hello(); g != h {
		t.Errorf("HELLO: got %+v, want %+v", g, h)
	}
	if f := got[1]; f.typ != typeRecords || f.flags != flagAck || f.count() != len(recs) {
		t.Fatalf("RECORDS: type %d flags %#x count %d", f.typ, f.flags, f.count())
	}
	for i := range recs {
		if *got[1].record(i) != recs[i] {
			t.Errorf("record %d differs", i)
		}
	}
	if f := got[2]; f.typ != typeDelete || f.count() != len(keys) {
		t.Fatalf("DELETE: type %d count %d", f.typ, f.count())
	}
	for i, want := range keys {
		if k, err := got[2].key(i); err != nil || k != want {
			t.Errorf("key %d: got %v (%v), want %v", i, k, err, want)
		}
	}
	for i, want := range []struct {
		typ uint8
		v   uint64
	}{{typeAck, 3}, {typeBulkStart, 40}, {typeBulkEnd, 40}} {
		if f := got[3+i]; f.typ != want.typ || f.value() != want.v {
			t.Errorf("%s: got %s %d", typeName(want.typ), typeName(f.typ), f.value())
		}
	}
	if got[6].typ != typeKeepalive || len(got[6].body) != 0 {
		t.Errorf("KEEPALIVE: %+v", got[6])
	}
}

// TestKeyBytes: putKey writes every kind of tuple as the record format
// has it, so that Record.Key reads back the same Key.
func TestKeyBytes(t *testing.T) {
	for _, k := range []conntrack.Key{
		conntrack.NewKey(packet.ProtoTCP, netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:80")),
		conntrack.NewKey(packet.ProtoUDP, netip.MustParseAddrPort("[2001:db8::1]:5353"), netip.MustParseAddrPort("[2001:db8::2]:53")),
		conntrack.NewICMPKey(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 8, 0, 7),
		conntrack.NewICMPKey(netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1"), 0, 0, 0),
		conntrack.NewICMPKey(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 128, 0, 9),
		conntrack.NewGREKey(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 0x4001),
		conntrack.NewKey(packet.Proto(33), netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), 0), netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), 0)),
	} {
		var r conntrack.Record
		putKey(r[:], k)
		got, err := r.Key()
		if err != nil || got != k {
			t.Errorf("%v: read back %v (%v)", k, got, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	recs := testRecords(t, 2)
	good := recordsFrames(recs, 1, flagAck)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	le := binary.LittleEndian
	for _, c := range []struct {
		name string
		b    []byte
		want Reason
	}{
		{"magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), ReasonGarbage},
		{"version 2", mut(func(b []byte) []byte { b[4] = 2; return b }), ReasonVersion},
		{"version 0", mut(func(b []byte) []byte { b[4] = 0; return b }), ReasonVersion},
		{"unknown type", mut(func(b []byte) []byte { b[5] = 8; return b }), ReasonGarbage},
		{"type 0", mut(func(b []byte) []byte { b[5] = 0; return b }), ReasonGarbage},
		{"unknown flag", mut(func(b []byte) []byte { b[6] |= 4; return b }), ReasonGarbage},
		{"reserved", mut(func(b []byte) []byte { b[7] = 1; return b }), ReasonGarbage},
		{"oversized", mut(func(b []byte) []byte { le.PutUint32(b[8:], maxBody+1); return b }), ReasonOversized},
		{"huge", mut(func(b []byte) []byte { le.PutUint32(b[8:], 1<<32-1); return b }), ReasonOversized},
		{"seq 0", mut(func(b []byte) []byte { le.PutUint64(b[12:], 0); return b }), ReasonGarbage},
		{"count too big", mut(func(b []byte) []byte { le.PutUint32(b[20:], 3); return b }), ReasonGarbage},
		{"count 0", mut(func(b []byte) []byte { le.PutUint32(b[20:], 0); return b }), ReasonGarbage},
		{"body short of its records", mut(func(b []byte) []byte {
			le.PutUint32(b[8:], uint32(len(b)-headerSize-1))
			return b[:len(b)-1]
		}), ReasonGarbage},
		{"truncated", good[:len(good)-1], ReasonGarbage},
		{"header only", good[:10], ReasonGarbage},
		{"ACK of 0", appendValue(nil, typeAck, 0, 1, 0), ReasonGarbage},
		{"ACK with a flag", appendValue(nil, typeAck, flagAck, 1, 1), ReasonGarbage},
		{"KEEPALIVE with a body", append(appendHeader(nil, typeKeepalive, 0, 1, 1), 0), ReasonGarbage},
		{"BULK_START short", append(appendHeader(nil, typeBulkStart, 0, 1, 4), 0, 0, 0, 0), ReasonGarbage},
		{"HELLO empty name", appendHello(nil, 1, hello{version: 1}), ReasonGarbage},
		{"HELLO name length", func() []byte {
			b := appendHello(nil, 1, hello{version: 1, name: "ab"})
			b[headerSize+1] = 3
			return b
		}(), ReasonGarbage},
		{"HELLO reserved", func() []byte {
			b := appendHello(nil, 1, hello{version: 1, name: "ab"})
			b[headerSize+2] = 1
			return b
		}(), ReasonGarbage},
	} {
		_, _, err := parseFrame(c.b)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Reason != c.want || !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: got %v, want a %s error", c.name, err, c.want)
		}
	}
}

// TestDecodeNoAllocs: reading a frame of records costs no allocation.
func TestDecodeNoAllocs(t *testing.T) {
	recs := testRecords(t, MaxRecords)
	b := recordsFrames(recs, 1, flagAck)
	if n := testing.AllocsPerRun(100, func() {
		f, _, err := parseFrame(b)
		if err != nil {
			panic(err)
		}
		for i := range f.count() {
			_ = f.record(i)[36]
		}
	}); n != 0 {
		t.Errorf("parseFrame: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := parseHeader(b[:10]); err == nil {
			panic("short header parsed")
		}
	}); n != 0 {
		t.Errorf("a refused header: %v allocations, want 0", n)
	}
}

// TestMaxRecordsFit: a full RECORDS frame is exactly within MaxFrame,
// one more record is not.
func TestMaxRecordsFit(t *testing.T) {
	bt := newBatch(typeRecords)
	var rec conntrack.Record
	for !bt.full() {
		bt.addRecord(&rec)
	}
	if bt.n != MaxRecords || len(bt.frame(1, 0)) > MaxFrame || len(bt.b)+conntrack.RecordSize <= MaxFrame {
		t.Errorf("full batch: %d records, %d bytes; MaxRecords %d, MaxFrame %d", bt.n, len(bt.b), MaxRecords, MaxFrame)
	}
}

func BenchmarkEncodeRecords(b *testing.B) {
	recs := testRecords(b, MaxRecords)
	bt := newBatch(typeRecords)
	b.SetBytes(int64(len(recs) * conntrack.RecordSize))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bt.reset()
		for j := range recs {
			bt.addRecord(&recs[j])
		}
		_ = bt.frame(uint64(i+1), flagAck)
	}
}

func BenchmarkDecodeRecords(b *testing.B) {
	recs := testRecords(b, MaxRecords)
	buf := recordsFrames(recs, 1, flagAck)
	b.SetBytes(int64(len(recs) * conntrack.RecordSize))
	b.ReportAllocs()
	for b.Loop() {
		f, _, err := parseFrame(buf)
		if err != nil {
			b.Fatal(err)
		}
		for i := range f.count() {
			_ = f.record(i)[36]
		}
	}
}
