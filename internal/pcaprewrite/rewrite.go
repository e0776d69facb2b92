package pcaprewrite

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one packet of the original capture after rewriting.
type Packet struct {
	Index     int       // 0-based position in the original capture
	Timestamp time.Time // capture timestamp, unchanged
	WireLen   int       // original length on the wire (link layer included)
	LinkType  uint32    // link type the frame was decoded from

	// Data is the rewritten packet starting at the IP header, with link-layer
	// headers, VLAN tags and Ethernet padding removed. nil when Skip is set.
	Data []byte
	// Skip says why the packet cannot be injected (not IP, truncated
	// capture, malformed IP header); "" when Data is set.
	Skip string
	// Notes are remarks about the rewrite, e.g. a payload address that could
	// not be reached because it lies in a later fragment.
	Notes []string
}

// Version is the IP version of Data (0 when skipped).
func (p Packet) Version() int {
	if len(p.Data) == 0 {
		return 0
	}
	return int(p.Data[0] >> 4)
}

// RewriteFile is Rewrite on a file.
func RewriteFile(path string) ([]Packet, map[netip.Addr]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return Rewrite(f)
}

type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Rewrite reads a pcap or pcapng capture and rewrites every IP packet's
// addresses into the test ranges with one fresh Mapper (see the package
// documentation for what is rewritten). It returns one Packet per captured
// packet, in file order, and the address map original → rewritten.
func Rewrite(in io.Reader) ([]Packet, map[netip.Addr]netip.Addr, error) {
	mp := NewMapper()
	pkts, err := RewriteWith(in, mp)
	if err != nil {
		return nil, nil, err
	}
	return pkts, mp.Table(), nil
}

// RewriteWith is Rewrite with a caller-supplied Mapper (for keeping one map
// across several captures).
func RewriteWith(in io.Reader, mp *Mapper) ([]Packet, error) {
	br := bufio.NewReader(in)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("pcaprewrite: reading capture header: %w", err)
	}
	var src packetSource
	var linkOf func(gopacket.CaptureInfo) uint32
	if binary.LittleEndian.Uint32(magic) == 0x0a0d0d0a {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("pcaprewrite: %w", err)
		}
		src = ng
		linkOf = func(ci gopacket.CaptureInfo) uint32 {
			if ifc, err := ng.Interface(ci.InterfaceIndex); err == nil {
				return uint32(ifc.LinkType)
			}
			return uint32(ng.LinkType())
		}
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcaprewrite: %w", err)
		}
		src = r
		lt := uint32(r.LinkType())
		linkOf = func(gopacket.CaptureInfo) uint32 { return lt }
	}
	var pkts []Packet
	for i := 0; ; i++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				break // a capture cut off in the middle of a record
			}
			return nil, fmt.Errorf("pcaprewrite: packet %d: %w", i, err)
		}
		p := RewritePacket(mp, linkOf(ci), data)
		p.Index, p.Timestamp, p.WireLen = i, ci.Timestamp, ci.Length
		pkts = append(pkts, p)
	}
	if err := mp.Err(); err != nil {
		return nil, err
	}
	return pkts, nil
}

// RewritePacket rewrites one captured frame of link type lt. Index,
// Timestamp and WireLen are left for the caller to fill in. The frame is not
// modified.
func RewritePacket(mp *Mapper, lt uint32, frame []byte) Packet {
	p := Packet{LinkType: lt}
	ip, why := linkToIP(lt, frame)
	if ip == nil {
		p.Skip = why
		return p
	}
	ip, why = trimIP(ip)
	if ip == nil {
		p.Skip = why
		return p
	}
	data := append([]byte(nil), ip...)
	before := checksumState(data)
	r := rewriter{mp: mp}
	r.ip(data, 0)
	if after := checksumState(data); after != before {
		fixChecksums(data, before)
		r.note(fmt.Sprintf("checksum validity changed by the rewrite (%+v -> %+v) and was restored", before, after))
	}
	p.Data, p.Notes = data, r.notes
	return p
}

