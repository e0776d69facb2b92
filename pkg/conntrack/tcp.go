package conntrack

import (
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// trackTCP is the kernel's nf_conntrack_tcp_packet around the state machine
// in package tcpstate: tcp_error (header, checksum, flags), then tcp_new for
// a packet without an entry, then tcp_packet.
func (t *Table) trackTCP(r *Result, p *packet.Packet, pre *tuple, now int64) {
	// tcp_error's order is header length, checksum, flags; Check does the
	// first and the last, so the checksum is checked first when the header
	// is whole and a truncated header stays "short".
	if p.TCPHdrLen >= 20 && p.L4Len >= p.TCPHdrLen && !t.checksumOK(p) {
		t.invalid(r, p, ReasonBadChecksum)
		return
	}
	if why, ok := tcpstate.Check(p); !ok {
		t.invalid(r, p, ReasonTCP)
		r.tcpReason = why
		return
	}
	var k Key
	var h uint64
	kp := &k
	if pre != nil {
		kp, h = &pre.k, pre.h
	} else {
		packetKey(&k, p)
		h = t.hash.sum(&k)
	}
	c, ok := t.lookup(kp, h, now)
	defer c.unlock()
	reopen := false
	if ok {
		if c.e.flags&(flagPickup|flagPickupOrig|flagPickupReply) == flagPickup {
			c.s.takeOver(c.e)
		}
		st := tcpstate.Status{SeenReply: c.e.seenReply(), Assured: c.e.assured()}
		var res tcpstate.Result
		tcpstate.StepInto(&res, &c.e.tcp, p, tcpstate.Dir(c.dir), st, &t.to.TCP)
		switch res.Verdict {
		case tcpstate.Invalid:
			// An out-of-window FIN or RST right after one from the
			// other side shortens an assured entry's timer, so that a
			// connection conntrack lost track of does not stay for
			// days (nf_tcp_handle_invalid).
			if d, ok := res.Shrink(time.Duration(c.e.expires - now)); ok {
				c.s.setDeadline(c.e, now+int64(d))
			}
			c.s.st.invalid.Add(1)
			r.Label, r.Reason, r.tcpReason = LabelInvalid, ReasonTCP, res.Reason
			return
		case tcpstate.Reopen:
			// A SYN on a closed connection: the old entry goes and the
			// packet is tracked as the first of a new one (the kernel
			// kills the entry and repeats the lookup, NF_REPEAT).
			c.remove()
			c.s.st.deleted.Add(1)
			reopen = true
		default: // Accept or Ignore
			c.label(r)
			r.tcpReason = res.Reason
			if res.Liberal {
				c.s.st.liberal.Add(1)
			}
			if res.SetAssured && !c.e.assured() {
				c.e.flags |= flagAssured
				r.Assured = true
			}
			if res.Verdict == tcpstate.Accept {
				c.accept(p, now, res.Timeout)
			} else {
				// IGNORE: accepted, nothing refreshed or counted, but
				// a reply still counts as seen (nf_conntrack_in sets
				// it once the handler accepts).
				c.seen()
			}
			if res.Kill {
				// E.g. an RST answering the first SYN: the packet
				// passes with its label and the entry goes at once.
				c.remove()
				c.s.st.deleted.Add(1)
			}
			return
		}
	}
	var conn tcpstate.Conn
	if why, ok := tcpstate.Start(&conn, p); !ok {
		c.s.st.invalid.Add(1)
		r.Label, r.Reason, r.tcpReason = LabelInvalid, ReasonTCP, why
		return
	}
	res := tcpstate.Step(&conn, p, tcpstate.Original, tcpstate.Status{}, &t.to.TCP)
	if res.Verdict != tcpstate.Accept && res.Verdict != tcpstate.Ignore {
		c.s.st.invalid.Add(1)
		r.Label, r.Reason, r.tcpReason = LabelInvalid, ReasonTCP, res.Reason
		return
	}
	timeout := res.Timeout
	if timeout <= 0 {
		timeout = t.to.TCP.SynSent
	}
	t.miss(r, c.s, h, now, timeout)
	r.tcpReason = res.Reason
	if res.SetAssured {
		r.flags |= flagAssured
	}
	if reopen && r.Reason == ReasonNewConn {
		r.Reason = ReasonReopen
	}
}
