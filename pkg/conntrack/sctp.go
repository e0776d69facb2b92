package conntrack

import (
	"encoding/binary"
	"hash/crc32"
	"unsafe"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// SCTP is tracked as the kernel's nf_conntrack_proto_sctp.c does (Linux
// 6.x): a state machine that every chunk of every packet steps, in order,
// in the packet's direction (the table sctpTransitions, the kernel's
// sctp_conntracks), the verification tags of both directions learnt from
// INIT and INIT ACK and checked on every packet (RFC 9260 8.5, with the
// exceptions of 8.5.1), and a timeout per state. The state machine is
// sctpConn.step, a pure function of (state, packet, direction): no lock,
// no clock.
//
// What it decides, for labels: an association starts with INIT (vtag 0),
// INIT ACK, COOKIE ECHO, SHUTDOWN, SHUTDOWN ACK, ERROR, HEARTBEAT or
// HEARTBEAT ACK, never with ABORT, SHUTDOWN COMPLETE, COOKIE ACK, DATA,
// SACK or an unknown chunk; a packet whose verification tag is not the
// one its direction expects is invalid; INIT, INIT ACK and SHUTDOWN
// COMPLETE stand alone and COOKIE ECHO and COOKIE ACK come first in their
// packet.

// SCTPState is an SCTP association's state as conntrack keeps it (the
// kernel's enum sctp_conntrack). The zero value is SCTPNone, which no
// stored entry has: the first packet always moves it on.
type SCTPState uint8

// SCTP conntrack states, in the kernel's order.
const (
	SCTPNone            SCTPState = iota
	SCTPClosed                    // an INIT seen, or the association ended (10 s)
	SCTPCookieWait                // INIT ACK seen in reply (3 s)
	SCTPCookieEchoed              // COOKIE ECHO seen (3 s)
	SCTPEstablished               // COOKIE ACK seen in reply, or HEARTBEAT ACK on a new path (210 s)
	SCTPShutdownSent              // SHUTDOWN from the original side (3 s)
	SCTPShutdownRecd              // SHUTDOWN from the reply side (3 s)
	SCTPShutdownAckSent           // SHUTDOWN ACK seen (3 s)
	SCTPHeartbeatSent             // a HEARTBEAT started the entry: a secondary path (30 s)
	numSCTPStates

	sctpInvalid = numSCTPStates // the table's sIV: the chunk is invalid here
)

var sctpStateNames = [numSCTPStates]string{
	"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
	"SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT",
}

// String returns the name conntrack -L prints.
func (s SCTPState) String() string {
	if s < numSCTPStates {
		return sctpStateNames[s]
	}
	return "SCTP?"
}

// SCTP chunk types the tracker names (RFC 9260 3.2).
const (
	sctpData             = 0
	sctpInit             = 1
	sctpInitAck          = 2
	sctpSack             = 3
	sctpHeartbeat        = 4
	sctpHeartbeatAck     = 5
	sctpAbort            = 6
	sctpShutdown         = 7
	sctpShutdownAck      = 8
	sctpError            = 9
	sctpCookieEcho       = 10
	sctpCookieAck        = 11
	sctpShutdownComplete = 14

	// sctpFlagT is the T bit of ABORT and SHUTDOWN COMPLETE: the
	// verification tag is the receiver's own, reflected.
	sctpFlagT = 1
	// sctpInitHdr is the INIT and INIT ACK header after the chunk header
	// (the kernel's struct sctp_inithdr): initiate tag, a_rwnd, stream
	// counts, initial TSN.
	sctpInitHdr = 16
)

// sctpRow maps a chunk type to its row of sctpTransitions, plus one (0:
// a chunk that leaves the state alone: DATA, SACK and the rest).
var sctpRow = [256]uint8{
	sctpInit: 1, sctpInitAck: 2, sctpAbort: 3, sctpShutdown: 4, sctpShutdownAck: 5,
	sctpError: 6, sctpCookieEcho: 7, sctpCookieAck: 8, sctpShutdownComplete: 9,
	sctpHeartbeat: 10, sctpHeartbeatAck: 11,
}

// sctpTransitions[dir][row][state] is the state after a chunk (the
// kernel's sctp_conntracks, nf_conntrack_proto_sctp.c; dir 0 original, 1
// reply). The comments on the right are the kernel's.
var sctpTransitions = func() (t [2][11][numSCTPStates]SCTPState) {
	const (
		sNO = SCTPNone
		sCL = SCTPClosed
		sCW = SCTPCookieWait
		sCE = SCTPCookieEchoed
		sES = SCTPEstablished
		sSS = SCTPShutdownSent
		sSR = SCTPShutdownRecd
		sSA = SCTPShutdownAckSent
		sHS = SCTPHeartbeatSent
		sIV = sctpInvalid
	)
	t[0] = [11][numSCTPStates]SCTPState{
		//          sNO, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS
		/* init         */ {sCL, sCL, sCW, sCE, sES, sCL, sCL, sSA, sCW},
		/* init_ack     */ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sCL},
		/* abort        */ {sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/* shutdown     */ {sCL, sCL, sCW, sCE, sSS, sSS, sSR, sSA, sCL},
		/* shutdown_ack */ {sSA, sCL, sCW, sCE, sES, sSA, sSA, sSA, sSA},
		/* error        */ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sCL}, // Can't have Stale cookie
		/* cookie_echo  */ {sCL, sCL, sCE, sCE, sES, sSS, sSR, sSA, sCL}, // 5.2.4 - Big TODO
		/* cookie_ack   */ {sCL, sCL, sCW, sES, sES, sSS, sSR, sSA, sCL}, // Can't come in orig dir
		/* shutdown_comp*/ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sCL, sCL},
		/* heartbeat    */ {sHS, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS},
		/* heartbeat_ack*/ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS},
	}
	t[1] = [11][numSCTPStates]SCTPState{
		//          sNO, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS
		/* init         */ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sIV}, // INIT in sCL Big TODO
		/* init_ack     */ {sIV, sCW, sCW, sCE, sES, sSS, sSR, sSA, sIV},
		/* abort        */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sIV},
		/* shutdown     */ {sIV, sCL, sCW, sCE, sSR, sSS, sSR, sSA, sIV},
		/* shutdown_ack */ {sIV, sCL, sCW, sCE, sES, sSA, sSA, sSA, sIV},
		/* error        */ {sIV, sCL, sCW, sCL, sES, sSS, sSR, sSA, sIV},
		/* cookie_echo  */ {sIV, sCL, sCE, sCE, sES, sSS, sSR, sSA, sIV}, // Can't come in reply dir
		/* cookie_ack   */ {sIV, sCL, sCW, sES, sES, sSS, sSR, sSA, sIV},
		/* shutdown_comp*/ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sCL, sIV},
		/* heartbeat    */ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS},
		/* heartbeat_ack*/ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sES},
	}
	return t
}()