// trimIP checks that b holds a whole IP packet and cuts off link-layer
// padding after it.
func trimIP(b []byte) ([]byte, string) {
	if len(b) == 0 {
		return nil, "empty frame: no IP header"
	}
	switch v := b[0] >> 4; v {
	case 4:
		if len(b) < 20 {
			return nil, fmt.Sprintf("truncated capture: %d bytes, IPv4 header needs 20", len(b))
		}
		ihl := int(b[0]&0x0f) * 4
		tl := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || tl < ihl {
			return nil, fmt.Sprintf("malformed IPv4 header (IHL %d, total length %d): the kernel drops it in ip_rcv, before netfilter", ihl, tl)
		}
		if tl > len(b) {
			return nil, fmt.Sprintf("truncated capture: IPv4 total length %d, %d bytes captured", tl, len(b))
		}
		return b[:tl], ""
	case 6:
		if len(b) < 40 {
			return nil, fmt.Sprintf("truncated capture: %d bytes, IPv6 header needs 40", len(b))
		}
		pl := int(binary.BigEndian.Uint16(b[4:]))
		if pl == 0 && b[6] == 0 {
			return nil, "IPv6 jumbogram (payload length 0 with hop-by-hop header): not supported"
		}
		if 40+pl > len(b) {
			return nil, fmt.Sprintf("truncated capture: IPv6 length %d, %d bytes captured", 40+pl, len(b))
		}
		return b[:40+pl], ""
	default:
		return nil, fmt.Sprintf("not IP: version %d", v)
	}
}

// ---- checksum validity of a whole packet ----

// csumState is the validity of a packet's checksums: each is -1 when the
// checksum does not exist or cannot be checked from this packet alone
// (fragments), 0 when wrong, 1 when right.
type csumState struct {
	IPHeader int8
	L4       int8
}

func tri(ok bool) int8 {
	if ok {
		return 1
	}
	return 0
}

// l4Span locates the transport checksum of an unfragmented packet.
type l4Span struct {
	payload  []byte
	proto    uint8
	off      int    // checksum offset in payload, -1 if none
	pseudo   uint32 // unfolded pseudo-header sum, if the protocol uses one
	zeroNone bool
}

func locateL4(b []byte) (l4Span, bool) {
	var s l4Span
	var src, dst []byte
	var v6 bool
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		frag := binary.BigEndian.Uint16(b[6:])
		if frag&0x3fff != 0 || ihl > len(b) {
			return s, false
		}
		s.payload, s.proto = b[ihl:], b[9]
		fd := v4FinalDst(b, ihl)
		src, dst = b[12:16], b[fd:fd+4]
	case 6:
		lay := walkV6(b)
		if lay.stopped || (lay.frag && (lay.fragOff != 0 || lay.more)) {
			return s, false
		}
		s.payload, s.proto, v6 = b[lay.l4:lay.end], lay.proto, true
		src, dst = b[lay.pseudoSrc:lay.pseudoSrc+16], b[lay.finalDst:lay.finalDst+16]
	default:
		return s, false
	}
	off, pseudo, zeroNone := csumInfo(s.proto, v6)
	if s.proto == protoGRE && len(s.payload) >= 4 && s.payload[0]&0x80 != 0 {
		off = 4
	}
	if off < 0 || off+2 > len(s.payload) {
		return s, false
	}
	if s.proto == protoTCP && len(s.payload) < 20 || s.proto == protoUDP && len(s.payload) < 8 {
		return s, false
	}
	s.off, s.zeroNone = off, zeroNone
	if pseudo {
		s.pseudo = pseudoSum(src, dst, s.proto, len(s.payload))
	}
	return s, true
}

func checksumState(b []byte) csumState {
	st := csumState{-1, -1}
	if b[0]>>4 == 4 {
		ihl := int(b[0]&0x0f) * 4
		st.IPHeader = tri(fold(sum16(b[:ihl], 0)) == 0xffff)
	}
	s, ok := locateL4(b)
	if !ok || s.zeroNone && binary.BigEndian.Uint16(s.payload[s.off:]) == 0 {
		return st
	}
	st.L4 = tri(fold(sum16(s.payload, s.pseudo)) == 0xffff)
	return st
}

