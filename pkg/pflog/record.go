package pflog

import (
	"strconv"
	"time"
)

// Action is what the rule decided, with pf's numbering (PF_PASS, PF_DROP)
// so that tcpdump prints it.
type Action uint8

const (
	Pass  Action = 0 // PF_PASS: tcpdump prints "pass"
	Block Action = 1 // PF_DROP: tcpdump prints "block"
)

func (a Action) String() string {
	switch a {
	case Pass:
		return "pass"
	case Block:
		return "block"
	}
	return "unkn(" + strconv.Itoa(int(a)) + ")"
}

// Reason says why the packet was logged, with pf's PFRES_* numbering. A
// rule match (the only reason a "log" rule produces, antispoof rules
// included: they are ordinary block rules) is ReasonMatch. The others are
// for packets the firewall drops before any rule: codes 0 to 14 mean the
// same on every BSD and tcpdump names them all; 15 and up differ between
// the BSDs and are left out.
type Reason uint8

const (
	ReasonMatch         Reason = 0  // a rule matched
	ReasonBadOffset     Reason = 1  // bad offset (a header points outside the packet)
	ReasonFragment      Reason = 2  // dropping a fragment
	ReasonShort         Reason = 3  // truncated packet (packet.KindTruncated)
	ReasonNormalize     Reason = 4  // malformed, dropped by normalization (packet.KindMalformed)
	ReasonMemory        Reason = 5  // out of memory
	ReasonBadTimestamp  Reason = 6  // bad TCP timestamp
	ReasonCongestion    Reason = 7  // congestion
	ReasonIPOption      Reason = 8  // IP options
	ReasonProtoChecksum Reason = 9  // bad transport checksum
	ReasonStateMismatch Reason = 10 // conntrack: the packet does not fit its connection's state
	ReasonStateInsert   Reason = 11 // conntrack: the entry could not be inserted
	ReasonStateLimit    Reason = 12 // conntrack: the table is full
	ReasonSrcLimit      Reason = 13 // per-source limit
	ReasonSynproxy      Reason = 14 // synproxy
)

var reasonNames = [...]string{
	"match", "bad-offset", "fragment", "short", "normalize", "memory",
	"bad-timestamp", "congestion", "ip-option", "proto-cksum",
	"state-mismatch", "state-insert", "state-limit", "src-limit", "synproxy",
}

// String returns the reason's name as tcpdump prints it after the number:
// "match", "state-mismatch", ...
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unkn(" + strconv.Itoa(int(r)) + ")"
}

// Dir is the direction the packet was seen in, with pf's numbering
// (PF_IN, PF_OUT).
type Dir uint8

const (
	DirInOut Dir = 0 // PF_INOUT: only for rules without a direction; a packet always has one
	DirIn    Dir = 1
	DirOut   Dir = 2
)

func (d Dir) String() string {
	switch d {
	case DirInOut:
		return "in/out"
	case DirIn:
		return "in"
	case DirOut:
		return "out"
	}
	return "unkn(" + strconv.Itoa(int(d)) + ")"
}

// Ifname is an interface name as the pflog header carries it: at most 15
// bytes and a NUL. It is an array so that a Record holds it by value and
// logging copies it without allocating; the daemon makes one per interface
// with MakeIfname and keeps it.
type Ifname [16]byte

// MakeIfname returns s as an Ifname, cut to 15 bytes (Linux's IFNAMSIZ is
// 16 with the NUL too, so a real interface name always fits).
func MakeIfname(s string) Ifname {
	var n Ifname
	copy(n[:len(n)-1], s)
	return n
}

// String returns the name up to the first NUL.
func (n Ifname) String() string {
	for i, c := range n {
		if c == 0 {
			return string(n[:i])
		}
	}
	return string(n[:])
}

// NoRule is the RuleNr of a packet no rule decided (pf's "rule -1");
// tcpdump then prints no number ("rule /5(memory)").
const NoRule = ^uint32(0)

// Record is one logged packet: the decision that logged it and the
// packet's bytes from the IP header on (no link header: NFQUEUE gives
// none). The zero value is not useful; fill Action, Dir, Ifname, RuleNr and
// Packet at least.
type Record struct {
	// Time is when the packet was seen. The zero Time means "now" to
	// Logger.Log, which reads the clock itself.
	Time   time.Time
	Action Action
	Reason Reason
	Dir    Dir
	// Family is 4 or 6; 0 means "read it from the first nibble of Packet".
	Family uint8
	// RuleNr is the number of the rule that decided, as the rule listing
	// shows it; it is written as is and tcpdump prints it as "rule N/".
	RuleNr uint32
	Ifname Ifname
	// Length is the packet's length on the wire; 0 means len(Packet).
	// It matters when Packet is already cut short (a snap length).
	Length int
	// Packet is the packet from its IP header on. Logger.Log copies it (up
	// to the snap length); a record that a Reader returns aliases the
	// Reader's buffer until its next call.
	Packet []byte
}

// family returns 4, 6 or 0 (unknown).
func (r *Record) family() uint8 {
	switch r.Family {
	case 4, 6:
		return r.Family
	case 0:
		if len(r.Packet) > 0 {
			switch r.Packet[0] >> 4 {
			case 4:
				return 4
			case 6:
				return 6
			}
		}
	}
	return 0
}

// length returns the packet's length on the wire.
func (r *Record) length() int {
	return max(r.Length, len(r.Packet))
}
