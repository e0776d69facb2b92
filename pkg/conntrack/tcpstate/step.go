package tcpstate

import (
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// Status is the entry status the state machine reads (the kernel's IPS_*
// bits). The caller owns it:
//
//   - SeenReply is IPS_SEEN_REPLY as it was before this packet. The kernel
//     sets it in nf_conntrack_in after the TCP code returns, for every
//     reply-direction packet that was not invalid (Accept and Ignore alike),
//     so the first reply packet is always stepped with SeenReply false.
//   - Assured is IPS_ASSURED; set it when a Result says SetAssured.
type Status struct{ SeenReply, Assured bool }

// Result is what Step makes of one packet.
type Result struct {
	Verdict Verdict
	// Reason says why for Invalid and Ignore, and names the event for Reopen
	// and Kill; ReasonNone for a plain Accept.
	Reason Reason
	// Kill: accept this packet, then delete the entry (an RST before any
	// reply was seen; the kernel's nf_ct_kill_acct).
	Kill bool
	// SetAssured: the entry becomes assured.
	SetAssured bool
	// Liberal: the packet was out of window and accepted only because the
	// sender's window is tracked liberally (PeerBeLiberal).
	Liberal bool
	// Timeout is the entry's new timeout, counted from now, when Verdict is
	// Accept. 0 leaves the timer as it is: the kernel does not refresh it
	// for a retransmitted SYN in SYN_SENT, nor for ignored packets.
	Timeout time.Duration
	// ShrinkTo is set on some Invalid results for an assured entry: a FIN
	// or RST judged out of window right after one from the other side
	// (nf_tcp_handle_invalid). The kernel then lowers the entry's timer so
	// that a connection conntrack lost track of does not linger for days;
	// see Shrink for the exact rule.
	ShrinkTo time.Duration
}

// Shrink applies ShrinkTo to an entry whose timer has remaining left, as
// nf_tcp_handle_invalid does: an entry expiring within 120 s, or sooner
// than ShrinkTo, is left alone. It reports the new remaining time and
// whether it changed.
func (r Result) Shrink(remaining time.Duration) (time.Duration, bool) {
	if r.ShrinkTo <= 0 || remaining < 120*time.Second || remaining <= r.ShrinkTo {
		return remaining, false
	}
	return r.ShrinkTo, true
}

// Start initialises c for the first packet of a new connection: the
// kernel's tcp_new, preceded by tcp_error's flag check. ok is false when the
// packet cannot create an entry (the kernel labels it invalid): bad flags, a
// lone FIN/ACK, an RST, a SYN/ACK. A SYN creates an entry on its way to
// SYN_SENT; an ACK-index packet is picked up mid-stream (nf_conntrack_tcp_loose
// = 1) with liberal window tracking and SACK assumed on both sides, because
// the window scale of the connection is unknown.
//
// Start leaves c.State at None: the caller then calls Step with Original and
// a zero Status, exactly as the kernel continues from tcp_new into the state
// machine with old state NONE. That Step gives the first packet's verdict
// and timeout (120 s for a SYN, 300 s for a pickup); if it is not Accept the
// entry must not be stored.
func Start(c *Conn, p *packet.Packet) (Reason, bool) {
	if r, ok := Check(p); !ok {
		return r, false
	}
	idx := FlagIndex(p.TCPFlags)
	next, v := Transition(Original, idx, None)
	if v != Accept {
		switch idx {
		case IndexSynAck:
			return ReasonNewSynAck, false
		case IndexFin:
			return ReasonNewFin, false
		case IndexRst:
			return ReasonNewRst, false
		}
		return ReasonNew, false
	}

	*c = Conn{}
	s := &c.Peer[Original]
	s.End = segmentEnd(p)
	s.MaxWin = max(uint32(p.Window), 1)
	if next == SynSent {
		s.MaxEnd = s.End
		tcpOptions(p, &c.Scale[Original], &c.Flags[Original])
	} else {
		// Mid-stream pickup: "its history is lost for us".
		s.MaxEnd = s.End.Add(s.MaxWin)
		c.Flags[Original] = PeerSACKPerm | PeerBeLiberal
		c.Flags[Reply] = PeerSACKPerm | PeerBeLiberal
	}
	// "tcp_packet will set them".
	c.LastIndex = IndexNone
	return ReasonNone, true
}

// Step is nf_conntrack_tcp_packet for one packet of an existing entry
// (including the first packet, right after Start). dir is the packet's
// direction relative to the entry; st the entry's status before the packet;
// t the timeouts (nil or zero fields mean the kernel defaults). Step updates
// c in place and never allocates. It runs tcp_error's header and flag check
// itself, as the kernel does, so a caller may skip Check.
//
// Verdicts: Accept (state updated; apply Timeout, SetAssured, Kill),
// Ignore (accept the packet, leave the timer), Invalid (label the packet
// invalid; see ShrinkTo), Reopen (delete the entry and track the packet as
// the first of a new one: Start, then Step with Original).
func Step(c *Conn, p *packet.Packet, dir Dir, st Status, t *Timeouts) (res Result) {
	StepInto(&res, c, p, dir, st, t)
	return res
}

// StepInto is Step storing its result in *res, for the per-packet path.
// Returned by value, a Result (six fields, more than the compiler keeps
// in registers) is assembled on the stack by byte stores and then copied
// by 16-byte loads, which the CPU cannot forward from those stores: a
// store-forwarding stall on every packet. StepInto sets the fields in
// place instead.
func StepInto(res *Result, c *Conn, p *packet.Packet, dir Dir, st Status, t *Timeouts) {
	*res = Result{}
	if r, ok := Check(p); !ok {
		res.Verdict, res.Reason = Invalid, r
		return
	}
	if t == nil {
		t = &DefaultTimeouts
	}
	if dir != Original {
		dir = Reply
	}
	if c.State >= NumStates {
		// Only a Conn corrupted from outside gets here.
		res.Verdict, res.Reason = Invalid, ReasonBadState
		return
	}
	other := dir ^ 1
	idx := FlagIndex(p.TCPFlags)
	oldState := c.State
	newState, v := Transition(dir, idx, oldState)
	seq := Seq(p.Seq)
	skipWindow := false // the kernel's "goto in_window"

	switch {
	case v == Invalid:
		// TCP_CONNTRACK_MAX. (The kernel's SYN-proxy keep-alive exception
		// does not apply: statewall has no SYN proxy.)
		res.Verdict, res.Reason = Invalid, badStateReason(idx)
		return

	case v == Ignore || (newState == SynSent && oldState >= TimeWait):
		if v == Accept {
			// A SYN in TIME_WAIT or CLOSE. RFC 1122 lets a host accept a
			// new SYN in TIME_WAIT; the kernel also handles aborted
			// connections: either side closed (sent the first FIN), or
			// the last in-window packet this way was an RST. Then the
			// entry is killed and the packet looked up again.
			if (c.Flags[dir]|c.Flags[other])&PeerCloseInit != 0 ||
				(c.LastDir == dir && c.LastIndex == IndexRst) {
				res.Verdict, res.Reason = Reopen, ReasonReopen
				return
			}
			// Otherwise the kernel falls through to the ignore case.
		}
		if idx == IndexSynAck && c.LastIndex == IndexSyn && c.LastDir != dir &&
			Seq(p.Ack) == c.LastEnd {
			// b) This SYN/ACK acknowledges a SYN we ignored earlier:
			// client and server are in sync and we are not. Get in sync
			// from the annotated SYN and carry on as SYN_SENT ->
			// SYN_RECV, through the window check.
			oldState, newState = SynSent, SynRecv
			c.resyncFromLast(dir)
			break
		}
		c.annotate(p, dir, idx, oldState)
		res.Verdict, res.Reason = Ignore, ReasonIgnored
		return

	case newState == TimeWait:
		// RFC 5961: a stack answers a spurious SYN with a challenge ACK.
		// In LAST_ACK that ACK must not be taken for the ACK of the last
		// FIN.
		if oldState == LastAck && idx == IndexAck && c.LastDir != dir &&
			c.LastIndex == IndexSyn && c.LastFlags&LastChallengeAck != 0 {
			c.LastFlags &^= LastChallengeAck
			res.Verdict, res.Reason = Ignore, ReasonChallengeAck
			return
		}

	case newState == SynSent2:
		// The table alone cannot finish a simultaneous open; remember it.
		c.LastFlags |= LastSimultaneousOpen

	case newState == SynRecv:
		if dir == Reply && idx == IndexAck && c.LastFlags&LastSimultaneousOpen != 0 {
			newState = Established
		}

	case newState == Close:
		if idx != IndexRst {
			break
		}
		if canEarlyDrop(c.State) {
			// Closing already: the tuple may have been reused and the
			// window data be stale, so the kernel skips every check.
			skipWindow = true
			break
		}
		// td_maxack may be stale if we let a SYN through just before.
		if c.Flags[other]&PeerMaxAckSet != 0 && c.LastIndex != IndexSyn {
			established := c.State == Established && st.Assured // nf_conntrack_tcp_established
			if seq == 0 && !established {
				// Most likely the answer to a SYN let through above.
				break
			}
			if seq.Before(c.Peer[other].MaxAck) && !ignoreInvalidRst {
				// Below what the peer has acknowledged: blind injection
				// or a stale RST.
				res.Verdict, res.Reason = Invalid, ReasonInvalidRst
				return
			}
			if !established || seq == c.Peer[other].MaxAck {
				break
			}
			// An RST following our own last data segment ("RST train"):
			//   foo:80 > bar:4379: P, 235946583:235946602(19) ack 42
			//   foo:80 > bar:4379: R, 235946602:235946602(0)  ack 42
			if c.LastIndex == IndexAck && c.LastDir == dir && seq == c.LastEnd {
				break
			}
			// In window but not exact: keep ESTABLISHED so the peer can
			// send a challenge ACK (RFC 5961).
			newState = oldState
		}
		if ((st.SeenReply && c.LastIndex == IndexSyn && c.LastDir != dir) ||
			(!st.Assured && c.LastIndex == IndexAck)) && Seq(p.Ack) == c.LastEnd {
			// RST answering a SYN or ACK we let through as ignored (a) or
			// (c): we hold a half-open connection. Skip the window check:
			// the RST may acknowledge segments we ignored. Only an RST
			// from the other side answers the SYN: since Linux commit
			// bed6e04be8e6 ("do not force CLOSE on invalid-seq RST
			// without direction check"; the oracle's 6.18.44 has it) an
			// RST from the SYN's own sender is window-checked like any
			// other, so a SYN and a forged RST behind it cannot close the
			// entry.
			skipWindow = true
			break
		}
		if oldState == SynSent && c.LastIndex == IndexAck && c.LastDir == Reply &&
			seq == c.LastAck {
			// Reset in answer to a challenge ACK we let through.
			skipWindow = true
		}
	}

	if !skipWindow {
		switch v, r := c.inWindow(p, dir, idx); v {
		case Accept:
			res.Liberal = r == ReasonLiberal
		case Ignore:
			res.Verdict, res.Reason = Ignore, r
			return
		case Invalid:
			res.Verdict, res.Reason, res.ShrinkTo = Invalid, r, c.handleInvalid(dir, idx, st, t)
			return
		}
	}

	// in_window: from here on the packet is in window.
	c.LastIndex = idx
	c.LastDir = dir
	c.State = newState
	if oldState != newState && newState == FinWait {
		c.Flags[dir] |= PeerCloseInit
	}

	unack, retrans := t.get(slotUnack), t.get(slotRetrans)
	timeout := t.get(newState)
	switch {
	case c.Retrans >= maxRetrans && timeout > retrans:
		timeout = retrans
	case idx == IndexRst:
		// Also for an inexact RST that leaves the state ESTABLISHED.
		timeout = t.get(Close)
	case (c.Flags[0]|c.Flags[1])&PeerDataUnacked != 0 && timeout > unack:
		timeout = unack
	case c.LastWin == 0 && timeout > retrans:
		// A zero window seen last (or none recorded yet, as for a
		// picked-up connection whose window checks are all liberal).
		timeout = retrans
	}

	res.Verdict = Accept
	if !st.SeenReply {
		if p.TCPFlags&packet.TCPRst != 0 {
			// "If only reply is a RST, we can consider ourselves not to
			// have an established connection" (either direction).
			res.Kill = true
			res.Reason = ReasonRstBeforeReply
			return
		}
		if idx == IndexSyn && oldState == SynSent {
			// A retransmitted SYN does not renew the timer, else port
			// reuse by a client or NAT could keep the entry alive forever.
			return
		}
		// Mid-stream pickup without a reply: no 5-day ESTABLISHED timer.
		if newState == Established && timeout > unack {
			timeout = unack
		}
	} else if !st.Assured && (oldState == SynRecv || oldState == Established) &&
		newState == Established {
		// A valid ACK in ESTABLISHED after SYN_RECV, or a valid answer for
		// a picked-up connection.
		res.SetAssured = true
	}
	res.Timeout = timeout
}

// canEarlyDrop is tcp_can_early_drop: the closing states.
func canEarlyDrop(s State) bool {
	switch s {
	case FinWait, LastAck, TimeWait, Close, CloseWait:
		return true
	}
	return false
}

// annotate records an ignored packet in the last_* fields (the IGNORE case
// of nf_conntrack_tcp_packet), so that the answer to it can be recognised.
func (c *Conn) annotate(p *packet.Packet, dir Dir, idx Index, oldState State) {
	c.LastIndex = idx
	c.LastDir = dir
	c.LastSeq = Seq(p.Seq)
	c.LastEnd = segmentEnd(p)
	c.LastWin = p.Window

	// a) A SYN in ORIGINAL: client and server may be in sync while we are
	// not. Keep its options; a SYN/ACK answering it resyncs us (b),
	// otherwise the server may answer with a challenge ACK.
	if idx == IndexSyn && dir == Original {
		var scale, flags uint8
		tcpOptions(p, &scale, &flags)
		c.LastFlags = 0
		c.LastWScale = 0
		if flags&PeerWScaleOK != 0 {
			c.LastFlags |= PeerWScaleOK
			c.LastWScale = scale
		}
		if flags&PeerSACKPerm != 0 {
			c.LastFlags |= PeerSACKPerm
		}
		// In LAST_ACK the challenge ACK would look like the last ACK.
		if oldState == LastAck {
			c.LastFlags |= LastChallengeAck
		}
	}

	// c) Possibly a challenge ACK answering our SYN.
	if oldState == SynSent && idx == IndexAck && dir == Reply {
		c.LastAck = Seq(p.Ack)
	}
}

// resyncFromLast rebuilds the window data from an ignored SYN annotated by
// annotate, when the SYN/ACK answering it arrives (dir is the SYN/ACK's
// direction).
func (c *Conn) resyncFromLast(dir Dir) {
	ld := c.LastDir & 1
	s := &c.Peer[ld]
	s.End = c.LastEnd
	s.MaxEnd = c.LastEnd
	s.MaxWin = max(uint32(c.LastWin), 1)
	c.Scale[ld] = c.LastWScale
	c.LastFlags &^= LastChallengeAck
	c.Flags[ld] = c.LastFlags
	// nf_ct_tcp_state_reset.
	c.Peer[dir] = Peer{}
	c.Scale[dir] = 0
	c.Flags[dir] &= PeerBeLiberal
}

// handleInvalid is nf_tcp_handle_invalid. For an assured entry, a FIN or RST
// found out of window right after a FIN or RST from the other side means
// conntrack and the endpoints disagree: return the timeout the entry should
// shrink to. Otherwise remember this FIN/RST for the next time.
func (c *Conn) handleInvalid(dir Dir, idx Index, st Status, t *Timeouts) time.Duration {
	if !st.Assured || (idx != IndexRst && idx != IndexFin) {
		return 0
	}
	if c.LastDir != dir && (c.LastIndex == IndexFin || c.LastIndex == IndexRst) {
		return t.get(slotUnack)
	}
	c.LastIndex = idx
	c.LastDir = dir
	return 0
}

// Timeout slots beyond the states, for Timeouts.get (the kernel's
// TCP_CONNTRACK_RETRANS and TCP_CONNTRACK_UNACK).
const (
	slotRetrans State = NumStates + iota
	slotUnack
)

// get returns the timeout for a state or one of the extra slots, with the
// kernel default for a zero field.
func (t *Timeouts) get(s State) time.Duration {
	var d, def time.Duration
	switch s {
	case SynSent:
		d, def = t.SynSent, DefaultTimeouts.SynSent
	case SynRecv:
		d, def = t.SynRecv, DefaultTimeouts.SynRecv
	case Established:
		d, def = t.Established, DefaultTimeouts.Established
	case FinWait:
		d, def = t.FinWait, DefaultTimeouts.FinWait
	case CloseWait:
		d, def = t.CloseWait, DefaultTimeouts.CloseWait
	case LastAck:
		d, def = t.LastAck, DefaultTimeouts.LastAck
	case TimeWait:
		d, def = t.TimeWait, DefaultTimeouts.TimeWait
	case Close:
		d, def = t.Close, DefaultTimeouts.Close
	case SynSent2:
		d, def = t.SynSent2, DefaultTimeouts.SynSent2
	case slotRetrans:
		d, def = t.MaxRetrans, DefaultTimeouts.MaxRetrans
	case slotUnack:
		d, def = t.Unacknowledged, DefaultTimeouts.Unacknowledged
	}
	if d == 0 {
		return def
	}
	return d
}