// sctpNext is the state after a chunk of type typ in direction dir
// (sctp_new_state): unknown chunk types leave the state as it is.
func sctpNext(dir uint8, s SCTPState, typ uint8) SCTPState {
	row := sctpRow[typ]
	if row == 0 {
		return s
	}
	return sctpTransitions[dir][row-1][s]
}

// sctpConn is an SCTP entry's state (the kernel's struct ip_ct_sctp),
// kept in the TCP state's place, which an SCTP entry does not use
// (entry.sctp). 16 bytes.
type sctpConn struct {
	// vtag is the verification tag each direction's packets carry: the
	// initiate tag of the other side's INIT or INIT ACK; 0 while unknown.
	vtag  [2]uint32
	state SCTPState
	// init: an INIT was seen in that direction since the last COOKIE ACK
	// (to tell an INIT collision from a restart).
	init [2]bool
	// hbFailed: a HEARTBEAT came with a verification tag other than its
	// direction's (SCTP_FLAG_HEARTBEAT_VTAG_FAILED), in direction
	// lastDir; a HEARTBEAT ACK with a new tag from the other side then
	// replaces the tags (multihoming moved the association).
	hbFailed bool
	lastDir  uint8
}

// The SCTP state must fit where the TCP state is (see entry.sctp).
var _ [unsafe.Sizeof(tcpstate.Conn{}) - unsafe.Sizeof(sctpConn{})]byte

