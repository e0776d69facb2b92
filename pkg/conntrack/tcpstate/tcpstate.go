// Package tcpstate is the kernel's TCP connection-tracking state machine
// (net/netfilter/nf_conntrack_proto_tcp.c) as pure functions: state, packet
// and direction in; new state, verdict and reason out. No locks, no clock, no
// table: the caller (package conntrack) owns the entry, holds its lock and
// passes the time. That keeps every transition testable on its own.
package tcpstate

import "time"

// State is a TCP conntrack state, in the kernel's order
// (enum tcp_conntrack).
type State uint8

const (
	None State = iota
	SynSent
	SynRecv
	Established
	FinWait
	CloseWait
	LastAck
	TimeWait
	Close
	SynSent2 // simultaneous open: both sides sent a SYN
	NumStates
)

var stateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// String returns the name conntrack -L prints.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "STATE?"
}

// Dir is the direction of a packet relative to the connection's first
// packet.
type Dir uint8

const (
	Original Dir = 0
	Reply    Dir = 1
)

// Verdict is what the state machine makes of one packet.
type Verdict uint8

const (
	// Accept: the packet fits the connection; the state was updated.
	Accept Verdict = iota
	// Ignore: the packet is accepted but changes nothing (the kernel's
	// TCP_CONNTRACK_IGNORE and "too old" segments). Its label is still the
	// connection's (established or new).
	Ignore
	// Invalid: the packet does not fit; the state is unchanged and the
	// packet's label is invalid.
	Invalid
	// Reopen: a SYN on a closed connection (TIME_WAIT, CLOSE, or after an
	// RST). The caller deletes the entry and tracks the packet again as the
	// first packet of a new connection.
	Reopen
)

var verdictNames = [...]string{"accept", "ignore", "invalid", "reopen"}

// String returns the verdict in lower case, for logs and test failures.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Timeouts are the TCP timeouts, named after the kernel's
// nf_conntrack_tcp_timeout_* sysctls. The zero value of a field means the
// kernel default (see DefaultTimeouts); Step applies that rule per field, so
// a partly filled value is fine.
type Timeouts struct {
	SynSent, SynRecv, Established, FinWait, CloseWait, LastAck, TimeWait, Close time.Duration
	MaxRetrans, Unacknowledged                                                  time.Duration
	// SynSent2 is the timeout of the simultaneous-open state. The kernel has
	// no sysctl for it (only nfnetlink_cttimeout policies set it), so it is
	// usually left zero and means 120 s.
	SynSent2 time.Duration
}

// DefaultTimeouts are the kernel's defaults.
var DefaultTimeouts = Timeouts{
	SynSent:        120 * time.Second,
	SynRecv:        60 * time.Second,
	Established:    5 * 24 * time.Hour,
	FinWait:        120 * time.Second,
	CloseWait:      60 * time.Second,
	LastAck:        30 * time.Second,
	TimeWait:       120 * time.Second,
	Close:          10 * time.Second,
	MaxRetrans:     300 * time.Second,
	Unacknowledged: 300 * time.Second,
	SynSent2:       120 * time.Second,
}

// Peer is the window-tracking state of one direction (the kernel's
// struct ip_ct_tcp_state), without its scale and flags: those live in
// Conn.Scale and Conn.Flags, so that Conn has no padding (see Conn).
type Peer struct {
	End    Seq    // td_end: highest sequence number sent + length
	MaxEnd Seq    // td_maxend: highest ack + window seen from the other side
	MaxWin uint32 // td_maxwin: largest window seen (scaled)
	MaxAck Seq    // td_maxack: highest ack sent
}

// Peer flag bits (the kernel's IP_CT_TCP_FLAG_*).
const (
	PeerWScaleOK    uint8 = 0x01
	PeerSACKPerm    uint8 = 0x02
	PeerCloseInit   uint8 = 0x04
	PeerBeLiberal   uint8 = 0x08
	PeerDataUnacked uint8 = 0x10
	PeerMaxAckSet   uint8 = 0x20
)

// Bits of Conn.LastFlags that are not Peer flags (the kernel keeps them in
// the same byte, ip_ct_tcp.last_flags). LastFlags otherwise holds the
// PeerWScaleOK and PeerSACKPerm options of a SYN that was let through while
// the entry was out of sync, so that a SYN/ACK answering it can resync.
const (
	// LastChallengeAck: a SYN was ignored in LAST_ACK, so the next ACK from
	// the other side may be an RFC 5961 challenge ACK rather than the ACK of
	// the last FIN (IP_CT_EXP_CHALLENGE_ACK).
	LastChallengeAck uint8 = 0x40
	// LastSimultaneousOpen: the entry went through SYN_SENT2
	// (IP_CT_TCP_SIMULTANEOUS_OPEN).
	LastSimultaneousOpen uint8 = 0x80
)

// Conn is the TCP part of a conntrack entry (the kernel's struct ip_ct_tcp).
// The zero value is a connection in state None; call Start before the first
// Step. A Conn is not safe for concurrent use: the caller holds the entry's
// lock around Start and Step.
//
// 56 bytes, no padding: with each peer's scale and flags inside Peer (as
// the kernel has them) it was 64, which made a conntrack entry 144 bytes,
// three cache lines; at 56 the entry is 128, two (TestConnSize).
type Conn struct {
	Peer       [2]Peer  // indexed by Dir
	Scale      [2]uint8 // td_scale of each peer: window scale shift
	Flags      [2]uint8 // td_flags of each peer: PeerWScaleOK, PeerSACKPerm, PeerCloseInit, PeerBeLiberal, PeerDataUnacked, PeerMaxAckSet
	State      State
	LastDir    Dir
	LastIndex  Index // flag index of the last in-window or ignored packet (get_conntrack_index)
	Retrans    uint8 // identical ACK-index segments seen in a row
	LastWScale uint8
	LastFlags  uint8
	LastWin    uint16 // raw (unscaled) window of the last annotated segment
	LastSeq    Seq
	LastAck    Seq
	LastEnd    Seq
}
