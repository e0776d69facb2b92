package conntrack

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/packet"
)

// kernelUDPLiteSum is the UDP-Lite checksum the kernel's conntrack
// accepts, computed here apart from udpliteKernelChecksumOK, 16 bits at a
// time: the pseudo-header with protocol 17 and, on IPv4, the transport
// length modulo 256, then the first cov bytes with the checksum field 0.
func kernelUDPLiteSum(p *packet.Packet, cov int) uint16 {
	b := p.Data[p.L4Off : p.L4Off+p.L4Len]
	var addrs []byte
	n := uint32(len(b))
	if p.IPVersion == 4 {
		addrs = p.Data[p.L3Off+12 : p.L3Off+20]
		n %= 256
	} else {
		addrs = p.Data[p.L3Off+8 : p.L3Off+40]
	}
	acc := 17 + n>>16 + n&0xffff
	for i := 0; i < len(addrs); i += 2 {
		acc += uint32(binary.BigEndian.Uint16(addrs[i:]))
	}
	for i := 0; i < cov; i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < cov {
			w |= uint32(b[i+1])
		}
		if i != 6 { // the checksum field
			acc += w
		}
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	if s := ^uint16(acc); s != 0 {
		return s
	}
	return 0xffff
}

// TestUDPLiteChecksumAsTheKernelSumsIt: conntrack's udplite_error checks
// the checksum with protocol 17 in the pseudo-header and, on IPv4, the
// length modulo 256 (nf_checksum_partial(..., IPPROTO_UDP, ...), and
// nf_ip_checksum_partial's swapped arguments to csum_tcpudp_nofold), so a
// datagram with RFC 3828's checksum is invalid and one summed the kernel's
// way is new, whatever the coverage (0: all). Lengths past 256 tell the
// length from the length modulo 256. The kernel labelled the same way
// datagrams of 28 and 308 bytes, coverage 0, 8 and 12, both families
// (testdata/kerneldiff/udplite-checksum-v4.pcap and -v6.pcap are the RFC's
// sum).
func TestUDPLiteChecksumAsTheKernelSumsIt(t *testing.T) {
	for _, ends := range []string{"198.18.0.1:5000 > 198.18.0.2:6000", "[2001:db8::1]:5000 > [2001:db8::2]:6000"} {
		for _, n := range []int{0, 20, 247, 248, 300, 1400} {
			for _, cov := range []int{0, 8, 12, 8 + n} {
				if cov > 8+n {
					continue
				}
				line := fmt.Sprintf("udplite %s len=%d udplen=%d", ends, n, cov)
				t.Run(line, func(t *testing.T) {
					tb := newTbl(t, Config{})
					rfc := pkttest.MustDecode(t, line)
					if r := tb.Track(rfc, 0); r.Label != LabelInvalid || r.Reason != ReasonBadChecksum {
						t.Errorf("RFC 3828's checksum: %v (%s), want invalid (bad checksum)", r.Label, r.ReasonString())
					}
					if r := newTbl(t, Config{NoChecksum: true}).Track(rfc, 0); r.Label != LabelNew {
						t.Errorf("RFC 3828's checksum, checksums off: %v (%s), want new", r.Label, r.ReasonString())
					}
					p := pkttest.MustDecode(t, line)
					c := cov
					if c == 0 {
						c = p.L4Len
					}
					binary.BigEndian.PutUint16(p.Data[p.L4Off+6:], kernelUDPLiteSum(p, c))
					if r := tb.Track(p, 0); r.Label != LabelNew {
						t.Errorf("the kernel's checksum: %v (%s), want new", r.Label, r.ReasonString())
					}
					if n == 0 {
						return
					}
					at := 8 + n/2
					p.Data[p.L4Off+at] ^= 0x40
					r := tb.Track(p, 0)
					if want := at >= c; (r.Label == LabelNew) != want { // past the coverage
						t.Errorf("a payload byte changed: %v (%s), want new %v", r.Label, r.ReasonString(), want)
					}
				})
			}
		}
	}
}

// TestUDPLiteCoverageAsTheKernelChecksIt: coverage 0 means the whole
// datagram; below 8 or past the transport length it is invalid before the
// checksum is looked at; a zero checksum is invalid (UDP-Lite has no "no
// checksum").
func TestUDPLiteCoverageAsTheKernelChecksIt(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.wantInvalid("udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=7", ReasonBadLength)
	tb.wantInvalid("udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=29", ReasonBadLength)
	p := pkttest.MustDecode(t, "udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=28")
	binary.BigEndian.PutUint16(p.Data[p.L4Off+6:], 0)
	if r := tb.Track(p, 0); r.Label != LabelInvalid || r.Reason != ReasonBadChecksum {
		t.Errorf("zero checksum: %v (%s), want invalid (bad checksum)", r.Label, r.ReasonString())
	}
}
