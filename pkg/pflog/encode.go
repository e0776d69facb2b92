package pflog

import (
	"encoding/binary"
	"io"
)

// The capture format. See doc.go for where each value comes from.
const (
	// LinkTypePFLOG is the pcap link type of a pflog capture (DLT_PFLOG).
	LinkTypePFLOG = 117

	// HeaderLen is the size of the pflog header in front of each packet:
	// the 61 bytes that NetBSD and Darwin fill (PFLOG_REAL_HDRLEN, the
	// value of the header's length field) rounded up to 4, as readers
	// round it (BPF_WORDALIGN).
	HeaderLen = 64
	// realHdrLen is the header length field: the layout without
	// OpenBSD's rewritten addresses or FreeBSD's ridentifier, which every
	// tcpdump since 4.99.0 parses (doc.go).
	realHdrLen = 61

	// FileHeaderLen and RecordHeaderLen are the classic pcap file and
	// per-record header sizes.
	FileHeaderLen   = 24
	RecordHeaderLen = 16

	// FileSnapLen is the snap length in the pcap file header. A record's
	// captured bytes (pflog header and packet) never exceed it.
	FileSnapLen = 65535

	// afInet and afInet6 are the address families in the header. pflog
	// comes from the BSDs, and tcpdump accepts only BSD values: AF_INET 2,
	// and for IPv6 24 (NetBSD/OpenBSD), 28 (FreeBSD) or 30 (Darwin).
	// Linux's AF_INET6 (10) would be printed as raw hex.
	afInet  = 2
	afInet6 = 24

	pcapMagicMicro = 0xa1b2c3d4
	pcapMagicNano  = 0xa1b23c4d
)

// Offsets in the pflog header (struct pfloghdr, all multi-byte fields
// big-endian).
const (
	offLength    = 0
	offAF        = 1
	offAction    = 2
	offReason    = 3
	offIfname    = 4  // [16]byte
	offRuleset   = 20 // [16]byte, the anchor; always empty here
	offRuleNr    = 36
	offSubRuleNr = 40
	offUID       = 44
	offPID       = 48
	offRuleUID   = 52
	offRulePID   = 56
	offDir       = 60
)

// AppendFileHeader appends a classic pcap file header (version 2.4,
// microsecond timestamps, little-endian, snap length FileSnapLen, link type
// PFLOG) to dst.
func AppendFileHeader(dst []byte) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, pcapMagicMicro)
	dst = le.AppendUint16(dst, 2)
	dst = le.AppendUint16(dst, 4)
	dst = le.AppendUint32(dst, 0) // thiszone
	dst = le.AppendUint32(dst, 0) // sigfigs
	dst = le.AppendUint32(dst, FileSnapLen)
	return le.AppendUint32(dst, LinkTypePFLOG)
}

// AppendHeader appends r's HeaderLen-byte pflog header to dst.
//
// The fields pf fills from the socket that sent the packet (uid, pid) and
// from whoever loaded the rule (rule_uid, rule_pid) are unknown to a
// userspace firewall: they hold "none" (uid 0xffffffff, pid -1), which
// tcpdump does not print. subrulenr is -1 (no anchor), so tcpdump prints
// "rule N/" rather than "rule N..0/".
func AppendHeader(dst []byte, r *Record) []byte {
	be := binary.BigEndian
	var af byte
	switch r.family() {
	case 4:
		af = afInet
	case 6:
		af = afInet6
	}
	dst = append(dst, realHdrLen, af, byte(r.Action), byte(r.Reason))
	dst = append(dst, r.Ifname[:len(r.Ifname)-1]...)
	dst = append(dst, 0)
	var ruleset [16]byte
	dst = append(dst, ruleset[:]...)
	dst = be.AppendUint32(dst, r.RuleNr)
	dst = be.AppendUint32(dst, NoRule)     // subrulenr
	dst = be.AppendUint32(dst, ^uint32(0)) // uid
	dst = be.AppendUint32(dst, ^uint32(0)) // pid
	dst = be.AppendUint32(dst, ^uint32(0)) // rule_uid
	dst = be.AppendUint32(dst, ^uint32(0)) // rule_pid
	return append(dst, byte(r.Dir), 0, 0, 0)
}

// RecordLen returns how many bytes AppendRecord appends for r.
func RecordLen(r *Record) int {
	return RecordHeaderLen + HeaderLen + min(len(r.Packet), FileSnapLen-HeaderLen)
}

// AppendRecord appends one pcap record for r to dst: the record header,
// the pflog header and r.Packet (cut so that the record fits FileSnapLen).
// The record's original length is HeaderLen plus r's Length. A zero
// r.Time is written as 0 (1970); Logger.Log stamps records itself.
func AppendRecord(dst []byte, r *Record) []byte {
	pkt := r.Packet[:min(len(r.Packet), FileSnapLen-HeaderLen)]
	le := binary.LittleEndian
	var sec, usec uint32
	if !r.Time.IsZero() {
		ns := r.Time.UnixNano()
		sec, usec = uint32(ns/1e9), uint32(ns%1e9/1e3)
	}
	dst = le.AppendUint32(dst, sec)
	dst = le.AppendUint32(dst, usec)
	dst = le.AppendUint32(dst, uint32(HeaderLen+len(pkt)))
	dst = le.AppendUint32(dst, uint32(min(HeaderLen+r.length(), 1<<32-1)))
	dst = AppendHeader(dst, r)
	return append(dst, pkt...)
}

// Writer writes a pflog pcap file. It is not safe for concurrent use; the
// Logger is the concurrent, non-blocking front end.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes the pcap file header to w and returns a Writer that
// appends records after it.
func NewWriter(w io.Writer) (*Writer, error) {
	wr := &Writer{w: w, buf: make([]byte, 0, 512)}
	_, err := w.Write(AppendFileHeader(wr.buf[:0]))
	return wr, err
}

// Write writes one record with a single Write call on the underlying
// writer. It does not allocate once its buffer has grown to the largest
// record.
func (w *Writer) Write(r *Record) error {
	w.buf = AppendRecord(w.buf[:0], r)
	_, err := w.w.Write(w.buf)
	return err
}
