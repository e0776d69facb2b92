package tcpstate

import "github.com/statewall/statewall/pkg/packet"

// Window tracking, after Guido van Rooij's "Real Stateful TCP Packet
// Filtering in IP Filter" as the kernel implements it in tcp_in_window. Per
// direction (Peer):
//
//	End    = max(seq + len)                 seen in sent packets
//	MaxEnd = max(sack + max(win, 1))        seen in the other side's packets
//	MaxWin = max(max(win, 1) + (sack - ack)) seen in sent packets
//
// and a segment must satisfy
//
//	I.   seq <= sender.MaxEnd                        (upper bound for data)
//	II.  seq + len >= sender.End - receiver.MaxWin   (lower bound for data)
//	III. sack <= receiver.End                        (upper bound for (s)ack)
//	IV.  sack >= receiver.End - MAXACKWINDOW         (lower bound for (s)ack)
//
// where sack is the highest SACK right edge, or the ack without SACK.
// Sequence numbers wrap, so every comparison goes through before/after.

// maxAckWinConst is the kernel's MAXACKWINCONST: the lowest bound IV uses.
const maxAckWinConst = 66000

// Kernel settings this package hard-codes to their defaults. They are
// constants rather than options because statewall's labels are checked
// against a kernel running with the defaults.
const (
	beLiberal        = false // nf_conntrack_tcp_be_liberal
	ignoreInvalidRst = false // nf_conntrack_tcp_ignore_invalid_rst
	maxRetrans       = 3     // nf_conntrack_tcp_max_retrans
	// nf_conntrack_tcp_loose=1 is built into Start.
)

// segmentEnd is segment_seq_plus_len: the sequence number after the
// segment, counting SYN and FIN as one each. The kernel takes the length from
// the IP header (skb->len), which is what PayloadLen holds.
func segmentEnd(p *packet.Packet) Seq {
	end := Seq(p.Seq).Add(uint32(p.PayloadLen))
	if p.TCPFlags&packet.TCPSyn != 0 {
		end++
	}
	if p.TCPFlags&packet.TCPFin != 0 {
		end++
	}
	return end
}

// maxAckWindow is MAXACKWINDOW(sender).
func maxAckWindow(sender *Peer) uint32 {
	if sender.MaxWin > maxAckWinConst {
		return sender.MaxWin
	}
	return maxAckWinConst
}

// tcpOptions is the kernel's tcp_options: it records the window scale and
// SACK-permitted options of a SYN or SYN/ACK in a peer's scale and flags.
// Like the kernel it leaves them untouched when the header carries no
// options at all, and otherwise clears every flag but PeerBeLiberal first
// (so data-unacked, close-init and max-ack-set go too). A scale above 14 is
// capped at 14 (RFC 7323).
func tcpOptions(p *packet.Packet, scale, flags *uint8) {
	if p.TCPHdrLen <= 20 {
		return
	}
	*scale = 0
	*flags &= PeerBeLiberal
	if p.TCPOpts.SACKPerm {
		*flags |= PeerSACKPerm
	}
	if p.TCPOpts.HasWScale {
		*scale = min(p.TCPOpts.WScale, 14)
		*flags |= PeerWScaleOK
	}
}

// highestSack is the kernel's tcp_sack: the highest right edge among the
// SACK blocks, if it is after ack; ack otherwise. Blocks with no right edge
// after ack (including an empty SACK option) change nothing.
func highestSack(p *packet.Packet, sack Seq) Seq {
	if p.TCPHdrLen <= 20 {
		return sack
	}
	n := min(int(p.TCPOpts.NSACK), len(p.TCPOpts.SACK))
	for i := 0; i < n; i++ {
		if r := Seq(p.TCPOpts.SACK[i].Right); r.After(sack) {
			sack = r
		}
	}
	return sack
}

// initSender is tcp_init_sender: set up the sender's window from a SYN/ACK
// in reply to a SYN, or a SYN from the reply direction (simultaneous open),
// or a SYN that reinitialises a connection in SYN_SENT/SYN_RECV.
func (c *Conn) initSender(p *packet.Packet, end Seq, win uint32, dir Dir) {
	sender := &c.Peer[dir]
	sender.End = end
	sender.MaxEnd = end
	sender.MaxWin = max(win, 1)
	tcpOptions(p, &c.Scale[dir], &c.Flags[dir])
	// RFC 7323: window scaling is on in either direction only if both
	// SYNs carried the option. The kernel decides this when the reply
	// direction's SYN (or SYN/ACK) arrives.
	if dir == Reply && !(c.Flags[dir]&PeerWScaleOK != 0 && c.Flags[dir^1]&PeerWScaleOK != 0) {
		c.Scale[dir] = 0
		c.Scale[dir^1] = 0
	}
}

// logInvalid is nf_tcp_log_invalid: with liberal window tracking (the
// sender's PeerBeLiberal, set by loose pickup, or the global sysctl) a
// window violation is accepted. The kernel then returns from tcp_in_window
// at once, so such a packet updates no window data.
func logInvalid(senderFlags uint8, v Verdict, r Reason) (Verdict, Reason) {
	if beLiberal || senderFlags&PeerBeLiberal != 0 {
		return Accept, ReasonLiberal
	}
	return v, r
}

