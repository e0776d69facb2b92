package tcpstate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// Test vocabulary: segments are built with seg("SA", seq, ack, win, opts...)
// in tcpdump's flag letters, and sequences of them run through sim, which
// plays the part of the conntrack table: it creates the entry with Start +
// Step, keeps the Status bits the way nf_conntrack_in does, deletes the
// entry on Kill and re-tracks the packet on Reopen.

const (
	sec  = time.Second
	days = 24 * time.Hour
)

// segOpt modifies a segment under construction.
type segOpt func(p *packet.Packet, optBytes *int)

// seg builds a decoded TCP segment. flags are tcpdump's letters: S A F R P
// U E W (ECE) C (CWR).
func seg(flags string, seq, ack uint32, win uint16, opts ...segOpt) *packet.Packet {
	p := &packet.Packet{
		Kind:      packet.KindOK,
		IPVersion: 4,
		Proto:     packet.ProtoTCP,
		Seq:       seq,
		Ack:       ack,
		Window:    win,
	}
	for _, c := range flags {
		switch c {
		case 'S':
			p.TCPFlags |= packet.TCPSyn
		case 'A', '.':
			p.TCPFlags |= packet.TCPAck
		case 'F':
			p.TCPFlags |= packet.TCPFin
		case 'R':
			p.TCPFlags |= packet.TCPRst
		case 'P':
			p.TCPFlags |= packet.TCPPsh
		case 'U':
			p.TCPFlags |= packet.TCPUrg
		case 'E':
			p.TCPFlags |= packet.TCPEce
		case 'W', 'C':
			p.TCPFlags |= packet.TCPCwr
		default:
			panic(fmt.Sprintf("seg: unknown flag %q", c))
		}
	}
	optBytes := 0
	for _, o := range opts {
		o(p, &optBytes)
	}
	p.TCPHdrLen = 20 + (optBytes+3)&^3
	p.L4Len = p.TCPHdrLen + p.PayloadLen
	return p
}

// data gives the segment n bytes of payload.
func data(n int) segOpt { return func(p *packet.Packet, _ *int) { p.PayloadLen = n } }

// wscale adds the window-scale option.
func wscale(shift uint8) segOpt {
	return func(p *packet.Packet, b *int) {
		p.TCPOpts.HasWScale, p.TCPOpts.WScale = true, shift
		*b += 3
	}
}

// sackOK adds the SACK-permitted option.
func sackOK() segOpt {
	return func(p *packet.Packet, b *int) { p.TCPOpts.SACKPerm = true; *b += 2 }
}

// ts adds a timestamp option (it only makes the header longer, as on the
// wire; conntrack ignores timestamps).
func ts() segOpt {
	return func(p *packet.Packet, b *int) { p.TCPOpts.HasTS = true; *b += 10 }
}

// sack adds a SACK option with the given [left, right) pairs.
func sack(edges ...uint32) segOpt {
	return func(p *packet.Packet, b *int) {
		for i := 0; i+1 < len(edges) && p.TCPOpts.NSACK < 4; i += 2 {
			p.TCPOpts.SACK[p.TCPOpts.NSACK] = packet.SACKBlock{Left: edges[i], Right: edges[i+1]}
			p.TCPOpts.NSACK++
		}
		*b += 2 + 8*int(p.TCPOpts.NSACK)
	}
}

// side is an endpoint: who sent a segment on the wire. The entry's
// direction follows from which side created it.
type side uint8

const (
	cli side = 0
	srv side = 1
)

func (s side) String() string { return [...]string{"cli", "srv"}[s&1] }

// sim is a one-entry conntrack table.
type sim struct {
	has    bool
	origin side // the side whose packet created the entry
	c      Conn
	st     Status
	to     Timeouts
	// last is the Result every packet of the entry is stepped into
	// (StepInto), left from the packet before, as conntrack's hot path
	// may reuse one: a field StepInto failed to reset would show up in
	// the scenarios.
	last Result
}

