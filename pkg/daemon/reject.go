package daemon

import (
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/reject"
	"github.com/statewall/statewall/pkg/rules"
)

// Answers to blocked packets (`block return`, return-rst, return-icmp,
// return-icmp6): the daemon drops the packet and sends, through raw
// sockets in its namespace, the RST or ICMP unreachable pf would, routed
// back the way the packet came. The answers carry replyMark, which the
// divert rules let pass undiverted (nfq.DivertConfig.SkipMark): otherwise
// the daemon would be handed its own answers at the output hook.

// replyMark is the SO_MARK of the daemon's answers.
const replyMark = 0x53570000

// replyOf is the answer a return rule gives.
func replyOf(r *rules.Rule) reject.Reply {
	rep := reject.Reply{
		ICMP:  reject.Code(4<<8 | uint16(r.ICMPCode4)),
		ICMP6: reject.Code(6<<8 | uint16(r.ICMPCode6)),
	}
	switch r.Return {
	case rules.Returned:
		rep.Kind = reject.Return
	case rules.ReturnRST:
		rep.Kind = reject.ReturnRST
	case rules.ReturnICMP, rules.ReturnICMP6:
		rep.Kind = reject.ReturnICMP
	}
	return rep
}

// reply sends the answer dec's rule gives pk, if any. It runs on the
// packet's queue goroutine and allocates nothing: the answer is built in
// the worker's buffer, and Send drops it rather than wait.
func (d *Daemon) reply(w *worker, dec *engine.Decision, pk *packet.Packet, p *nfq.Packet) {
	r := dec.Rule
	if r == nil || r.Return == rules.ReturnNone || d.rej == nil {
		return
	}
	if r.Return == rules.ReturnICMP6 && pk.IPVersion != 6 {
		return // pf's return-icmp6 answers IPv6 only
	}
	b, ok := replyOf(r).AppendPacket(w.reply[:0], pk)
	if !ok {
		return
	}
	d.rej.SendIf(b, p.InDev)
}