// sctp is an SCTP entry's state, kept in the TCP state's place, which an
// SCTP entry does not use (as UDP's streamTS is). tcp sits at offset 72,
// so the uint32 tags are aligned.
func (e *entry) sctp() *sctpConn { return (*sctpConn)(unsafe.Pointer(&e.tcp)) }

// sctpChunkSet is a set of chunk types (the kernel's map in
// nf_conntrack_sctp_packet).
type sctpChunkSet [4]uint64

func (m *sctpChunkSet) add(typ uint8)      { m[typ>>6] |= 1 << (typ & 63) }
func (m *sctpChunkSet) has(typ uint8) bool { return m[typ>>6]&(1<<(typ&63)) != 0 }

// sctpPacket is an SCTP packet as the tracker reads it: its bytes from
// the common header to the end of the IP datagram (of the captured bytes,
// if the capture was cut), its verification tag and the set of its chunk
// types. Build it with parse, which also runs the kernel's basic checks.
type sctpPacket struct {
	b     []byte
	vtag  uint32
	types sctpChunkSet
}

// sctpChunk is one chunk header. off is where the chunk starts in the
// packet; the INIT header, when the packet holds it, starts at off+4.
type sctpChunk struct {
	typ, flags uint8
	off        int
}

// next returns the chunk at *off and moves *off past it (its length
// rounded up to 4 bytes), as the kernel's for_each_sctp_chunk: the walk
// ends when the 4 bytes of a chunk header are not there. A chunk's length
// is not checked against the packet: the walk just ends after it.
// Precondition: the chunk lengths are not 0 (parse checked them).
func (sp *sctpPacket) next(off *int) (c sctpChunk, ok bool) {
	o := *off
	if o+4 > len(sp.b) {
		return c, false
	}
	c = sctpChunk{typ: sp.b[o], flags: sp.b[o+1], off: o}
	*off = o + (int(binary.BigEndian.Uint16(sp.b[o+2:]))+3)&^3
	return c, true
}

// initTag is the initiate tag of the INIT or INIT ACK chunk c; false when
// the packet ends before the INIT header does.
func (sp *sctpPacket) initTag(c sctpChunk) (uint32, bool) {
	if c.off+4+sctpInitHdr > len(sp.b) {
		return 0, false
	}
	return binary.BigEndian.Uint32(sp.b[c.off+4:]), true
}