// inWindow is the kernel's tcp_in_window. It returns Accept, Ignore (the
// kernel's NFCT_TCP_IGNORE: accept the packet, change no state, keep the
// timer) or Invalid. c.State is still the state before this packet, as in
// the kernel, where the new state is stored only after this check.
func (c *Conn) inWindow(p *packet.Packet, dir Dir, idx Index) (Verdict, Reason) {
	sender := &c.Peer[dir]
	receiver := &c.Peer[dir^1]
	flags := p.TCPFlags
	syn := flags&packet.TCPSyn != 0
	hasAck := flags&packet.TCPAck != 0
	rst := flags&packet.TCPRst != 0

	seq := Seq(p.Seq)
	ack, sack := Seq(p.Ack), Seq(p.Ack)
	winRaw := p.Window
	win := uint32(winRaw)
	end := segmentEnd(p)

	if c.Flags[dir^1]&PeerSACKPerm != 0 {
		sack = highestSack(p, sack)
	}
	// The kernel subtracts a NAT sequence offset (nf_ct_seq_offset) here;
	// statewall does no NAT, so it is always 0.

	if sender.MaxWin == 0 {
		// First packet seen from this direction.
		if syn {
			c.initSender(p, end, win, dir)
			if !hasAck {
				// Simultaneous open: a SYN from the reply direction.
				return Accept, ReasonNone
			}
		} else {
			// "We are in the middle of a connection, its history is lost
			// for us. Let's try to use the data from the packet."
			sender.End = end
			swin := win << c.Scale[dir]
			sender.MaxWin = max(swin, 1)
			sender.MaxEnd = end.Add(sender.MaxWin)
			if receiver.MaxWin == 0 {
				// Nothing seen the other way yet: let III and IV pass
				// until something is.
				receiver.End = sack
				receiver.MaxEnd = sack
			} else if sack == receiver.End.Add(1) {
				// Likely a reply to a keepalive; needed for III.
				receiver.End++
			}
		}
	} else if syn && end.After(sender.End) && (c.State == SynSent || c.State == SynRecv) {
		// RFC 793: a reinitialised TCP "must only be sure to use sequence
		// numbers larger than those recently used". Re-init this
		// direction as for the first SYN(/ACK): seq, ack or options may
		// differ.
		c.initSender(p, end, win, dir)
		if dir == Reply && !hasAck {
			return Accept, ReasonNone
		}
	}

	if !hasAck {
		// No ACK: pretend it was set and fine.
		ack = receiver.End
		sack = receiver.End
	} else if rst && ack == 0 {
		// Broken stacks set ACK on RST with a zero ack value.
		ack = receiver.End
		sack = receiver.End
	}

	if rst && seq == 0 && c.State == SynSent {
		// RST answering a SYN.
		seq = sender.End
		end = sender.End
	}

	// I. Upper bound for data.
	if !seq.Before(sender.MaxEnd.Add(1)) {
		overshot := sender.MaxEnd.Size(end) + 1
		ackOK := sack.After(receiver.End.Sub(maxAckWindow(sender) + 1))
		inRecvWin := receiver.MaxWin != 0 && end.After(sender.End.Sub(receiver.MaxWin+1))
		if inRecvWin && ackOK && overshot <= receiver.MaxWin && sack.Before(receiver.End.Add(1)) {
			// Some stacks send more than the receive window allows. If
			// only the sequence check fails, record the data anyway so
			// that the peer's ACK for it is not "over upper bound" later.
			sender.End = end
			c.Flags[dir] |= PeerDataUnacked
			return logInvalid(c.Flags[dir], Ignore, ReasonOvershoot)
		}
		return logInvalid(c.Flags[dir], Invalid, ReasonSeqBeyondWindow)
	}

	// III. Upper bound for (s)ack: no ACK for data the receiver never sent.
	if !sack.Before(receiver.End.Add(1)) {
		return logInvalid(c.Flags[dir], Invalid, ReasonAckUnsent)
	}

	// II. Lower bound for data: older than one window is a retransmission
	// of data already acknowledged; pass it, learn nothing.
	if receiver.MaxWin != 0 && !end.After(sender.End.Sub(receiver.MaxWin+1)) {
		return logInvalid(c.Flags[dir], Ignore, ReasonSeqTooOld)
	}
	// IV. Lower bound for (s)ack: a very late ACK, likewise.
	if !sack.After(receiver.End.Sub(maxAckWindow(sender) + 1)) {
		return logInvalid(c.Flags[dir], Ignore, ReasonAckTooOld)
	}

	// Window scaling (RFC 7323) never applies to SYN segments.
	if !syn {
		win <<= c.Scale[dir]
	}

	// Update the sender.
	if swin := win + ack.Size(sack); sender.MaxWin < swin {
		sender.MaxWin = swin
	}
	if end.After(sender.End) {
		sender.End = end
		c.Flags[dir] |= PeerDataUnacked
	}
	if hasAck {
		if c.Flags[dir]&PeerMaxAckSet == 0 {
			sender.MaxAck = ack
			c.Flags[dir] |= PeerMaxAckSet
		} else if ack.After(sender.MaxAck) {
			sender.MaxAck = ack
		}
	}

	// Update the receiver.
	if receiver.MaxWin != 0 && end.After(sender.MaxEnd) {
		receiver.MaxWin += sender.MaxEnd.Size(end)
	}
	if sack.Add(win).After(receiver.MaxEnd.Sub(1)) {
		receiver.MaxEnd = sack.Add(win)
		if win == 0 {
			receiver.MaxEnd++
		}
	}
	if ack == receiver.End {
		c.Flags[dir^1] &^= PeerDataUnacked
	}

	// Count retransmissions: the same ACK-index segment again and again
	// (same direction, seq, ack, end and raw window).
	if idx == IndexAck {
		if c.LastDir == dir && c.LastSeq == seq && c.LastAck == ack &&
			c.LastEnd == end && c.LastWin == winRaw {
			c.Retrans++
		} else {
			c.LastDir = dir
			c.LastSeq = seq
			c.LastAck = ack
			c.LastEnd = end
			c.LastWin = winRaw
			c.Retrans = 0
		}
	}
	return Accept, ReasonNone
}