// fixChecksums makes b's checksums as valid or invalid as want says:
// correct ones are recomputed, wrong ones recomputed and then flipped.
// Rewrite uses it only as a safety net; the incremental updates already keep
// validity.
func fixChecksums(b []byte, want csumState) {
	const corrupt = 0x5555
	if want.IPHeader >= 0 {
		ihl := int(b[0]&0x0f) * 4
		binary.BigEndian.PutUint16(b[10:], 0)
		c := Checksum(b[:ihl], 0)
		if want.IPHeader == 0 {
			c ^= corrupt
		}
		binary.BigEndian.PutUint16(b[10:], c)
	}
	if want.L4 >= 0 {
		if s, ok := locateL4(b); ok {
			binary.BigEndian.PutUint16(s.payload[s.off:], 0)
			c := Checksum(s.payload, s.pseudo)
			if c == 0 && s.zeroNone {
				c = 0xffff
			}
			if want.L4 == 0 {
				c ^= corrupt
			}
			binary.BigEndian.PutUint16(s.payload[s.off:], c)
		}
	}
}

// ---- fragments ----

// Fragment describes where an IP packet sits in a fragmented datagram.
type Fragment struct {
	IsFragment bool // one of several fragments (an IPv6 atomic fragment is not)
	First      bool // offset 0
	More       bool // MF / M bit
	Offset     int  // in bytes
	Len        int  // fragment data bytes (after the IPv4 header / IPv6 fragment header)
	DataOff    int  // where in the packet the fragment data starts
	ID         uint32
	Proto      uint8 // IPv4 protocol, IPv6 fragment header's next header
	Src, Dst   netip.Addr
}

// FragmentOf decodes fragmentation from an IP packet (as in Packet.Data).
func FragmentOf(b []byte) Fragment {
	var f Fragment
	if len(b) < 1 {
		return f
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return f
		}
		fo := binary.BigEndian.Uint16(b[6:])
		f.Offset, f.More = int(fo&0x1fff)*8, fo&0x2000 != 0
		f.IsFragment = f.Offset != 0 || f.More
		f.First = f.Offset == 0
		f.ID, f.Proto = uint32(binary.BigEndian.Uint16(b[4:])), b[9]
		f.DataOff = int(b[0]&0x0f) * 4
		f.Len = max(0, min(int(binary.BigEndian.Uint16(b[2:])), len(b))-f.DataOff)
		f.Src, f.Dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	case 6:
		if len(b) < 40 {
			return f
		}
		lay := walkV6(b)
		if !lay.frag {
			return f
		}
		f.Offset, f.More, f.ID = lay.fragOff, lay.more, lay.fragID
		f.IsFragment = f.Offset != 0 || f.More
		f.First = f.Offset == 0
		f.Proto = lay.proto
		f.DataOff = lay.fragData
		f.Len = max(0, lay.end-lay.fragData)
		f.Src, f.Dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	}
	return f
}

// ---- output ----

// Fixed MAC addresses for WritePcap's Ethernet output.
var (
	EthernetSrc = [6]byte{0x02, 0x00, 0xc6, 0x12, 0x00, 0x01}
	EthernetDst = [6]byte{0x02, 0x00, 0xc6, 0x12, 0x00, 0x02}
)

// WritePcap writes the injectable packets (skipped ones are left out, so
// record numbers no longer match Packet.Index) as a classic microsecond pcap
// of link type LinkRaw (101, the IP packets as they are) or LinkEthernet (1,
// with a header from EthernetSrc to EthernetDst).
func WritePcap(w io.Writer, pkts []Packet, linkType uint32) error {
	if linkType != LinkRaw && linkType != LinkEthernet {
		return fmt.Errorf("pcaprewrite: WritePcap supports link types %d and %d, not %d", LinkRaw, LinkEthernet, linkType)
	}
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(262144, layers.LinkType(linkType)); err != nil {
		return err
	}
	var frame []byte
	for _, p := range pkts {
		if p.Data == nil {
			continue
		}
		frame = frame[:0]
		if linkType == LinkEthernet {
			frame = append(frame, EthernetDst[:]...)
			frame = append(frame, EthernetSrc[:]...)
			et := uint16(0x0800)
			if p.Version() == 6 {
				et = 0x86dd
			}
			frame = binary.BigEndian.AppendUint16(frame, et)
		}
		frame = append(frame, p.Data...)
		ci := gopacket.CaptureInfo{Timestamp: p.Timestamp, CaptureLength: len(frame), Length: len(frame)}
		if err := pw.WritePacket(ci, frame); err != nil {
			return err
		}
	}
	return nil
}
