package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/packet"
)

// grePkt decodes a GRE packet between the hosts of hosts ("198.18.0.1 >
// 198.18.0.2", pkttest's notation) whose header starts with hdr (flags and
// version, protocol, then what follows).
func grePkt(t testing.TB, hosts string, hdr ...byte) *packet.Packet {
	t.Helper()
	n := max(len(hdr)-8, 0)
	b := pkttest.MustBytes(t, "gre "+hosts+" len="+strconv.Itoa(n))
	l4 := 20
	if b[0]>>4 == 6 {
		l4 = 40
	}
	b = b[:l4+len(hdr)]
	copy(b[l4:], hdr)
	if l4 == 20 {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], inetChecksum(b[:20]))
	} else {
		binary.BigEndian.PutUint16(b[4:], uint16(len(hdr)))
	}
	p := new(packet.Packet)
	p.Decode(b, packet.LinkIP)
	if p.Kind != packet.KindOK {
		t.Fatalf("decode %s: %v", hosts, p.Kind)
	}
	return p
}

// inetChecksum is the Internet checksum of b (RFC 1071).
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// icmpQuoting decodes an ICMP port unreachable from 198.18.0.2 to
// 198.18.0.1 quoting the IP header and 8 bytes of quote, as routers do.
func icmpQuoting(t *testing.T, quote *packet.Packet) *packet.Packet {
	q := quote.Data[:min(len(quote.Data), quote.L4Off+8)]
	b := pkttest.MustBytes(t, "icmp 198.18.0.2 > 198.18.0.1 type=3 code=3 len="+strconv.Itoa(len(q)))
	copy(b[28:], q)
	binary.BigEndian.PutUint16(b[22:], 0)
	binary.BigEndian.PutUint16(b[22:], inetChecksum(b[20:]))
	p := new(packet.Packet)
	p.Decode(b, packet.LinkIP)
	if p.Kind != packet.KindOK || !p.Inner.Valid {
		t.Fatalf("ICMP error: %v, inner %+v", p.Kind, p.Inner)
	}
	return p
}

// pptp is an enhanced GRE header carrying PPP to call id.
func pptp(callID uint16) []byte {
	return []byte{0x30, 0x01, 0x88, 0x0b, 0, 4, byte(callID >> 8), byte(callID), 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21}
}

// gre0 is a plain GRE header with a key, carrying IPv4.
func gre0(key byte) []byte { return []byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, key} }

// track tracks p and commits it when new.
func (tb *tbl) track(p *packet.Packet) Result {
	tb.t.Helper()
	r := tb.Track(p, tb.now())
	if r.Label == LabelNew {
		tb.Commit(p, &r, tb.now())
	}
	return r
}

func (tb *tbl) wantGRE(p *packet.Packet, label Label, reply bool) {
	tb.t.Helper()
	if r := tb.track(p); r.Label != label || r.Reply != reply {
		tb.t.Errorf("%v: %v reply=%v (%s), want %v reply=%v", p, r.Label, r.Reply, r.ReasonString(), label, reply)
	}
}

// greEntry returns the entry p belongs to.
func (tb *tbl) greEntry(p *packet.Packet) (EntryInfo, bool) {
	var k Key
	packetKey(&k, p)
	return tb.Get(k, tb.now())
}

