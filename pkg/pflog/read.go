package pflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

var (
	// ErrNotPcap: the stream does not start with a classic pcap header.
	ErrNotPcap = errors.New("pflog: not a pcap file")
	// ErrLinkType: a pcap file whose link type is not PFLOG.
	ErrLinkType = errors.New("pflog: link type is not PFLOG (117)")
	// ErrBadRecord: a pcap record header that cannot be right (captured
	// longer than the original, or longer than any capture). The stream
	// cannot be resynchronised after it.
	ErrBadRecord = errors.New("pflog: bad pcap record")
	// ErrBadHeader: a record whose pflog header is too short or has an
	// impossible length field. The stream is still in step: Next can read
	// the following record.
	ErrBadHeader = errors.New("pflog: bad pflog header")
)

// maxCapLen bounds one record's captured length, so a corrupt length
// cannot make the Reader allocate gigabytes. libpcap refuses more than
// 262144 (MAXIMUM_SNAPLEN) too.
const maxCapLen = 262144

// Header length field bounds, as tcpdump checks them (print-pflog.c:
// MIN_PFLOG_HDRLEN 61, the layout up to dir; MAX_PFLOG_HDRLEN 100,
// OpenBSD's).
const (
	minHdrLen = 61
	maxHdrLen = 100
)

// Reader reads pflog records from a pcap file or stream: either byte order,
// microsecond or nanosecond timestamps. It is not safe for concurrent use.
type Reader struct {
	r     io.Reader
	order binary.ByteOrder
	nano  bool
	hdr   [RecordHeaderLen]byte
	buf   []byte
}

// NewReader reads the pcap file header from r. It fails with ErrNotPcap or
// ErrLinkType when r is not a PFLOG capture.
func NewReader(r io.Reader) (*Reader, error) {
	var h [FileHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: %d-byte header cut short", ErrNotPcap, FileHeaderLen)
		}
		return nil, err
	}
	rd := &Reader{r: r}
	switch {
	case binary.LittleEndian.Uint32(h[:]) == pcapMagicMicro:
		rd.order = binary.LittleEndian
	case binary.BigEndian.Uint32(h[:]) == pcapMagicMicro:
		rd.order = binary.BigEndian
	case binary.LittleEndian.Uint32(h[:]) == pcapMagicNano:
		rd.order, rd.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[:]) == pcapMagicNano:
		rd.order, rd.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("%w: magic %#08x", ErrNotPcap, binary.BigEndian.Uint32(h[:]))
	}
	// The link type's low 16 bits; the high ones carry FCS flags.
	if lt := rd.order.Uint32(h[20:]) & 0xffff; lt != LinkTypePFLOG {
		return nil, fmt.Errorf("%w: got %d", ErrLinkType, lt)
	}
	return rd, nil
}

// Next reads the next record into rec. rec.Packet aliases the Reader's
// buffer and is valid until the next call. At the end of the stream Next
// returns io.EOF; a stream that ends inside a record returns
// io.ErrUnexpectedEOF. Next does not allocate once its buffer holds the
// largest record.
func (rd *Reader) Next(rec *Record) error {
	if _, err := io.ReadFull(rd.r, rd.hdr[:]); err != nil {
		return err
	}
	sec := rd.order.Uint32(rd.hdr[0:])
	frac := rd.order.Uint32(rd.hdr[4:])
	capLen := rd.order.Uint32(rd.hdr[8:])
	origLen := rd.order.Uint32(rd.hdr[12:])
	if capLen > maxCapLen || capLen > origLen {
		return fmt.Errorf("%w: captured %d of %d bytes", ErrBadRecord, capLen, origLen)
	}
	if cap(rd.buf) < int(capLen) {
		rd.buf = make([]byte, capLen, max(capLen, 256))
	}
	rd.buf = rd.buf[:capLen]
	if _, err := io.ReadFull(rd.r, rd.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if !rd.nano {
		frac *= 1000
	}
	*rec = Record{Time: time.Unix(int64(sec), int64(frac))}
	n, err := DecodeHeader(rd.buf, rec)
	if err != nil {
		return err
	}
	rec.Packet = rd.buf[n:]
	rec.Length = int(origLen) - n
	return nil
}

// DecodeHeader decodes the pflog header at the start of b into rec's
// Action, Reason, Dir, Family, RuleNr and Ifname, and returns the header's
// size on the wire (its length field rounded up to 4), where the packet
// starts. It accepts the NetBSD/Darwin, FreeBSD and OpenBSD layouts.
// Family is 0 for an address family that is neither IPv4 nor IPv6.
func DecodeHeader(b []byte, rec *Record) (int, error) {
	if len(b) < minHdrLen {
		return 0, fmt.Errorf("%w: %d bytes", ErrBadHeader, len(b))
	}
	hl := int(b[offLength])
	if hl < minHdrLen || hl > maxHdrLen {
		return 0, fmt.Errorf("%w: length field %d", ErrBadHeader, hl)
	}
	n := (hl + 3) &^ 3
	if len(b) < n {
		return 0, fmt.Errorf("%w: %d bytes, length field says %d", ErrBadHeader, len(b), hl)
	}
	switch b[offAF] {
	case afInet:
		rec.Family = 4
	case afInet6, 28, 30, 10: // NetBSD/OpenBSD, FreeBSD, Darwin; 10 is Linux's, from writers that did not know better
		rec.Family = 6
	default:
		rec.Family = 0
	}
	rec.Action = Action(b[offAction])
	rec.Reason = Reason(b[offReason])
	rec.Dir = Dir(b[offDir])
	rec.RuleNr = binary.BigEndian.Uint32(b[offRuleNr:])
	copy(rec.Ifname[:], b[offIfname:offIfname+16])
	rec.Ifname[15] = 0
	return n, nil
}
