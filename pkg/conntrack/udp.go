package conntrack

import (
	"encoding/binary"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// udpStreamAfter: a replied UDP flow becomes a stream (120 s, assured) with
// the first packet more than 2 s after its creation (the kernel's
// ct->proto.udp.stream_ts, a constant, not a sysctl).
const udpStreamAfter = 2 * time.Second

// udpChecksumZero reports whether the UDP header's checksum field is 0 ("no
// checksum"). Without the bytes (packets built by hand) it reports false.
func udpChecksumZero(p *packet.Packet) bool {
	if p.L4Off == 0 || len(p.Data) < p.L4Off+8 {
		return false
	}
	return binary.BigEndian.Uint16(p.Data[p.L4Off+6:]) == 0
}

// trackUDP is the kernel's nf_conntrack_udp_packet with udp_error.
func (t *Table) trackUDP(r *Result, p *packet.Packet, now int64) {
	switch {
	case p.L4Len < 8:
		t.invalid(r, p, ReasonShortHeader)
		return
	case p.UDPLen < 8 || int(p.UDPLen) > p.L4Len:
		// Shorter than the IP payload is allowed: the rest is padding.
		t.invalid(r, p, ReasonBadLength)
		return
	case !udpChecksumZero(p) && !t.checksumOK(p):
		// A zero checksum means none, for IPv6 too: conntrack does not
		// enforce RFC 8200 (the IPv6 UDP stack drops it later).
		t.invalid(r, p, ReasonBadChecksum)
		return
	}
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, ok := t.lookup(&k, h, now)
	defer c.unlock()
	if !ok {
		t.miss(r, c.s, h, now, t.to.UDP)
		return
	}
	c.label(r)
	// The packet that brings the first reply still sees the entry as
	// unreplied (seen-reply is set after the protocol handler runs), so it
	// refreshes by 30 s; a later packet extends to 120 s and assures the
	// flow only once the flow is more than 2 s old: a DNS query and its
	// answer never become assured.
	d := t.to.UDP
	if c.e.seenReply() && now > *c.e.streamTS() {
		d = t.to.UDPStream
		c.e.flags |= flagAssured
	}
	c.accept(p, now, d)
}

// trackUDPLite is the kernel's nf_conntrack_udplite_packet: like UDP, but
// the length field is the checksum coverage, the checksum is mandatory, and
// any packet after a reply makes the flow a stream.
func (t *Table) trackUDPLite(r *Result, p *packet.Packet, now int64) {
	switch {
	case p.L4Len < 8:
		t.invalid(r, p, ReasonShortHeader)
		return
	case p.UDPLen != 0 && (p.UDPLen < 8 || int(p.UDPLen) > p.L4Len):
		t.invalid(r, p, ReasonBadLength)
		return
	case udpChecksumZero(p) || !t.checksumOK(p):
		t.invalid(r, p, ReasonBadChecksum)
		return
	}
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, ok := t.lookup(&k, h, now)
	defer c.unlock()
	if !ok {
		t.miss(r, c.s, h, now, t.to.UDP)
		return
	}
	c.label(r)
	d := t.to.UDP
	if c.e.seenReply() {
		d = t.to.UDPStream
		c.e.flags |= flagAssured
	}
	c.accept(p, now, d)
}