// TestGREPlain: plain GRE has no keys in its tuple (the key field is not
// read), so both directions are one connection, with GRE's timeouts: 30 s
// unreplied, refreshed by 30 s by the first reply, then 180 s and assured.
func TestGREPlain(t *testing.T) {
	tb := newTbl(t, Config{})
	out, back := grePkt(t, "198.18.0.1 > 198.18.0.2", gre0(1)...), grePkt(t, "198.18.0.2 > 198.18.0.1", gre0(2)...)
	tb.wantGRE(out, LabelNew, false)
	tb.wantGRE(out, LabelNew, false)
	e, _ := tb.greEntry(out)
	if e.Timeout != 30*time.Second || e.Assured {
		t.Errorf("unreplied: %v", e)
	}
	tb.wantGRE(back, LabelEstablished, true)
	if e, _ = tb.greEntry(out); e.Timeout != 30*time.Second || e.Assured || !e.SeenReply {
		t.Errorf("after the first reply: %v", e)
	}
	tb.wantGRE(out, LabelEstablished, false)
	if e, _ = tb.greEntry(out); e.Timeout != 180*time.Second || !e.Assured {
		t.Errorf("replied: %v", e)
	}
	if got, want := e.String(), "gre      47 180 src=198.18.0.1 dst=198.18.0.2 srckey=0x0 dstkey=0x0 packets=3 bytes=84 src=198.18.0.2 dst=198.18.0.1 srckey=0x0 dstkey=0x0 packets=1 bytes=28 [ASSURED]"; got != want {
		t.Errorf("String:\n%s\nwant\n%s", got, want)
	}
	// Versions other than 1, and headers shorter than 4 bytes, are the
	// same tuple.
	tb.wantGRE(grePkt(t, "198.18.0.1 > 198.18.0.2", 0x00, 0x07, 0x08, 0x00), LabelEstablished, false)
	tb.wantGRE(grePkt(t, "198.18.0.2 > 198.18.0.1", 0x20, 0x01), LabelEstablished, true)
	tb.advance(180 * time.Second)
	tb.wantGRE(back, LabelNew, false)
}

// TestGREEnhanced: PPTP's enhanced GRE is keyed on the call id, which each
// direction carries as the peer's; with no PPTP helper the two directions
// of a call are two connections, new for ever (the kernel's labels in
// testdata/gre-pptp-callid.pcap).
func TestGREEnhanced(t *testing.T) {
	tb := newTbl(t, Config{})
	out, back := grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0x4001)...), grePkt(t, "198.18.0.2 > 198.18.0.1", pptp(0x8002)...)
	tb.wantGRE(out, LabelNew, false)
	tb.wantGRE(back, LabelNew, false)
	tb.wantGRE(out, LabelNew, false)
	e, _ := tb.greEntry(out)
	if got, want := e.String(), "gre      47 30 src=198.18.0.1 dst=198.18.0.2 srckey=0x0 dstkey=0x4001 packets=2 bytes=72 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 srckey=0x4001 dstkey=0x0 packets=0 bytes=0"; got != want {
		t.Errorf("String:\n%s\nwant\n%s", got, want)
	}
	if s, d := e.Original.GREKeys(); s != 0 || d != 0x4001 || e.Original.SrcPort() != 0 || e.Original.DstPort() != 0 {
		t.Errorf("keys %#x %#x, ports %d %d", s, d, e.Original.SrcPort(), e.Original.DstPort())
	}
	if e.Original != NewGREKey(out.Src, out.Dst, 0x4001) {
		t.Errorf("NewGREKey %v, entry %v", NewGREKey(out.Src, out.Dst, 0x4001), e.Original)
	}
	// Call id 0 both ways: the reply tuple is the packet's own.
	tb.wantGRE(grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0)...), LabelNew, false)
	tb.wantGRE(grePkt(t, "198.18.0.2 > 198.18.0.1", pptp(0)...), LabelEstablished, true)
	// Plain GRE, and enhanced GRE too short for its call id, have key 0:
	// the same tuple.
	tb.wantGRE(grePkt(t, "198.18.0.2 > 198.18.0.1", gre0(9)...), LabelEstablished, true)
	tb.wantGRE(grePkt(t, "198.18.0.1 > 198.18.0.2", 0x20, 0x01, 0x08, 0x00, 0, 0), LabelEstablished, false)
	// Enhanced GRE carrying anything but PPP has no tuple.
	bad := grePkt(t, "198.18.0.1 > 198.18.0.2", 0x20, 0x01, 0x08, 0x00, 0, 0, 0x40, 0x01)
	if r := tb.Track(bad, tb.now()); r.Label != LabelInvalid || r.Reason != ReasonGREProto {
		t.Errorf("enhanced GRE carrying IPv4: %v (%s)", r.Label, r.ReasonString())
	}
	// Over IPv6 alike.
	tb.wantGRE(grePkt(t, "fd00:198:18::1 > fd00:198:18::2", pptp(0x0101)...), LabelNew, false)
	tb.wantGRE(grePkt(t, "fd00:198:18::2 > fd00:198:18::1", pptp(0x0202)...), LabelNew, false)
	checkCounts(t, tb.Table)
}

