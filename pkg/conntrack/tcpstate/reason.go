package tcpstate

import "github.com/statewall/statewall/pkg/packet"

// Reason says why a packet is invalid or ignored, and for Reopen and Kill
// results what happened; ReasonNone otherwise. Each reason corresponds to one
// place in nf_conntrack_proto_tcp.c that logs through
// nf_ct_l4proto_log_invalid / tcp_error_log; the comment names the kernel's
// message. The flag reasons split the kernel's single "invalid tcp flag
// combination" by scan type, because that is what a firewall report wants to
// show; every one of them is that kernel message.
type Reason uint8

const (
	ReasonNone Reason = iota

	// tcp_error.
	ReasonTruncated   // "truncated packet": data offset < 20 or beyond the segment
	ReasonFlagsNull   // no flags at all (NULL scan)
	ReasonFlagsSynFin // SYN+FIN
	ReasonFlagsSynRst // SYN+RST
	ReasonFlagsFinRst // FIN+RST
	ReasonFlagsXmas   // FIN+PSH+URG without ACK (Xmas scan)
	ReasonFlagsFinNoAck
	ReasonFlags // any other combination outside tcp_valid_flags

	// tcp_new: "invalid new".
	ReasonNewSynAck // SYN/ACK with no entry
	ReasonNewFin    // FIN with no entry
	ReasonNewRst    // RST with no entry
	ReasonNew       // anything else that cannot open an entry

	// nf_conntrack_tcp_packet, transition table sIV:
	// "packet (index %d) in dir %d invalid, state %s".
	ReasonBadSyn
	ReasonBadSynAck
	ReasonBadFin
	ReasonBadAck
	ReasonBadRst
	ReasonBadState // flag index none, or a corrupt Conn

	// nf_conntrack_tcp_packet, ignored packets.
	ReasonIgnored      // sIG: "packet (index %d) in dir %d ignored, state %s"
	ReasonChallengeAck // "challenge-ack ignored" (RFC 5961 ACK in LAST_ACK)

	// nf_conntrack_tcp_packet, RST checks: "invalid rst".
	ReasonInvalidRst

	// tcp_in_window.
	ReasonSeqBeyondWindow // "SEQ is over upper bound %u (over the window of the receiver)"
	ReasonAckUnsent       // "ACK is over upper bound %u (ACKed data not seen yet)"
	ReasonSeqTooOld       // "SEQ is under lower bound %u (already ACKed data retransmitted)"
	ReasonAckTooOld       // "ignored ACK under lower bound %u (possible overly delayed)"
	ReasonOvershoot       // "%u bytes more than expected"

	// Not invalid: why the entry goes away.
	ReasonReopen         // SYN on a closed or aborted connection (Verdict Reopen)
	ReasonRstBeforeReply // RST before any reply was seen (Result.Kill)

	// Not invalid: accepted although out of window, because the sender's
	// window is tracked liberally (PeerBeLiberal: a mid-stream pickup, or
	// an entry restored from a state file). Only inWindow returns it;
	// Step reports it as Result.Liberal.
	ReasonLiberal

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:            "",
	ReasonTruncated:       "bad TCP header",
	ReasonFlagsNull:       "invalid flags: NULL",
	ReasonFlagsSynFin:     "invalid flags: SYN+FIN",
	ReasonFlagsSynRst:     "invalid flags: SYN+RST",
	ReasonFlagsFinRst:     "invalid flags: FIN+RST",
	ReasonFlagsXmas:       "invalid flags: Xmas",
	ReasonFlagsFinNoAck:   "invalid flags: FIN without ACK",
	ReasonFlags:           "invalid flags",
	ReasonNewSynAck:       "SYN/ACK without SYN",
	ReasonNewFin:          "no conntrack for FIN",
	ReasonNewRst:          "no conntrack for RST",
	ReasonNew:             "invalid new",
	ReasonBadSyn:          "SYN invalid in state",
	ReasonBadSynAck:       "SYN/ACK invalid in state",
	ReasonBadFin:          "FIN invalid in state",
	ReasonBadAck:          "ACK invalid in state",
	ReasonBadRst:          "RST invalid in state",
	ReasonBadState:        "invalid in state",
	ReasonIgnored:         "ignored in state",
	ReasonChallengeAck:    "challenge ACK ignored",
	ReasonInvalidRst:      "invalid RST",
	ReasonSeqBeyondWindow: "SEQ beyond window",
	ReasonAckUnsent:       "ACK for unsent data",
	ReasonSeqTooOld:       "too old",
	ReasonAckTooOld:       "ACK too old",
	ReasonOvershoot:       "bytes beyond window",
	ReasonReopen:          "SYN reopens closed connection",
	ReasonRstBeforeReply:  "RST before reply",
	ReasonLiberal:         "out of window, accepted by liberal tracking",
}

