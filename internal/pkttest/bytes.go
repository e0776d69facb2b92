package pkttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// bytes builds the packet: IP header, transport header, payload of zeros
// (or chunks, or the quote), then the checksums. The checksum code here is
// a plain 16-bit loop, on purpose not packet's: the decoder's
// L4ChecksumOK then checks an independent computation.
func (s *spec) bytes() ([]byte, error) {
	if s.nol4 {
		return nil, errors.New("nol4 describes fields no bytes decode to: use Fields")
	}
	if err := s.checkLen(); err != nil {
		return nil, err
	}
	hl, l4n := s.ipHdrLen(), s.l4Len()
	b := make([]byte, hl, hl+l4n)
	if s.v6() {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(l4n+hl-40))
		b[6], b[7] = s.proto, s.ttl
		src, dst := s.src.As16(), s.dst.As16()
		copy(b[8:], src[:])
		copy(b[24:], dst[:])
		if s.fragHeader() {
			b[6] = 44
			b[40] = s.proto
			fo := uint16(s.frag)
			if s.mf {
				fo |= 1
			}
			binary.BigEndian.PutUint16(b[42:], fo)
			binary.BigEndian.PutUint32(b[44:], s.ipid)
		}
	} else {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(hl+l4n))
		binary.BigEndian.PutUint16(b[4:], uint16(s.ipid))
		fo := uint16(max(s.frag, 0) / 8)
		if s.frag < 0 {
			fo |= 0x4000 // DF
		}
		if s.mf {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(b[6:], fo)
		b[8], b[9] = s.ttl, s.proto
		src, dst := s.src.As4(), s.dst.As4()
		copy(b[12:], src[:])
		copy(b[16:], dst[:])
		binary.BigEndian.PutUint16(b[10:], ^fold(onesSum(b[:20], 0)))
	}
	if s.nonFirst() {
		b = append(b, make([]byte, l4n)...)
		return s.cutTo(b)
	}
	l4, err := s.transport()
	if err != nil {
		return nil, err
	}
	// l4len= cuts the transport bytes short or pads them.
	if len(l4) > l4n {
		l4 = l4[:l4n]
	}
	l4 = append(l4, make([]byte, l4n-len(l4))...)
	if err := s.checksum(b[:hl], l4); err != nil {
		return nil, err
	}
	return s.cutTo(append(b, l4...))
}

// cutTo applies cut=.
func (s *spec) cutTo(b []byte) ([]byte, error) {
	if s.cut < 0 {
		return b, nil
	}
	if s.cut > len(b) {
		return nil, fmt.Errorf("cut=%d: the packet has only %d bytes", s.cut, len(b))
	}
	return b[:s.cut], nil
}

// transport builds the transport header and payload, checksum zero.
func (s *spec) transport() ([]byte, error) {
	hdr := s.l4Hdr()
	b := make([]byte, hdr, hdr+s.payloadLen())
	switch s.proto {
	case pTCP:
		binary.BigEndian.PutUint16(b[0:], s.sport)
		binary.BigEndian.PutUint16(b[2:], s.dport)
		binary.BigEndian.PutUint32(b[4:], s.seq)
		binary.BigEndian.PutUint32(b[8:], s.ack)
		b[12] = byte(hdr/4) << 4
		b[13] = s.flags
		binary.BigEndian.PutUint16(b[14:], s.win)
		if s.wscale >= 0 {
			copy(b[20:], []byte{1, 3, 3, byte(s.wscale)}) // NOP, window scale
		}
	case pUDP, pUDPLite:
		binary.BigEndian.PutUint16(b[0:], s.sport)
		binary.BigEndian.PutUint16(b[2:], s.dport)
		binary.BigEndian.PutUint16(b[4:], uint16(s.udpLen()))
	case pSCTP:
		binary.BigEndian.PutUint16(b[0:], s.sport)
		binary.BigEndian.PutUint16(b[2:], s.dport)
		for _, c := range s.chunks {
			ch := make([]byte, (c[1]+3)&^3)
			ch[0] = byte(c[0])
			binary.BigEndian.PutUint16(ch[2:], uint16(c[1]))
			b = append(b, ch...)
		}
	case pICMP, pICMPv6:
		b[0], b[1] = byte(s.icmpType), s.icmpCode
		if icmpHasID(s.proto, uint8(s.icmpType)) {
			binary.BigEndian.PutUint16(b[4:], s.id)
			binary.BigEndian.PutUint16(b[6:], uint16(s.seq))
		}
		if s.quote != nil {
			q, err := s.quote.bytes()
			if err != nil {
				return nil, fmt.Errorf("quoted packet: %w", err)
			}
			b = append(b, q...)
		}
	}
	return append(b, make([]byte, s.payloadLen()-(len(b)-hdr))...), nil
}

// checksum writes the transport checksum into l4, over all of l4 with
// that length in the pseudo-header of ip where the protocol has one, as
// conntrack's nf_checksum (and packet's L4ChecksumOK) computes it: for a
// UDP length field shorter than the IP payload this is not the sum a UDP
// stack computes. A header cut too short for its checksum field gets none.
// badsum then makes the checksum wrong.
func (s *spec) checksum(ip, l4 []byte) error {
	var at int // where the checksum field is
	var sum uint16
	switch s.proto {
	case pTCP:
		at = 16
	case pUDP, pUDPLite:
		at = 6
	case pICMP, pICMPv6:
		at = 2
	case pSCTP:
		if len(l4) < 12 {
			return s.noChecksum(len(l4))
		}
		c := crc32.Checksum(l4, crc32.MakeTable(crc32.Castagnoli))
		if s.badsum {
			c++
		}
		binary.LittleEndian.PutUint32(l4[8:], c)
		return nil
	default:
		return nil
	}
	if len(l4) < at+2 {
		return s.noChecksum(len(l4))
	}
	cover := l4
	if s.proto == pUDPLite && s.udpLen() != 0 && s.udpLen() < len(l4) {
		cover = l4[:s.udpLen()] // the checksum coverage
	}
	var acc uint32
	if s.proto != pICMP {
		acc = s.pseudo(ip, len(l4))
	}
	sum = ^fold(onesSum(cover, acc))
	if sum == 0 && (s.proto == pUDP || s.proto == pUDPLite) {
		sum = 0xffff // 0 means "no checksum" (RFC 768); both are zero in ones' complement
	}
	if s.badsum {
		// One more than right, and never the other spelling of zero,
		// which would still be right.
		if sum >= 0xfffe {
			sum = 0x1234
		} else {
			sum++
		}
	}
	binary.BigEndian.PutUint16(l4[at:], sum)
	return nil
}

func (s *spec) noChecksum(n int) error {
	if s.badsum {
		return fmt.Errorf("badsum: %d transport bytes have no checksum field", n)
	}
	return nil
}

// pseudo is the sum of the pseudo-header for n transport bytes.
func (s *spec) pseudo(ip []byte, n int) uint32 {
	if s.v6() {
		return onesSum(ip[8:40], uint32(n>>16)+uint32(n&0xffff)+uint32(s.proto))
	}
	return onesSum(ip[12:20], uint32(n)+uint32(s.proto))
}

// onesSum adds b to acc as big-endian 16-bit words.
func onesSum(b []byte, acc uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		acc += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold reduces a ones' complement sum to 16 bits.
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}
