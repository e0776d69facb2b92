package conntrack

import (
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// icmpQuery[proto row][type]: the types that can create an entry (the
// kernel's valid_new in nf_conntrack_icmp_packet and
// nf_conntrack_icmpv6_packet).
var icmpQuery = [2][256]bool{
	{8: true, 13: true, 15: true, 17: true}, // echo, timestamp, information, address mask
	{128: true, 139: true},                  // echo request, node information query
}

// icmpv6Untracked: neighbour discovery, MLD and multicast router discovery
// are not tracked at all (the kernel's noct_valid_new).
var icmpv6Untracked = [256]bool{
	130: true, 131: true, 132: true, // MLD query, report, done
	133: true, 134: true, 135: true, 136: true, // router/neighbour solicitation/advertisement
	143: true,            // MLDv2 report
	151: true, 152: true, // multicast router advertisement, solicitation
}

// icmpError reports the ICMPv4 types that quote the packet that caused them
// (the kernel's icmp_is_err): destination unreachable, source quench,
// redirect, time exceeded, parameter problem.
func icmpError(typ uint8) bool {
	switch typ {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// trackICMP is the kernel's nf_conntrack_icmpv4_error followed, for
// queries and replies, by nf_conntrack_icmp_packet.
func (t *Table) trackICMP(r *Result, p *packet.Packet, now int64) {
	switch {
	case p.L4Len < 8:
		t.invalid(r, p, ReasonShortHeader)
		return
	case !t.checksumOK(p):
		// The kernel checks the checksum of every ICMP message, errors
		// included, before anything else.
		t.invalid(r, p, ReasonBadChecksum)
		return
	case p.ICMPType > 18:
		// RFC 1122 3.2.2: unknown types are discarded.
		t.invalid(r, p, ReasonICMPType)
		return
	case icmpError(p.ICMPType):
		t.trackICMPError(r, p, now)
		return
	}
	t.trackICMPQuery(r, p, now, t.to.ICMP)
}

// trackICMPv6 is the kernel's nf_conntrack_icmpv6_error followed, for
// informational messages that are not ND or MLD, by
// nf_conntrack_icmpv6_packet.
func (t *Table) trackICMPv6(r *Result, p *packet.Packet, now int64) {
	switch {
	case p.L4Len < 8:
		t.invalid(r, p, ReasonShortHeader)
		return
	case !t.checksumOK(p):
		t.invalid(r, p, ReasonBadChecksum)
		return
	case icmpv6Untracked[p.ICMPType]:
		r.Label, r.Reason = LabelUntracked, ReasonNDMLD
		return
	case p.ICMPType < 128:
		// Every type below 128 is an error for the kernel, defined by RFC
		// 4443 or not.
		t.trackICMPError(r, p, now)
		return
	}
	t.trackICMPQuery(r, p, now, t.to.ICMPv6)
}

// trackICMPQuery tracks echo and the other query/reply pairs. A reply
// refreshes the entry and leaves it in place: duplicate replies stay
// established (the kernel keeps the entry for its timeout for the same
// reason).
func (t *Table) trackICMPQuery(r *Result, p *packet.Packet, now int64, timeout time.Duration) {
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, ok := t.lookup(&k, h, now)
	defer c.unlock()
	if ok {
		c.label(r)
		c.accept(p, now, timeout)
		return
	}
	row := icmpTable(p.Proto)
	switch {
	case icmpQuery[row][p.ICMPType]:
		t.miss(r, c.s, h, now, timeout)
		return
	case icmpInverse[row][p.ICMPType] != 0:
		c.s.st.invalid.Add(1)
		r.Label, r.Reason = LabelInvalid, ReasonReplyNoRequest
		return
	}
	c.s.st.invalid.Add(1)
	r.Label, r.Reason = LabelInvalid, ReasonICMPUnsolicited
}

// trackICMPError is the kernel's nf_conntrack_inet_error: an error is
// related to the connection whose tuple is the inverse of the packet it
// quotes (an error about A->B travels towards A, and B->A is that
// connection's reply tuple, or its original one when A is the responder),
// provided the error goes to that tuple's destination, which is the
// quoted packet's source. Without that check anyone could have an error
// about A's connection delivered, as related, to a third host. The error
// is labelled in the direction of the tuple found, and changes nothing in
// the entry (no refresh, no counters).
func (t *Table) trackICMPError(r *Result, p *packet.Packet, now int64) {
	in := &p.Inner
	if !in.Valid || in.IPVersion != p.IPVersion {
		t.invalid(r, p, ReasonErrorNoQuote)
		return
	}
	if in.NonFirstFragment {
		// A quoted non-first fragment has no ports: the kernel finds no
		// connection for it.
		t.invalid(r, p, ReasonErrorUnknownConn)
		return
	}
	q := innerKey(in)
	if isICMP(q.proto) && !icmpInvertible(q.proto, uint8(q.dport>>8)) {
		// The quote of an error or an unknown type has no inverse
		// (nf_ct_invert_tuple fails).
		t.invalid(r, p, ReasonErrorUnknownConn)
		return
	}
	k := q.Reply()
	h := t.hash.sum(&k)
	c, ok := t.lookup(&k, h, now)
	defer c.unlock()
	switch {
	case !ok:
		c.s.st.invalid.Add(1)
		r.Label, r.Reason = LabelInvalid, ReasonErrorUnknownConn
		return
	case p.Dst.As16() != k.dst:
		c.s.st.invalid.Add(1)
		r.Label, r.Reason = LabelInvalid, ReasonErrorOuterDst
		return
	}
	r.Label, r.Reply, r.Reason, r.Mark = LabelRelated, c.dir == 1, ReasonICMPError, c.e.mark
}

// trackGeneric is the kernel's nf_conntrack_proto_generic: addresses and
// protocol only, one timeout, never assured.
func (t *Table) trackGeneric(r *Result, p *packet.Packet, now int64) {
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, ok := t.lookup(&k, h, now)
	defer c.unlock()
	if !ok {
		t.miss(r, c.s, h, now, t.to.Generic)
		return
	}
	c.label(r)
	c.accept(p, now, t.to.Generic)
}