// String returns short human text, "" for ReasonNone.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason?"
}

// validFlags is the kernel's tcp_valid_flags: the combinations of FIN, SYN,
// RST, ACK and URG that tcp_error accepts once PSH, ECE and CWR are masked.
var validFlags = func() (v [64]bool) {
	const (
		fin, syn, rst, ack, urg = packet.TCPFin, packet.TCPSyn, packet.TCPRst, packet.TCPAck, packet.TCPUrg
	)
	for _, f := range []uint8{
		syn, syn | urg, syn | ack,
		rst, rst | ack,
		fin | ack, fin | ack | urg,
		ack, ack | urg,
	} {
		v[f] = true
	}
	return v
}()

// Check is tcp_error's header and flag part; the caller checks the checksum
// (the kernel does that in between, in the same function). It reports
// (ReasonNone, true) for a packet conntrack may look at, and the reason
// otherwise. It never allocates.
func Check(p *packet.Packet) (Reason, bool) {
	// "Not whole TCP header or malformed packet": the data offset must cover
	// the fixed header and fit in the segment. L4Len 0 means the caller built
	// the packet by hand without it; PayloadLen then stands in for it.
	if p.TCPHdrLen < 20 || p.TCPHdrLen > 60 || p.PayloadLen < 0 ||
		(p.L4Len != 0 && p.L4Len < p.TCPHdrLen) {
		return ReasonTruncated, false
	}
	// With ECE, CWR and PSH masked the remaining bits are below 64.
	if validFlags[p.TCPFlags&^(packet.TCPEce|packet.TCPCwr|packet.TCPPsh)] {
		return ReasonNone, true
	}
	return flagReason(p.TCPFlags), false
}

// flagReason names an invalid flag combination after the scan that sends it.
func flagReason(flags uint8) Reason {
	const (
		fin, syn, rst, psh, ack, urg = packet.TCPFin, packet.TCPSyn, packet.TCPRst, packet.TCPPsh, packet.TCPAck, packet.TCPUrg
	)
	f := flags &^ (packet.TCPEce | packet.TCPCwr)
	switch {
	case f&^psh == 0:
		return ReasonFlagsNull
	case f&(syn|fin) == syn|fin:
		return ReasonFlagsSynFin
	case f&(syn|rst) == syn|rst:
		return ReasonFlagsSynRst
	case f&(fin|rst) == fin|rst:
		return ReasonFlagsFinRst
	case f&(fin|psh|urg) == fin|psh|urg && f&ack == 0:
		return ReasonFlagsXmas
	case f&fin != 0 && f&ack == 0:
		return ReasonFlagsFinNoAck
	}
	return ReasonFlags
}

// badStateReason is the reason for a table sIV result.
func badStateReason(idx Index) Reason {
	switch idx {
	case IndexSyn:
		return ReasonBadSyn
	case IndexSynAck:
		return ReasonBadSynAck
	case IndexFin:
		return ReasonBadFin
	case IndexAck:
		return ReasonBadAck
	case IndexRst:
		return ReasonBadRst
	}
	return ReasonBadState
}
