package conntrack

import "github.com/statewall/statewall/pkg/packet"

// GRE is tracked as the kernel's nf_conntrack_proto_gre.c does: like the
// generic tracker, new until a reply is seen, but with timeouts of its
// own (30 s unreplied, 180 s once replied, when the entry is assured) and,
// for enhanced GRE (version 1, PPTP), a key in the tuple.
//
// The tuple (gre_pkt_to_tuple): for any version but 1, or a header
// shorter than 4 bytes, no keys at all, as the generic tracker. For
// version 1 with its first 8 bytes, the destination key is the packet's
// call id, and the source key the one the PPTP helper's keymap records
// for that tuple, which without a helper (the default: no automatic
// helper assignment since Linux 4.7) is always 0; a version-1 header that
// does not carry PPP (0x880b) has no tuple and is invalid. So the tuple
// of a PPTP call's packets to the server is (client, server, 0, server's
// call id) and the reply it expects (server, client, server's call id,
// 0), while the server's packets carry the client's call id as theirs:
// (server, client, 0, client's call id). The two directions of a call
// are two connections, each new for ever (unless both call ids are 0),
// which is what the kernel labels them without a PPTP helper, and what
// the oracle's gre-pptp-callid capture shows.

// greKey is the destination key of a GRE tuple (the source key is always
// 0 here), and whether the header has a tuple at all.
func greKey(g *packet.GRE) (uint16, bool) {
	if !g.HasCallID {
		return 0, true
	}
	if g.Proto != packet.GREProtoPPP {
		return 0, false
	}
	return g.CallID, true
}

// trackGRE is the kernel's nf_conntrack_gre_packet.
func (t *Table) trackGRE(r *Result, p *packet.Packet, now int64) {
	if _, ok := greKey(&p.GRE); !ok {
		t.invalid(r, p, ReasonGREProto)
		return
	}
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	c, ok := t.lookup(&k, h, now)
	defer c.unlock()
	if !ok {
		t.miss(r, c.s, h, now, t.to.GRE)
		return
	}
	c.label(r)
	// As UDP's: the packet that brings the first reply still sees the
	// entry unreplied (seen-reply is set after the protocol's handler)
	// and refreshes it by the unreplied timeout; every later packet, in
	// either direction, by the stream timeout, and assures it.
	d := t.to.GRE
	if c.e.seenReply() {
		d = t.to.GREStream
		c.e.flags |= flagAssured
	}
	c.accept(p, now, d)
}