// parse reads p's SCTP header and chunk types and applies the kernel's
// do_basic_checks: at least one chunk, no chunk of length 0, COOKIE ECHO
// and COOKIE ACK only first, INIT, INIT ACK and SHUTDOWN COMPLETE only
// alone. Chunk lengths of 1 to 3 pass (the walk moves on by 4), as do
// lengths beyond the packet and a few trailing bytes.
func (sp *sctpPacket) parse(p *packet.Packet) bool {
	end := min(p.L3Off+p.IPLen, len(p.Data))
	if p.L4Off == 0 || end < p.L4Off+12 {
		return false
	}
	sp.b = p.Data[p.L4Off:end]
	sp.vtag = binary.BigEndian.Uint32(sp.b[4:])
	sp.types = sctpChunkSet{}
	alone := false
	n := 0
	for off := 12; off+4 <= len(sp.b); n++ {
		typ := sp.b[off]
		l := int(binary.BigEndian.Uint16(sp.b[off+2:]))
		if typ == sctpInit || typ == sctpInitAck || typ == sctpShutdownComplete {
			alone = true
		}
		if ((typ == sctpCookieAck || typ == sctpCookieEcho || alone) && n != 0) || l == 0 {
			return false
		}
		sp.types.add(typ)
		off += (l + 3) &^ 3
	}
	return n > 0
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpZeroSum stands for the checksum field in the CRC32c. A package
// variable: a local array escapes to the heap through crc32.Update, one
// allocation per packet (TestSCTPNoAllocs).
var sctpZeroSum [4]byte

// sctpChecksumOK verifies the CRC32c (RFC 9260 appendix A): computed with
// the checksum field taken as zero, stored little-endian as the kernel's
// sctp_compute_cksum does. It is true when the bytes are not all there.
func sctpChecksumOK(p *packet.Packet) bool {
	end := p.L3Off + p.IPLen
	if p.L4Off == 0 || end > len(p.Data) || end < p.L4Off+12 {
		return true
	}
	b := p.Data[p.L4Off:end]
	c := crc32.Update(0, castagnoli, b[:8])
	c = crc32.Update(c, castagnoli, sctpZeroSum[:])
	c = crc32.Update(c, castagnoli, b[12:])
	return binary.LittleEndian.Uint32(b[8:12]) == c
}

// sctpVerdict is what a packet does to an SCTP entry.
type sctpVerdict uint8

const (
	sctpAccept sctpVerdict = iota // refresh with the new state's timeout
	sctpIgnore                    // accept, but neither refresh nor count (a retransmitted INIT, a HEARTBEAT on another path)
	sctpDrop                      // invalid (reason says why)
)

// sctpStep is what step decided.
type sctpStep struct {
	verdict sctpVerdict
	reason  Reason
	state   SCTPState // after the last chunk stepped
	// assured: a chunk moved the association into ESTABLISHED. The kernel
	// sets IPS_ASSURED at that chunk, even when a later chunk of the same
	// packet makes it invalid.
	assured bool
}

// start is the kernel's sctp_new: whether a packet without an entry may
// create one, and the state it starts from. Every chunk must be able to
// start an association from NONE in the original direction: INIT (with a
// verification tag of 0 and its header), INIT ACK, ABORT, SHUTDOWN,
// SHUTDOWN ACK, ERROR, COOKIE ECHO, COOKIE ACK, SHUTDOWN COMPLETE,
// HEARTBEAT, HEARTBEAT ACK; the packet function has already refused ABORT,
// SHUTDOWN COMPLETE and COOKIE ACK (an out-of-the-blue packet with them
// is discarded, RFC 9260 8.4). Three chunks learn a tag: an INIT's
// initiate tag is the one the reply side will carry; a HEARTBEAT's own tag
// is its direction's (a path of an association conntrack has not seen);
// an out-of-the-blue SHUTDOWN ACK's own tag is the one the SHUTDOWN
// COMPLETE back will carry (RFC 9260 8.4 (5)). Every other chunk leaves
// both tags unknown (0), for step to learn from the HEARTBEAT and
// HEARTBEAT ACK chunks of either side: a HEARTBEAT ACK that opens an entry
// sets only its own direction's tag, and one coming back with another tag
// is accepted (testdata/kerneldiff/sctp-heartbeat-ack-first.pcap). That
// is sctp_new as in mainline and the 6.18 kernel the oracle runs,
//
//	} else if (sch->type == SCTP_CID_SHUTDOWN_ACK) {
//		ct->proto.sctp.vtag[IP_CT_DIR_REPLY] = sh->vtag;
//	}
//
// where older kernels set vtag[REPLY] for every other chunk (see
// docs/kernel-parity.md).
func (c *sctpConn) start(sp *sctpPacket) (Reason, bool) {
	*c = sctpConn{}
	for off := 12; ; {
		ch, ok := sp.next(&off)
		if !ok {
			return ReasonNone, true
		}
		if s := sctpNext(0, SCTPNone, ch.typ); s == SCTPNone || s == sctpInvalid {
			return ReasonSCTPNoInit, false
		}
		switch ch.typ {
		case sctpInit:
			if sp.vtag != 0 { // RFC 9260 8.5.1 (A)
				return ReasonSCTPVtag, false
			}
			tag, ok := sp.initTag(ch)
			if !ok {
				return ReasonSCTPChunks, false
			}
			c.vtag[1] = tag
		case sctpHeartbeat:
			c.vtag[0] = sp.vtag
		case sctpShutdownAck:
			c.vtag[1] = sp.vtag
		}
	}
}

// sctpTagExempt are the chunks whose packets skip the general
// verification-tag check (RFC 9260 8.5.1: they carry special tags,
// checked chunk by chunk in step).
var sctpTagExempt = func() (m sctpChunkSet) {
	for _, t := range []uint8{sctpInit, sctpShutdownComplete, sctpCookieEcho, sctpAbort, sctpShutdownAck, sctpHeartbeat, sctpHeartbeatAck} {
		m.add(t)
	}
	return m
}()

// step is the kernel's nf_conntrack_sctp_packet after its basic checks:
// the verification tag, then every chunk in order through the state
// machine in direction dir (0 original, 1 reply). confirmed says whether
// the entry is stored (false for the first packet, after start). Like the
// kernel, a packet found invalid at one chunk keeps what the chunks before
// it changed.
func (c *sctpConn) step(sp *sctpPacket, dir uint8, confirmed bool) (r sctpStep) {
	// The general check: unless a chunk with a tag of its own is there.
	exempt := false
	for i := range sp.types {
		exempt = exempt || sp.types[i]&sctpTagExempt[i] != 0
	}
	if !exempt && sp.vtag != c.vtag[dir] {
		return sctpStep{verdict: sctpDrop, reason: ReasonSCTPVtag}
	}
	other := dir ^ 1
	ignore := false
	for off := 12; ; {
		ch, ok := sp.next(&off)
		if !ok {
			break
		}
		// The special cases of the tag check (RFC 9260 8.5.1).
		switch ch.typ {
		case sctpInit:
			if sp.vtag != 0 { // (A)
				return r.drop(ReasonSCTPVtag)
			}
		case sctpAbort, sctpShutdownComplete: // (B), (C)
			want := c.vtag[dir]
			if ch.flags&sctpFlagT != 0 {
				want = c.vtag[other]
			}
			if sp.vtag != want {
				return r.drop(ReasonSCTPVtag)
			}
		case sctpCookieEcho: // (D)
			if sp.vtag != c.vtag[dir] {
				return r.drop(ReasonSCTPVtag)
			}
		case sctpCookieAck:
			c.init = [2]bool{}
		case sctpHeartbeat:
			switch {
			case c.vtag[dir] == 0:
				c.vtag[dir] = sp.vtag
			case sp.vtag != c.vtag[dir]:
				// Another path, or an attacker: accepted once, alone,
				// without refreshing the entry; a HEARTBEAT ACK from
				// the other side with a new tag confirms the move.
				if sp.types.has(sctpData) || ignore {
					return r.drop(ReasonSCTPVtag)
				}
				c.hbFailed, c.lastDir = true, dir
				ignore = true
				continue
			case c.hbFailed:
				c.hbFailed = false
			}
		case sctpHeartbeatAck:
			switch {
			case c.vtag[dir] == 0:
				c.vtag[dir] = sp.vtag
			case sp.vtag != c.vtag[dir]:
				if sp.types.has(sctpData) || ignore || !c.hbFailed || c.lastDir == dir {
					return r.drop(ReasonSCTPVtag)
				}
				c.hbFailed = false
				c.vtag[dir], c.vtag[other] = sp.vtag, 0
			case c.hbFailed:
				c.hbFailed = false
			}
		}
		old := c.state
		next := sctpNext(dir, old, ch.typ)
		if next == sctpInvalid {
			return r.drop(ReasonSCTPState)
		}
		r.state = next
		switch ch.typ {
		case sctpInit:
			tag, ok := sp.initTag(ch)
			if !ok {
				return r.drop(ReasonSCTPChunks)
			}
			// An INIT with the initiate tag already known (stale, or
			// retransmitted) is not recorded as an INIT: the INIT ACK
			// that follows must then carry the tag conntrack knows.
			// The kernel's "Do not record INIT matching peer vtag".
			if old == SCTPNone || c.vtag[other] != tag {
				if c.init[dir] && c.init[other] {
					c.init[other] = false
				}
				c.init[dir] = true
			}
			c.vtag[other] = tag
			// A retransmitted INIT does not refresh the entry, so that
			// a client (or a NAT) reusing the ports cannot keep it
			// alive for ever.
			if next == SCTPClosed && old == SCTPClosed && confirmed {
				ignore = true
			}
		case sctpInitAck:
			tag, ok := sp.initTag(ch)
			if !ok {
				return r.drop(ReasonSCTPChunks)
			}
			v := c.vtag[other]
			if !c.init[other] && v != 0 && v != tag {
				return r.drop(ReasonSCTPVtag)
			}
			if c.init[dir] && c.init[other] && v != tag { // a collision
				return r.drop(ReasonSCTPVtag)
			}
			c.vtag[other] = tag
		}
		c.state = next
		if old != next && next == SCTPEstablished {
			r.assured = true
		}
	}
	if ignore {
		r.verdict = sctpIgnore
	}
	return r
}

// drop is r, invalid for why, keeping what earlier chunks set (assured).
func (r sctpStep) drop(why Reason) sctpStep {
	r.verdict, r.reason = sctpDrop, why
	return r
}

// closing reports the states in which a full table may drop an assured
// association (sctp_can_early_drop).
func (s SCTPState) closing() bool {
	return s == SCTPShutdownSent || s == SCTPShutdownRecd || s == SCTPShutdownAckSent
}

// sctpFirst runs a packet without an entry through start and step, as the
// kernel does an unconfirmed entry's first packet. Track and Commit both
// call it, on the same packet: they agree.
func sctpFirst(c *sctpConn, sp *sctpPacket) sctpStep {
	// An out-of-the-blue packet with any of these is discarded (RFC 9260
	// 8.4), before sctp_new looks at the chunks.
	if sp.types.has(sctpAbort) || sp.types.has(sctpShutdownComplete) || sp.types.has(sctpCookieAck) {
		return sctpStep{verdict: sctpDrop, reason: ReasonSCTPNoInit}
	}
	if why, ok := c.start(sp); !ok {
		return sctpStep{verdict: sctpDrop, reason: why}
	}
	return c.step(sp, 0, false)
}

// trackSCTP is the kernel's nf_conntrack_sctp_packet with sctp_error and
// sctp_new.
func (t *Table) trackSCTP(r *Result, p *packet.Packet, now int64) {
	var sp sctpPacket
	switch {
	case p.L4Len < 12:
		t.invalid(r, p, ReasonShortHeader)
		return
	case t.checksum && !sctpChecksumOK(p):
		t.invalid(r, p, ReasonBadChecksum)
		return
	case !sp.parse(p):
		t.invalid(r, p, ReasonSCTPChunks)
		return
	}
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, found := t.lookup(&k, h, now)
	defer c.unlock()
	if !found {
		var conn sctpConn
		st := sctpFirst(&conn, &sp)
		if st.verdict == sctpDrop {
			c.s.st.invalid.Add(1)
			r.Label, r.Reason = LabelInvalid, st.reason
			return
		}
		t.miss(r, c.s, h, now, t.to.SCTP.of(st.state))
		if st.assured {
			r.flags |= flagAssured
		}
		return
	}
	c.label(r)
	st := c.e.sctp().step(&sp, c.dir, true)
	if st.assured {
		c.e.flags |= flagAssured
	}
	switch st.verdict {
	case sctpDrop:
		c.s.st.invalid.Add(1)
		r.Label, r.Reply, r.Reason = LabelInvalid, false, st.reason
	case sctpIgnore:
		// Accepted, not refreshed nor counted (the kernel returns
		// before nf_ct_refresh_acct); a reply still counts as seen.
		c.seen()
	default:
		c.accept(p, now, t.to.SCTP.of(st.state))
	}
}

// sctpCommit sets the SCTP state of a new entry from its first packet,
// which Track accepted: the same walk gives the same state.
func sctpCommit(e *entry, p *packet.Packet) {
	var sp sctpPacket
	if sp.parse(p) {
		sctpFirst(e.sctp(), &sp)
	}
}