// outcome is what the table makes of one packet.
type outcome struct {
	res    Result
	label  string // nftables ct state: new, established, invalid
	reopen bool   // the packet reopened the entry (its res is the new entry's)
	gone   bool   // no entry afterwards
	state  State  // the entry's state afterwards, when there is one
}

func (s *sim) send(from side, p *packet.Packet) outcome {
	if !s.has {
		return s.create(from, p)
	}
	dir := Original
	if from != s.origin {
		dir = Reply
	}
	label := "established"
	if dir == Original && !s.st.SeenReply {
		label = "new"
	}
	StepInto(&s.last, &s.c, p, dir, s.st, &s.to)
	r := s.last
	switch r.Verdict {
	case Reopen:
		// nf_ct_kill, then NF_REPEAT: the packet is looked up again and
		// creates a fresh entry.
		s.has = false
		o := s.create(from, p)
		o.reopen = true
		return o
	case Invalid:
		return outcome{res: r, label: "invalid", state: s.c.State}
	}
	if r.Kill {
		s.has = false
		return outcome{res: r, label: label, gone: true}
	}
	// nf_conntrack_in sets IPS_SEEN_REPLY after the TCP code accepted (or
	// ignored) a reply-direction packet.
	if dir == Reply {
		s.st.SeenReply = true
	}
	if r.SetAssured {
		s.st.Assured = true
	}
	return outcome{res: r, label: label, state: s.c.State}
}

func (s *sim) create(from side, p *packet.Packet) outcome {
	var c Conn
	if reason, ok := Start(&c, p); !ok {
		return outcome{res: Result{Verdict: Invalid, Reason: reason}, label: "invalid", gone: true}
	}
	r := Step(&c, p, Original, Status{}, &s.to)
	if r.Verdict != Accept || r.Kill {
		// Not stored: the kernel drops an unconfirmed entry whose first
		// packet is invalid. (The first packet is always accepted by the
		// current code; the tests below check that.)
		return outcome{res: r, label: "invalid", gone: true}
	}
	s.has, s.origin, s.c, s.st = true, from, c, Status{}
	return outcome{res: r, label: "new", state: c.State}
}

// row is one segment of a scenario and what must come of it.
type row struct {
	from    side
	p       *packet.Packet
	v       Verdict
	state   State         // after the packet (unchecked when gone)
	timeout time.Duration // Result.Timeout; 0 = timer untouched
	reason  Reason
	label   string // "" = unchecked
	assured bool   // Result.SetAssured
	kill    bool
	reopen  bool
	gone    bool // no entry afterwards (kill, or no entry created)
}

// run plays rows through s and reports every mismatch.
func run(t *testing.T, s *sim, rows []row) {
	t.Helper()
	for i, r := range rows {
		o := s.send(r.from, r.p)
		var errs []string
		check := func(what string, got, want any) {
			if got != want {
				errs = append(errs, fmt.Sprintf("%s = %v, want %v", what, got, want))
			}
		}
		check("verdict", o.res.Verdict, r.v)
		check("reason", o.res.Reason, r.reason)
		check("timeout", o.res.Timeout, r.timeout)
		check("SetAssured", o.res.SetAssured, r.assured)
		check("Kill", o.res.Kill, r.kill)
		check("reopened", o.reopen, r.reopen)
		check("gone", o.gone, r.gone || r.kill)
		if !o.gone {
			check("state", o.state, r.state)
		}
		if r.label != "" {
			check("label", o.label, r.label)
		}
		if len(errs) > 0 {
			t.Errorf("row %d (%v %s seq=%d ack=%d): %s", i+1, r.from,
				packet.TCPFlagsString(r.p.TCPFlags), r.p.Seq, r.p.Ack, strings.Join(errs, "; "))
		}
	}
}

// handshake is a plain three-way handshake, client ISN 1000, server ISN
// 5000, windows 8192, no options. After it: client End 1001, server End
// 5001, ESTABLISHED, assured.
func handshake() []row {
	return []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		{from: srv, p: seg("SA", 5000, 1001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
		{from: cli, p: seg("A", 1001, 5001, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true, label: "established"},
	}
}

// cat joins row lists.
func cat(parts ...[]row) []row {
	var out []row
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
