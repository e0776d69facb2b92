package conntrack

import (
	"encoding/binary"
	"hash/crc32"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// SCTP is tracked as the kernel's nf_conntrack_proto_sctp decides who may
// start an association and which packets are invalid, but without its
// per-chunk state machine and verification-tag checks: an entry is new
// until a reply is seen, then established, with one timeout. That is what
// the ct labels of ordinary associations need; the finer SCTP states are
// not modelled (yet).

// sctpTimeout is the kernel's ESTABLISHED timeout for SCTP (210 s since
// Linux 6.x).
const sctpTimeout = 210 * time.Second

// SCTP chunk types the checks below name.
const (
	sctpData             = 0
	sctpInit             = 1
	sctpInitAck          = 2
	sctpSack             = 3
	sctpShutdownComplete = 14
	sctpHeartbeat        = 4
	sctpHeartbeatAck     = 5
	sctpAbort            = 6
	sctpShutdown         = 7
	sctpShutdownAck      = 8
	sctpError            = 9
	sctpCookieEcho       = 10
	sctpCookieAck        = 11
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpChecksumOK verifies the CRC32c (RFC 4960 appendix B): computed with
// the checksum field taken as zero, stored little-endian as the kernel's
// sctp_compute_cksum does. It is true when the bytes are not all there.
func sctpChecksumOK(p *packet.Packet) bool {
	end := p.L3Off + p.IPLen
	if p.L4Off == 0 || end > len(p.Data) || end < p.L4Off+12 {
		return true
	}
	b := p.Data[p.L4Off:end]
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:8])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, b[12:])
	return binary.LittleEndian.Uint32(b[8:12]) == c
}

// sctpChunks applies the kernel's do_basic_checks and reports the first
// chunk's type: every chunk has a length of at least 4 within the packet,
// and INIT, INIT ACK and SHUTDOWN COMPLETE stand alone.
func sctpChunks(p *packet.Packet) (first uint8, ok bool) {
	end := p.L3Off + p.IPLen
	if end > len(p.Data) {
		end = len(p.Data)
	}
	off := p.L4Off + 12
	if p.L4Off == 0 || off+4 > end {
		return 0, false
	}
	n := 0
	alone := false
	for off+4 <= end {
		typ := p.Data[off]
		l := int(binary.BigEndian.Uint16(p.Data[off+2:]))
		if l < 4 {
			return 0, false
		}
		if n == 0 {
			first = typ
		}
		if typ == sctpInit || typ == sctpInitAck || typ == sctpShutdownComplete {
			alone = true
		}
		if alone && n > 0 {
			return 0, false
		}
		n++
		off += (l + 3) &^ 3
	}
	return first, n > 0
}

// sctpOpens reports whether a first chunk of this type may create an
// association entry: the kernel's sctp_new refuses the chunks whose
// transition from state NONE is NONE (DATA, SACK and unknown types).
func sctpOpens(typ uint8) bool {
	switch typ {
	case sctpInit, sctpInitAck, sctpAbort, sctpShutdown, sctpShutdownAck, sctpError,
		sctpCookieEcho, sctpCookieAck, sctpShutdownComplete, sctpHeartbeat, sctpHeartbeatAck:
		return true
	}
	return false
}

func (t *Table) trackSCTP(r *Result, p *packet.Packet, now int64) {
	first, ok := sctpChunks(p)
	switch {
	case p.L4Len < 12:
		t.invalid(r, p, ReasonShortHeader)
		return
	case !ok:
		t.invalid(r, p, ReasonSCTPChunks)
		return
	case t.checksum && !sctpChecksumOK(p):
		t.invalid(r, p, ReasonBadChecksum)
		return
	}
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, found := t.lookup(&k, h, now)
	defer c.unlock()
	if !found {
		if !sctpOpens(first) {
			t.shards[h&t.mask].st.invalid.Add(1)
			r.Label, r.Reason = LabelInvalid, ReasonSCTPNoInit
			return
		}
		t.miss(r, c.s, h, now, sctpTimeout)
		return
	}
	c.label(r)
	c.accept(p, now, sctpTimeout)
}