// TestGREICMPErrors: an ICMP error quoting an enhanced GRE packet finds its
// connection by the quoted call id; a quote of enhanced GRE that does not
// carry PPP has no tuple.
func TestGREICMPErrors(t *testing.T) {
	tb := newTbl(t, Config{})
	out := grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0x4001)...)
	tb.wantGRE(out, LabelNew, false)
	for _, c := range []struct {
		quote *packet.Packet
		label Label
	}{
		{out, LabelRelated},
		{grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0x4002)...), LabelInvalid},
		{grePkt(t, "198.18.0.1 > 198.18.0.2", 0x20, 0x01, 0x08, 0x00, 0, 0, 0x40, 0x01), LabelInvalid},
	} {
		p := icmpQuoting(t, c.quote)
		if r := tb.Track(p, tb.now()); r.Label != c.label || r.Label == LabelRelated && !r.Reply {
			t.Errorf("error quoting %+v: %v reply=%v (%s), want %v", c.quote.GRE, r.Label, r.Reply, r.ReasonString(), c.label)
		}
	}
}

// TestGRETimeouts: `set timeout gre` and `gre.stream`.
func TestGRETimeouts(t *testing.T) {
	tb := newTbl(t, Config{Timeouts: Timeouts{GRE: 5 * time.Second, GREStream: time.Hour}})
	out, back := grePkt(t, "198.18.0.1 > 198.18.0.2", gre0(0)...), grePkt(t, "198.18.0.2 > 198.18.0.1", gre0(0)...)
	tb.wantGRE(out, LabelNew, false)
	if e, _ := tb.greEntry(out); e.Timeout != 5*time.Second {
		t.Errorf("unreplied: %v", e.Timeout)
	}
	tb.wantGRE(back, LabelEstablished, true)
	tb.wantGRE(back, LabelEstablished, true)
	if e, _ := tb.greEntry(out); e.Timeout != time.Hour || !e.Assured {
		t.Errorf("replied: %v", e)
	}
}

// TestGRESnapshot: a keyed GRE entry round-trips; a restored timeout is
// capped by GRE's (the stream one once assured); a GRE record with a
// source key is refused (no PPTP helper ever sets one here).
func TestGRESnapshot(t *testing.T) {
	tb := newTbl(t, Config{})
	out, back := grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0)...), grePkt(t, "198.18.0.2 > 198.18.0.1", pptp(0)...)
	tb.track(out)
	tb.track(back)
	tb.track(out)
	tb.track(grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0x4001)...))
	snap := save(t, tb.Table, tb.now())
	tab := New(Config{Timeouts: Timeouts{GRE: time.Second, GREStream: 2 * time.Second}})
	if n, err := tab.Load(bytes.NewReader(snap), 0); err != nil || n != 2 {
		t.Fatalf("Load: %d, %v", n, err)
	}
	tab.Walk(0, func(e EntryInfo) bool {
		_, d := e.Original.GREKeys()
		want := time.Second
		if e.Assured {
			want = 2 * time.Second
		}
		if e.Timeout != want || (d == 0) != e.Assured {
			t.Errorf("%v: %v left, assured %v", e.Original, e.Timeout, e.Assured)
		}
		return true
	})
	bad := bytes.Clone(snap)
	for i := range 2 {
		binary.LittleEndian.PutUint16(bad[snapshotHeaderSize+i*snapshotRecordSize+32:], 7)
	}
	if _, err := New(Config{}).Load(bytes.NewReader(reseal(bad)), 0); !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), "GRE source key") {
		t.Errorf("a source key: %v", err)
	}
}

// TestGRENoAllocs: tracking GRE allocates nothing.
func TestGRENoAllocs(t *testing.T) {
	tb := newTbl(t, Config{})
	ps := []*packet.Packet{
		grePkt(t, "198.18.0.1 > 198.18.0.2", pptp(0x4001)...),
		grePkt(t, "198.18.0.1 > 198.18.0.2", gre0(1)...),
		grePkt(t, "198.18.0.2 > 198.18.0.1", gre0(2)...),
	}
	for _, p := range ps {
		tb.track(p)
	}
	var r Result
	if allocs := testing.AllocsPerRun(1000, func() {
		for _, p := range ps {
			tb.TrackInto(&r, p, tb.now())
		}
	}); allocs != 0 {
		t.Errorf("%v allocs per run", allocs)
	}
}
