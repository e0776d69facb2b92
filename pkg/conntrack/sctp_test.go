package conntrack

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// sctpPacket builds an IPv4 SCTP packet with the given chunks (type,
// length) and a correct CRC32c unless badSum.
func sctpPacket(src, dst string, sport, dport uint16, badSum bool, chunks ...[2]int) []byte {
	var l4 []byte
	l4 = binary.BigEndian.AppendUint16(l4, sport)
	l4 = binary.BigEndian.AppendUint16(l4, dport)
	l4 = append(l4, 0, 0, 0, 1, 0, 0, 0, 0) // vtag, checksum
	for _, c := range chunks {
		ch := make([]byte, (c[1]+3)&^3)
		ch[0] = byte(c[0])
		binary.BigEndian.PutUint16(ch[2:], uint16(c[1]))
		l4 = append(l4, ch...)
	}
	sum := crc32.Checksum(l4, crc32.MakeTable(crc32.Castagnoli))
	if badSum {
		sum++
	}
	binary.LittleEndian.PutUint32(l4[8:], sum)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8], ip[9] = 64, packet.ProtoSCTP
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var c uint32
	for i := 0; i < 20; i += 2 {
		c += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	c = (c >> 16) + (c & 0xffff)
	c += c >> 16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(c))
	return append(ip, l4...)
}

// TestSCTPAssociation pins what the kernel's SCTP tracker decides for
// labels: an INIT opens an association (ports in the tuple), the INIT ACK
// is established, DATA with no association is invalid (it cannot start
// one), a bad CRC32c is invalid, and INIT bundled with another chunk is
// invalid.
func TestSCTPAssociation(t *testing.T) {
	tab := New(Config{})
	var p packet.Packet
	track := func(b []byte) Result {
		p.Decode(b, packet.LinkIP)
		if p.Kind != packet.KindOK {
			t.Fatalf("decode: %v", p.Kind)
		}
		return tab.Track(&p, 0)
	}
	init := sctpPacket("198.18.0.1", "198.18.0.2", 2906, 6303, false, [2]int{sctpInit, 20})
	r := track(init)
	if r.Label != LabelNew || !tab.Commit(&p, &r, 0) {
		t.Fatalf("INIT: %v %v", r.Label, r.ReasonString())
	}
	if r := track(sctpPacket("198.18.0.2", "198.18.0.1", 6303, 2906, false, [2]int{sctpInitAck, 20})); r.Label != LabelEstablished {
		t.Errorf("INIT ACK: %v", r.Label)
	}
	if r := track(sctpPacket("198.18.0.1", "198.18.0.2", 2905, 6303, false, [2]int{sctpData, 20})); r.Label != LabelInvalid || r.Reason != ReasonSCTPNoInit {
		t.Errorf("DATA without association: %v %v", r.Label, r.ReasonString())
	}
	if r := track(sctpPacket("198.18.0.1", "198.18.0.2", 2907, 6303, true, [2]int{sctpInit, 20})); r.Label != LabelInvalid || r.Reason != ReasonBadChecksum {
		t.Errorf("bad CRC32c: %v %v", r.Label, r.ReasonString())
	}
	if r := track(sctpPacket("198.18.0.1", "198.18.0.2", 2908, 6303, false, [2]int{sctpInit, 20}, [2]int{sctpData, 16})); r.Label != LabelInvalid || r.Reason != ReasonSCTPChunks {
		t.Errorf("INIT bundled: %v %v", r.Label, r.ReasonString())
	}
}
