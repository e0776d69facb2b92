package tcpstate

import "github.com/statewall/statewall/pkg/packet"

// Index classifies a segment by its flags for the transition table (the
// kernel's enum tcp_bit_set). The order is the kernel's: it is stored in
// Conn.LastIndex and compared with it.
type Index uint8

const (
	IndexSyn    Index = iota // SYN without ACK
	IndexSynAck              // SYN+ACK
	IndexFin                 // FIN (without SYN or RST)
	IndexAck                 // ACK (without SYN, FIN or RST)
	IndexRst                 // RST, whatever else is set
	IndexNone                // none of the above
	numIndexes
)

var indexNames = [...]string{"syn", "synack", "fin", "ack", "rst", "none"}

func (i Index) String() string {
	if int(i) < len(indexNames) {
		return indexNames[i]
	}
	return "index?"
}

// FlagIndex is the kernel's get_conntrack_index: RST wins over SYN, SYN over
// FIN, FIN over ACK. PSH, URG, ECE and CWR play no part.
func FlagIndex(flags uint8) Index {
	switch {
	case flags&packet.TCPRst != 0:
		return IndexRst
	case flags&packet.TCPSyn != 0:
		if flags&packet.TCPAck != 0 {
			return IndexSynAck
		}
		return IndexSyn
	case flags&packet.TCPFin != 0:
		return IndexFin
	case flags&packet.TCPAck != 0:
		return IndexAck
	}
	return IndexNone
}

// The table's two special results (the kernel's sIV = TCP_CONNTRACK_MAX and
// sIG = TCP_CONNTRACK_IGNORE). They never leave this file: Transition turns
// them into a Verdict.
const (
	sIV = NumStates
	sIG = NumStates + 1
)

// Short names so that the table below reads like the kernel's.
const (
	sNO = None
	sSS = SynSent
	sSR = SynRecv
	sES = Established
	sFW = FinWait
	sCW = CloseWait
	sLA = LastAck
	sTW = TimeWait
	sCL = Close
	sS2 = SynSent2
)

// conntracks is tcp_conntracks[2][6][TCP_CONNTRACK_MAX] from
// net/netfilter/nf_conntrack_proto_tcp.c as of Linux 6.12+ (the newest
// version readable here; the rows were cross-checked against several other
// 6.x copies). Read as conntracks[dir][index][current state] = next state.
// The kernel's comments under each row explain the choices; the ones that
// matter most here:
//   - ORIGINAL SYN in ESTABLISHED..LAST_ACK is ignored: the receiver will
//     answer it (challenge ACK or RST) and we learn from that answer;
//   - ORIGINAL SYN in TIME_WAIT/CLOSE reopens (RFC 1122), see Step;
//   - REPLY SYN in TIME_WAIT also reopens: "server may have switched role";
//   - REPLY SYN in SYN_SENT is a simultaneous open (SYN_SENT2);
//   - REPLY ACK in SYN_SENT is ignored: "might be a half-open connection".
var conntracks = [2][numIndexes][NumStates]State{
	{
		// ORIGINAL
		//            sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
		/* syn    */ {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		/* synack */ {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
		/* fin    */ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		/* ack    */ {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		/* rst    */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/* none   */ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	{
		// REPLY
		//            sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
		/* syn    */ {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
		/* synack */ {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		/* fin    */ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		/* ack    */ {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		/* rst    */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/* none   */ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
}

// Transition is one cell of the kernel's transition table, as a pure
// function. It returns the next state with Accept, or the current state with
// Ignore (sIG) or Invalid (sIV). It is only the table: Step adds the
// kernel's special cases (reopen, RST checks, simultaneous open, window
// tracking). Out-of-range arguments give Invalid rather than a panic.
func Transition(dir Dir, idx Index, s State) (State, Verdict) {
	if dir > Reply || idx >= numIndexes || s >= NumStates {
		return s, Invalid
	}
	switch next := conntracks[dir][idx][s]; next {
	case sIV:
		return s, Invalid
	case sIG:
		return s, Ignore
	default:
		return next, Accept
	}
}
