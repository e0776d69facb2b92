package packet

import (
	"encoding/binary"
	"testing"
)

// tcpWithOptions builds an IPv4 TCP ACK with the given options (padded
// with no-ops to a multiple of 4).
func tcpWithOptions(opts []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append([]byte{1}, opts...)
	}
	tcpLen := 20 + len(opts)
	b := make([]byte, 20+tcpLen)
	b[0], b[8], b[9] = 0x45, 64, byte(ProtoTCP)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	t := b[20:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 80)
	t[12] = byte(tcpLen/4) << 4
	t[13] = TCPAck
	binary.BigEndian.PutUint16(t[14:], 65535)
	copy(t[20:], opts)
	return b
}

func sackOption(blocks ...uint32) []byte {
	o := []byte{5, byte(2 + 4*len(blocks))}
	for _, v := range blocks {
		o = binary.BigEndian.AppendUint32(o, v)
	}
	return o
}

// TestFirstSACKOption: with several SACK options, only the blocks of the
// first one that has any count, as in the kernel's tcp_sack; one without
// blocks is skipped.
func TestFirstSACKOption(t *testing.T) {
	for _, c := range []struct {
		name  string
		opts  []byte
		right uint32
		n     uint8
	}{
		{"one", sackOption(100, 200), 200, 1},
		{"two: the first counts", append(sackOption(100, 200), sackOption(300, 900)...), 200, 1},
		{"empty first is skipped", append(sackOption(), sackOption(300, 900)...), 900, 1},
		{"two blocks in the first", append(sackOption(100, 200, 300, 400), sackOption(500, 600)...), 400, 2},
	} {
		var p Packet
		p.Decode(tcpWithOptions(c.opts), LinkIP)
		if p.Kind != KindOK || p.TCPOpts.NSACK != c.n || p.TCPOpts.SACK[c.n-1].Right != c.right {
			t.Errorf("%s: kind %v, %d blocks %v; want %d blocks, the last ending at %d", c.name, p.Kind, p.TCPOpts.NSACK, p.TCPOpts.SACK, c.n, c.right)
		}
	}
}
