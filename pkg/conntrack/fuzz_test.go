package conntrack

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// FuzzTrack drives a small table with random packet sequences: a few hosts
// and ports, every protocol, random TCP flags, sequence numbers and ICMP
// errors quoting earlier flows, with time moving forward by random steps.
// Whatever the sequence: no panic, the table never holds more than its
// limit, and every live entry is found again from both of its tuples.
func FuzzTrack(f *testing.F) {
	f.Add([]byte{0x06, 0x00, 0x02, 0x00, 0, 0, 0, 1, 0x06, 0x01, 0x12, 0x00, 0, 0, 0, 1, 0x06, 0x00, 0x10, 0x00, 0, 0, 0, 2})
	f.Add([]byte{0x11, 0x00, 0, 0, 0, 0, 0, 0, 0x11, 0x01, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 8, 0, 0, 0, 0, 0})
	f.Add([]byte{0x3a, 0x02, 128, 0, 0, 0, 0, 0, 0x3a, 0x03, 129, 0, 0, 0, 0, 0, 0x84, 0x00, 1, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 8
		tab := New(Config{Limit: limit, Shards: 1, Seed: 1})
		now := int64(0)
		hosts4 := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")}
		hosts6 := []netip.Addr{netip.MustParseAddr("fd00:198:18::1"), netip.MustParseAddr("fd00:198:18::2"), netip.MustParseAddr("fd00:198:18::3")}
		for len(data) >= 8 {
			b := data[:8]
			data = data[8:]
			p := fuzzPacket(b, hosts4, hosts6)
			now += int64(b[7]%64) * int64(time.Second) / 4
			if b[6]&8 != 0 {
				// The caller's clock steps back; the table's does not.
				now -= int64(b[7]%64) * int64(time.Second)
			}
			r := tab.Track(&p, now)
			if r.Label == LabelNew && b[6]&1 == 0 {
				tab.Commit(&p, &r, now)
			}
			if n := tab.Len(); n > limit {
				t.Fatalf("table holds %d entries, limit %d", n, limit)
			}
			tab.Walk(now, func(e EntryInfo) bool {
				for _, k := range []Key{e.Original, e.Reply} {
					if _, ok := tab.Get(k, now); !ok {
						t.Fatalf("entry %v not found from tuple %v", e.Original, k)
					}
				}
				return true
			})
		}
		checkSoonest(t, tab)
		checkCounts(t, tab)
	})
}

// fuzzPacket turns 8 bytes into a decoded packet: protocol, hosts, ports,
// flags or ICMP type, sequence number. Packets have no bytes, so checksums
// count as good.
func fuzzPacket(b []byte, hosts4, hosts6 []netip.Addr) packet.Packet {
	protos := []packet.Proto{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6, packet.ProtoGRE, packet.ProtoUDPLite}
	proto := protos[int(b[0])%len(protos)]
	hosts := hosts4
	v := uint8(4)
	if proto == packet.ProtoICMPv6 || b[0]&0x80 != 0 && proto != packet.ProtoICMP {
		hosts, v = hosts6, 6
	}
	src, dst := hosts[int(b[1])%3], hosts[int(b[1]>>2)%3]
	p := packet.Packet{Kind: packet.KindOK, IPVersion: v, Proto: proto, Src: src, Dst: dst, L4Off: 40, IPLen: 100}
	sport, dport := 40000+uint16(b[1]%2), 80+uint16((b[1]>>4)%2)
	if b[1]&0x80 != 0 {
		sport, dport = dport, sport
	}
	switch proto {
	case packet.ProtoTCP:
		p.SrcPort, p.DstPort = sport, dport
		p.TCPFlags = b[2]
		p.Seq = binary.BigEndian.Uint32(b[2:6]) &^ 0xffff0000
		p.Ack = binary.BigEndian.Uint32(b[3:7]) &^ 0xffff0000
		p.Window = uint16(b[5]) << 8
		p.TCPHdrLen = 20
		p.L4Len = 20 + int(b[4]%4)*100
		p.PayloadLen = p.L4Len - 20
		if b[6]&2 != 0 {
			p.TCPOpts.HasWScale, p.TCPOpts.WScale = true, b[6]>>4
		}
	case packet.ProtoUDP, packet.ProtoUDPLite:
		p.SrcPort, p.DstPort = sport, dport
		p.L4Len = 8 + int(b[4]%4)
		p.UDPLen = uint16(p.L4Len)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		p.ICMPType, p.ICMPCode = b[2], b[3]%4
		p.ICMPID = uint16(b[4] % 4)
		p.L4Len = 8
		if b[5]&1 != 0 {
			// An error quoting a flow between the same hosts.
			p.Inner = packet.Inner{Valid: true, IPVersion: v, Proto: protos[int(b[5]>>1)%2], Src: dst, Dst: src, SrcPort: dport, DstPort: sport}
		}
	}
	return p
}

// TestFullTableOfExpiredEntriesAdmitsNew pins a bug: early drop looked at a
// fixed number of index slots, so in a sparse index (a small limit) a new
// connection found no entry near its home slot and was refused as "table
// full" while every entry in the table had expired. Each seed places the
// entries differently.
func TestFullTableOfExpiredEntriesAdmitsNew(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		tab := New(Config{Limit: 4, Seed: seed})
		for i := range 4 {
			p := pkt(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 40000+i))
			r := tab.Track(p, 0)
			if !tab.Commit(p, &r, 0) {
				t.Fatalf("seed %d: entry %d refused below the limit", seed, i)
			}
		}
		later := int64(time.Hour)
		p := pkt("udp 198.18.0.1:41000 > 198.18.0.2:53")
		r := tab.Track(p, later)
		if r.Label != LabelNew || r.Reason == ReasonTableFull || !tab.Commit(p, &r, later) {
			t.Fatalf("seed %d: a new flow into a table of expired entries: %v %q", seed, r.Label, r.ReasonString())
		}
		if n := tab.Len(); n > 4 {
			t.Fatalf("seed %d: %d entries, limit 4", seed, n)
		}
	}
}
