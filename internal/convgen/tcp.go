package convgen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// TCP flags.
const (
	fFIN = 0x01
	fSYN = 0x02
	fRST = 0x04
	fPSH = 0x08
	fACK = 0x10
	fURG = 0x20
	fECE = 0x40
	fCWR = 0x80
)

// tcpEnd is what the generator knows of one end of a TCP connection: what
// it sent and what it received in order. The model keeps the ends roughly
// honest, so that most segments sit inside the windows and the departures
// land near the edges conntrack checks.
type tcpEnd struct {
	name   string // "c" or "s", for notes
	addr   netip.Addr
	port   uint16
	isn    uint32
	nxt    uint32 // next sequence number to send
	maxEnd uint32 // highest sequence end sent
	rcv    uint32 // next sequence number expected from the peer: the ack to send
	synRcv bool   // the peer's SYN was received (rcv is meaningful)
	win    uint16 // the raw window this end advertises
	ws     int    // the window-scale option of its SYN: -1 none
	sack   bool   // it sent SACK-permitted
	ts     bool   // it sends timestamps
	tsVal  uint32
	finned bool
	segs   []tcpSentSeg // data it sent, for retransmissions
	// What it last told the peer: the peer may send up to ackSent+winSent
	// (scaled).
	ackSent, winSent uint32
	acked            bool
}

type tcpSentSeg struct {
	seq   uint32
	n     int
	flags uint8
}

// tcpSeg is one segment to build.
type tcpSeg struct {
	from     int // 0 client, 1 server
	flags    uint8
	seq, ack uint32
	win      uint16
	n        int // payload bytes
	urg      uint16
	opts     []byte
	sum      csum
	note     string
}

type tcpConv struct {
	g       *gen
	e       [2]*tcpEnd
	scaleOn bool // both SYNs carried a window-scale option
	closed  bool
	// opener is the end that sent the first SYN; est is set once it has
	// acknowledged the other side's SYN (or the connection was picked up
	// mid-stream).
	opener int
	est    bool
	// oddSyn: a SYN the kernel ignores or resyncs on was sent (see
	// GateTCPSynRST); no RST follows without the gate.
	oddSyn bool
	// cleanClose: the last close was both FINs and both ACKs.
	cleanClose bool
	notes      []string
}

func (g *gen) tcpConversation() {
	ca, sa, _ := g.addrs()
	c := &tcpConv{g: g}
	sport, dport := uint16(1024+g.n(64000)), []uint16{80, 443, 22, 25, 8080, uint16(1 + g.n(65535))}[g.n(6)]
	if g.opt.on(GateSelfReverse) && g.chance(0.04) {
		sa, dport = ca, sport
		c.notes = append(c.notes, "self-reverse tuple")
	}
	c.e[0] = &tcpEnd{name: "c", addr: ca, port: sport, ws: -1}
	c.e[1] = &tcpEnd{name: "s", addr: sa, port: dport, ws: -1}
	for _, e := range c.e {
		e.isn = g.u32()
		e.nxt, e.maxEnd = e.isn, e.isn
		e.win = c.randWin()
		e.ts = g.chance(0.4)
		e.tsVal = g.u32()
	}
	switch g.pick(55, 8, 7, 6, 10, 4, 4, 3, 3) {
	case 0:
		c.handshake()
	case 1:
		c.refused()
	case 2:
		c.unanswered()
	case 3:
		c.simultaneousOpen()
	case 4:
		c.midstream()
	case 5:
		c.splitHandshake()
	case 6:
		c.synAckFirst()
	case 7:
		c.reverseOpen()
	case 8:
		c.synWithData()
	}
	rounds := 1
	if g.chance(0.25) {
		rounds += 1 + g.n(2) // reopen after close
	}
	for round := 0; round < rounds; round++ {
		if round > 0 {
			// A SYN on the same ports after a close the kernel may not
			// have seen (a refusal it took for invalid, a RST, FINs
			// without their ACKs) is a SYN it ignores or resyncs on.
			if !c.cleanClose && !g.opt.on(GateTCPSynRST) {
				break
			}
			c.reopen()
		}
		steps := g.n(30)
		for i := 0; i < steps && !c.closed; i++ {
			c.step()
		}
		if !c.closed {
			c.close()
		}
		// Late packets after the close.
		for range g.n(4) {
			c.late()
		}
	}
}

// randWin returns a window as stacks advertise them, sometimes small or 0.
func (c *tcpConv) randWin() uint16 {
	switch c.g.pick(60, 15, 10, 10, 5) {
	case 0:
		return uint16(8192 + c.g.n(57344))
	case 1:
		return 65535
	case 2:
		return uint16(1 + c.g.n(2048))
	case 3:
		return uint16(c.g.n(512))
	}
	return 0
}

// scale returns the shift applied to non-SYN windows end e sends, as the
// kernel does: only when both SYNs carried the option, capped at 14.
func (c *tcpConv) scale(e *tcpEnd) uint {
	if !c.scaleOn || e.ws < 0 {
		return 0
	}
	return uint(min(e.ws, 14))
}

// peerEdge is the sequence number just past what end from may send: what
// the peer last acknowledged plus its window.
func (c *tcpConv) peerEdge(from int) uint32 {
	p := c.e[1-from]
	if !p.acked {
		return c.e[from].nxt + 65535
	}
	return p.ackSent + p.winSent<<c.scale(p)
}

// build returns the bytes of segment s.
func (c *tcpConv) build(s tcpSeg) []byte {
	from, to := c.e[s.from], c.e[1-s.from]
	hlen := 20 + (len(s.opts)+3)&^3
	l4 := make([]byte, hlen+s.n)
	binary.BigEndian.PutUint16(l4[0:], from.port)
	binary.BigEndian.PutUint16(l4[2:], to.port)
	binary.BigEndian.PutUint32(l4[4:], s.seq)
	binary.BigEndian.PutUint32(l4[8:], s.ack)
	l4[12] = byte(hlen/4) << 4
	l4[13] = s.flags
	binary.BigEndian.PutUint16(l4[14:], s.win)
	binary.BigEndian.PutUint16(l4[18:], s.urg)
	copy(l4[20:], s.opts)
	fill(c.g, l4[hlen:])
	setL4Sum(l4, 16, len(l4), true, from.addr, to.addr, protoTCP, s.sum, false)
	return l4
}

// emit builds and sends one segment.
func (c *tcpConv) emit(s tcpSeg) []byte {
	g := c.g
	from, to := c.e[s.from], c.e[1-s.from]
	l4 := c.build(s)
	if s.flags&fACK != 0 && s.flags&fRST == 0 {
		from.ackSent, from.winSent, from.acked = s.ack, uint32(s.win), true
	}
	note := fmt.Sprintf("tcp %s>%s %s seq=%s ack=%s win=%d len=%d", from.name, to.name, flagString(s.flags),
		c.rel(s.seq, from), c.rel(s.ack, to), s.win, s.n)
	if len(s.opts) > 0 {
		note += " opts=" + describeOpts(s.opts)
	}
	if s.note != "" {
		note += " [" + s.note + "]"
	}
	note += csumNote(s.sum)
	return g.send(g.ip(from.addr, to.addr), protoTCP, l4, note)
}

// rel writes a sequence number relative to the ISN of the end that owns the
// sequence space, as tcpdump does.
func (c *tcpConv) rel(v uint32, owner *tcpEnd) string {
	d := int32(v - owner.isn)
	if d > -1<<20 && d < 1<<24 {
		return fmt.Sprintf("%s%+d", owner.name, d)
	}
	return fmt.Sprint(v)
}

// fill fills b with random bytes.
func fill(g *gen, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := g.r.Uint64()
		for j := i; j < min(i+8, len(b)); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}

// seg returns an ordinary segment from end i: its next sequence number, the
// ack of what it received, its window, its timestamp.
func (c *tcpConv) seg(i int, flags uint8, n int) tcpSeg {
	e := c.e[i]
	s := tcpSeg{from: i, flags: flags, seq: e.nxt, win: e.win, n: n}
	if flags&fACK != 0 {
		s.ack = e.rcv
	}
	if e.ts && c.e[1-i].ts && flags&fSYN == 0 {
		s.opts = c.tsOpt(e)
	}
	return s
}

// tsOpt is NOP NOP TIMESTAMP.
func (c *tcpConv) tsOpt(e *tcpEnd) []byte {
	e.tsVal += uint32(1 + c.g.n(100))
	o := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(o[4:], e.tsVal)
	binary.BigEndian.PutUint32(o[8:], c.e[1].tsVal^c.e[0].tsVal)
	return o
}

// sent records that end i sent s and the peer took what was in order.
func (c *tcpConv) sent(s tcpSeg) {
	e, p := c.e[s.from], c.e[1-s.from]
	if s.flags&fSYN != 0 && s.flags&fACK == 0 && !c.est && !e.synRcv && !p.synRcv {
		c.opener = s.from
	}
	if s.from == c.opener && s.flags&(fSYN|fACK|fRST) == fACK && e.synRcv && !c.oddSyn {
		c.est = true
	}
	l := uint32(s.n)
	if s.flags&fSYN != 0 {
		l++
	}
	if s.flags&fFIN != 0 {
		l++
		e.finned = true
	}
	end := s.seq + l
	if s.seq == e.nxt {
		e.nxt = end
	}
	if int32(end-e.maxEnd) > 0 {
		e.maxEnd = end
	}
	if s.n > 0 {
		e.segs = append(e.segs, tcpSentSeg{s.seq, s.n, s.flags})
	}
	if s.flags&fSYN != 0 {
		p.rcv, p.synRcv = end, true
	} else if p.synRcv && s.seq == p.rcv {
		p.rcv = end
	}
}

// synOpts returns SYN options: MSS, SACK-permitted, timestamps, a window
// scale from 0 to 14 or beyond, sometimes a malformed one.
func (c *tcpConv) synOpts(e *tcpEnd) []byte {
	g := c.g
	var o []byte
	if g.chance(0.8) {
		o = append(o, 2, 4, byte(0x05), byte(0xb4-g.n(100)))
	}
	if g.chance(0.6) {
		o = append(o, 4, 2)
		e.sack = true
	}
	if e.ts {
		o = append(o, 8, 10)
		o = binary.BigEndian.AppendUint32(o, e.tsVal)
		o = binary.BigEndian.AppendUint32(o, 0)
	}
	switch g.pick(30, 55, 8, 4, 3) {
	case 1:
		e.ws = g.n(15)
		o = append(o, 1, 3, 3, byte(e.ws))
	case 2:
		e.ws = []int{15, 16, 20, 255}[g.n(4)]
		o = append(o, 1, 3, 3, byte(e.ws))
	case 3:
		// A window-scale option of the wrong length: not a window scale
		// to the kernel.
		o = append(o, 3, 4, byte(g.n(15)), 0)
	case 4:
		// End of options before the window scale.
		o = append(o, 0, 3, 3, byte(g.n(15)))
	}
	if len(o) > 40 {
		o = o[:40]
	}
	return o
}

// syn sends a SYN (or SYN+ACK when ack) from end i with fresh options.
func (c *tcpConv) syn(i int, ack bool, note string) tcpSeg {
	e := c.e[i]
	flags := uint8(fSYN)
	if ack {
		flags |= fACK
	}
	if c.g.chance(0.1) {
		flags |= fECE | fCWR
		if ack {
			flags &^= fCWR
		}
	}
	s := tcpSeg{from: i, flags: flags, seq: e.isn, win: e.win, note: note}
	if ack {
		s.ack = e.rcv
	}
	s.opts = c.synOpts(e)
	c.scaleOn = c.e[0].ws >= 0 && c.e[1].ws >= 0
	return s
}

func (c *tcpConv) handshake() {
	g := c.g
	s := c.syn(0, false, "")
	c.emit(s)
	c.sent(s)
	for range g.pick(80, 15, 5) {
		// Retransmitted SYNs, sometimes with another ISN or options.
		r := s
		r.note = "SYN retransmitted"
		if g.chance(0.2) && g.opt.on(GateTCPSynRST) {
			r.seq = g.u32()
			r.note = "SYN again with another ISN"
		}
		c.emit(r)
	}
	sa := c.syn(1, true, "")
	if g.chance(0.08) {
		sa.ack += uint32(1 + g.n(1000))
		sa.note = "SYN+ACK acking the wrong number"
		c.oddSyn = true
	}
	c.emit(sa)
	c.sent(sa)
	if g.chance(0.1) {
		c.emit(sa) // retransmitted SYN+ACK
	}
	if g.chance(0.9) {
		a := c.seg(0, fACK, 0)
		c.emit(a)
		c.sent(a)
	}
}

func (c *tcpConv) refused() {
	s := c.syn(0, false, "")
	c.emit(s)
	c.sent(s)
	r := tcpSeg{from: 1, flags: fRST | fACK, seq: 0, ack: s.seq + 1, note: "connection refused"}
	if c.g.chance(0.2) {
		r.ack += uint32(1 + c.g.n(100))
		r.note = "RST+ACK acking the wrong number"
	}
	c.emit(r)
	c.closed = true
	if c.g.chance(0.5) && (r.ack == s.seq+1 || c.g.opt.on(GateTCPSynRST)) {
		c.reopen()
	}
}

func (c *tcpConv) unanswered() {
	s := c.syn(0, false, "")
	for range 1 + c.g.n(4) {
		c.emit(s)
	}
	c.sent(s)
	if c.g.chance(0.5) {
		c.closed = true
	}
}

func (c *tcpConv) simultaneousOpen() {
	a := c.syn(0, false, "simultaneous open")
	c.emit(a)
	b := c.syn(1, false, "simultaneous open")
	c.emit(b)
	c.sent(a)
	c.sent(b)
	sa := c.syn(1, true, "")
	c.emit(sa)
	sb := c.syn(0, true, "")
	c.emit(sb)
	if c.g.chance(0.7) {
		x := c.seg(0, fACK, 0)
		c.emit(x)
		c.sent(x)
	}
}

func (c *tcpConv) splitHandshake() {
	a := c.syn(0, false, "")
	c.emit(a)
	c.sent(a)
	b := c.syn(1, false, "split handshake: SYN without ACK")
	c.emit(b)
	c.sent(b)
	sa := c.syn(0, true, "")
	c.emit(sa)
	x := c.seg(1, fACK, 0)
	c.emit(x)
	c.sent(x)
}

func (c *tcpConv) synAckFirst() {
	c.e[0].rcv, c.e[0].synRcv = c.g.u32(), true
	sa := c.syn(1, true, "SYN+ACK with no SYN")
	sa.ack = c.g.u32()
	c.oddSyn = true
	c.emit(sa)
	c.midstream()
}

func (c *tcpConv) reverseOpen() {
	// The server's side opens: the roles swap.
	c.e[0], c.e[1] = c.e[1], c.e[0]
	c.handshake()
}

func (c *tcpConv) synWithData() {
	s := c.syn(0, false, "SYN with data")
	s.n = 1 + c.g.n(200)
	c.emit(s)
	c.sent(s)
	sa := c.syn(1, true, "")
	if c.g.chance(0.5) {
		sa.ack = c.e[0].isn + 1 // data not acknowledged
	}
	c.emit(sa)
	c.sent(sa)
	a := c.seg(0, fACK, 0)
	c.emit(a)
	c.sent(a)
}

// midstream starts with segments of a connection whose handshake was not
// seen.
func (c *tcpConv) midstream() {
	g := c.g
	for _, e := range c.e {
		e.ws, e.sack = -1, false
	}
	c.scaleOn = false
	c.e[0].rcv, c.e[1].rcv = c.e[1].nxt, c.e[0].nxt
	c.e[0].synRcv, c.e[1].synRcv = true, true
	c.est = true
	first := g.n(2)
	flags := []uint8{fACK, fACK | fPSH, fACK | fFIN, fRST, fACK | fURG}[g.pick(60, 25, 5, 5, 5)]
	n := 0
	if flags&fPSH != 0 {
		n = 1 + g.n(1000)
	}
	s := c.seg(first, flags, n)
	s.note = "mid-stream pickup"
	c.emit(s)
	c.sent(s)
}

// reopen starts the connection again on the same ports: a new SYN, and
// mostly a new handshake.
func (c *tcpConv) reopen() {
	g := c.g
	c.closed = false
	i := 0
	if g.chance(0.2) {
		i = 1
	}
	for _, e := range c.e {
		switch g.pick(50, 30, 20) {
		case 0:
			e.isn = g.u32()
		case 1:
			e.isn = e.maxEnd + uint32(1+g.n(100000)) // above the old sequence space
		case 2:
			e.isn = e.maxEnd - uint32(1+g.n(100000)) // below it
		}
		e.nxt, e.maxEnd, e.finned, e.segs, e.acked, e.synRcv = e.isn, e.isn, false, nil, false, false
		e.ws, e.sack = -1, false
	}
	c.est, c.oddSyn = false, false
	s := c.syn(i, false, "reopen")
	c.emit(s)
	c.sent(s)
	if g.chance(0.85) {
		sa := c.syn(1-i, true, "")
		c.emit(sa)
		c.sent(sa)
		a := c.seg(i, fACK, 0)
		c.emit(a)
		c.sent(a)
	}
}

// step sends one segment of the data phase: mostly data and acks, else one
// of the departures from the protocol.
func (c *tcpConv) step() {
	g := c.g
	i := g.n(2)
	e, p := c.e[i], c.e[1-i]
	switch g.pick(34, 10, 6, 5, 2, 2, 3, 2, 3, 4, 2, 1, 3, 2, 1, 4, 1, 2, 2, 2, 2, 2) {
	case 0: // data in the window
		n := c.room(i, 1+g.n(1460))
		if n == 0 {
			c.ack(i, "")
			return
		}
		s := c.seg(i, fACK|fPSH*uint8(g.n(2)), n)
		c.emit(s)
		c.sent(s)
	case 1:
		c.ack(i, "")
	case 2: // retransmission
		if len(e.segs) == 0 {
			c.ack(i, "")
			return
		}
		old := e.segs[g.n(len(e.segs))]
		s := c.seg(i, fACK|old.flags&(fPSH|fFIN), old.n)
		s.seq, s.note = old.seq, "retransmission"
		if g.chance(0.3) {
			s.n = max(1, old.n/2)
			s.note = "partial retransmission"
		}
		c.emit(s)
	case 3: // at and around the window's right edge
		edge := c.peerEdge(i)
		n := 1 + g.n(100)
		d := []int32{-1, 0, 1, 2, 100}[g.n(5)]
		s := c.seg(i, fACK, n)
		if g.chance(0.5) {
			s.seq = edge - uint32(n) + uint32(d) // the end at edge+d
			s.note = fmt.Sprintf("data ending at the window edge %+d", d)
		} else {
			s.seq = edge + uint32(d)
			s.note = fmt.Sprintf("data starting at the window edge %+d", d)
		}
		c.emit(s)
		c.sent(s)
	case 4: // far beyond the window
		s := c.seg(i, fACK, 1+g.n(500))
		s.seq += uint32(1<<20 + g.n(1<<30))
		s.note = "data far beyond the window"
		c.emit(s)
	case 5: // far behind: older than any window
		s := c.seg(i, fACK, 1+g.n(500))
		s.seq -= uint32(200000 + g.n(1<<30))
		s.note = "old data, far behind"
		c.emit(s)
	case 6: // acking data never sent
		s := c.seg(i, fACK, g.n(2)*g.n(100))
		k := []uint32{1, 2, uint32(1 + g.n(1000)), uint32(70000 + g.n(1<<20))}[g.n(4)]
		s.ack = p.maxEnd + k
		s.note = fmt.Sprintf("acks %d bytes never sent", k)
		c.emit(s)
	case 7: // acking old data
		s := c.seg(i, fACK, 0)
		s.ack = p.nxt - uint32([]int{1, 1000, 70000, 200000 + g.n(1<<20)}[g.n(4)])
		s.note = "acks old data"
		c.emit(s)
	case 8: // odd flags
		flags := uint8(g.u32())
		if g.chance(0.5) {
			flags = []uint8{0, fFIN, fFIN | fPSH | fURG, fSYN | fFIN, fSYN | fRST, fFIN | fRST, fSYN | fURG, fACK | fURG, fFIN | fACK | fURG, fPSH, fECE | fCWR | fACK, fRST | fACK | fPSH, fSYN | fACK | fFIN}[g.n(13)]
		}
		if !g.opt.on(GateTCPSynRST) {
			// Not the RSTs and SYNs of the gate.
			if !c.est && i == c.opener {
				flags &^= fRST | fSYN
			}
			if c.oddSyn {
				flags &^= fRST
			}
		}
		if m := flags &^ (fECE | fCWR | fPSH); m == fSYN || m == fSYN|fURG || m == fSYN|fACK {
			c.oddSyn = true
		}
		s := c.seg(i, flags, g.n(2)*g.n(200))
		s.ack = e.rcv
		if flags&fURG != 0 {
			s.urg = uint16(g.n(100))
		}
		s.note = "odd flags"
		c.emit(s)
		if flags&(fSYN|fRST|fFIN) == 0 {
			c.sent(s)
		}
	case 9:
		c.rst(i)
	case 10: // SYN in the open connection
		if !c.est && i == c.opener && !g.opt.on(GateTCPSynRST) {
			c.ack(i, "")
			return
		}
		s := c.seg(i, fSYN, 0)
		if g.chance(0.5) {
			s.seq = g.u32()
		}
		s.opts = c.synOpts(&tcpEnd{ws: -1})
		if g.chance(0.3) {
			s.flags |= fACK
			s.ack = e.rcv
		}
		s.note = "SYN in an open connection"
		c.oddSyn = true
		c.emit(s)
	case 11: // SYN+ACK in the open connection, as a retransmission
		s := c.seg(i, fSYN|fACK, 0)
		s.seq = e.isn
		s.note = "SYN+ACK again"
		c.oddSyn = true
		c.emit(s)
	case 12: // keepalive
		s := c.seg(i, fACK, g.n(2))
		s.seq = e.nxt - 1
		s.note = "keepalive"
		c.emit(s)
	case 13: // zero window
		e.win = 0
		c.ack(i, "zero window")
	case 14: // window probe
		s := c.seg(i, fACK, 1)
		s.note = "window probe"
		c.emit(s)
	case 15: // SACK
		c.sackAck(i)
	case 16: // urgent data
		n := c.room(i, 1+g.n(100))
		s := c.seg(i, fACK|fURG|fPSH, n)
		s.urg = uint16(n)
		c.emit(s)
		c.sent(s)
	case 17: // the window changes
		e.win = c.randWin()
		c.ack(i, "window update")
	case 18: // an exact duplicate of the last packet
		if n := len(g.pkts); n > 0 {
			last := g.pkts[n-1]
			g.emit(append([]byte(nil), last.Data...), last.Note+" [duplicate]")
		}
	case 19: // a bad checksum
		n := c.room(i, 1+g.n(500))
		s := c.seg(i, fACK|fPSH, n)
		s.sum = csumBad
		c.emit(s)
	case 21: // a broken header: data offset below 5 or past the end, or cut short
		s := c.seg(i, fACK, g.n(40))
		b := c.build(s)
		var note string
		switch g.n(3) {
		case 0:
			b[12] = byte(g.n(5)) << 4
			note = "data offset below 5"
		case 1:
			b[12] = byte(6+g.n(10)) << 4
			b = b[:min(len(b), 20+g.n(4))]
			note = "data offset past the segment"
		case 2:
			b = b[:g.n(20)]
			note = "header cut short"
		}
		if len(b) >= 18 {
			setL4Sum(b, 16, len(b), true, e.addr, p.addr, protoTCP, csumGood, false)
		}
		g.send(g.ip(e.addr, p.addr), protoTCP, b, fmt.Sprintf("tcp %s>%s broken header: %s, %d bytes", e.name, p.name, note, len(b)))
	case 20: // data with FIN: the close starts
		n := c.room(i, g.n(200))
		s := c.seg(i, fACK|fFIN|fPSH*uint8(min(n, 1)), n)
		c.emit(s)
		c.sent(s)
	}
}

// room returns min(want, the space left in the peer's window), 0 if none.
func (c *tcpConv) room(i int, want int) int {
	left := int32(c.peerEdge(i) - c.e[i].nxt)
	if left <= 0 {
		return 0
	}
	return min(want, int(left))
}

func (c *tcpConv) ack(i int, note string) {
	s := c.seg(i, fACK, 0)
	s.note = note
	c.emit(s)
	c.sent(s)
}

// sackAck sends an ACK with SACK blocks: over data the peer sent, beyond
// it, below the ack; with GateMultiSACK sometimes two SACK options.
func (c *tcpConv) sackAck(i int) {
	g := c.g
	e, p := c.e[i], c.e[1-i]
	s := c.seg(i, fACK, 0)
	block := func() []byte {
		var l, r uint32
		switch g.pick(50, 20, 15, 15) {
		case 0: // inside what the peer sent
			span := max(1, int(p.maxEnd-e.rcv))
			l = e.rcv + uint32(g.n(span))
			r = l + uint32(1+g.n(span))
		case 1: // the right edge beyond what the peer sent
			l = p.maxEnd - uint32(g.n(100))
			r = p.maxEnd + uint32([]int{1, 2, 1000, 1 << 20}[g.n(4)])
		case 2: // below the ack (D-SACK)
			r = e.rcv - uint32(g.n(1000))
			l = r - uint32(1+g.n(1000))
		case 3:
			l, r = g.u32(), g.u32()
		}
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, l), r)
	}
	sackOpt := func(n int) []byte {
		o := []byte{5, byte(2 + 8*n)}
		for range n {
			o = append(o, block()...)
		}
		return o
	}
	opts := []byte{1, 1}
	if len(s.opts) > 0 {
		opts = append(s.opts, 1, 1) // timestamps first
	}
	room := (40 - len(opts) - 2) / 8
	if room < 1 {
		return
	}
	n := 1 + g.n(min(room, 4))
	opts = append(opts, sackOpt(n)...)
	s.note = fmt.Sprintf("SACK, %d blocks", n)
	if g.opt.on(GateMultiSACK) && g.chance(0.3) && 40-len(opts) >= 10 {
		opts = append(opts, sackOpt(1)...)
		s.note = "two SACK options"
	} else if g.chance(0.1) {
		// A SACK option whose length is no whole number of blocks.
		opts = append(opts, 5, 6, 0, 0, 0, 0)
		s.note += ", then a malformed SACK option"
	}
	if len(opts) > 40 {
		opts = opts[:40]
	}
	s.opts = opts
	c.emit(s)
	c.sent(s)
}

// rst sends a RST: exact, inside the window, outside, below the peer's
// ack; with ACK or without; sometimes with data.
func (c *tcpConv) rst(i int) {
	g := c.g
	e := c.e[i]
	flags := uint8(fRST)
	if g.chance(0.6) {
		flags |= fACK
	}
	if (c.oddSyn || !c.est && i == c.opener) && !g.opt.on(GateTCPSynRST) {
		c.ack(i, "")
		return
	}
	s := c.seg(i, flags, 0)
	s.ack = e.rcv
	if flags&fACK == 0 && g.chance(0.5) {
		s.ack = 0
	}
	where := g.pick(35, 10, 15, 10, 10, 10, 5, 5)
	switch where {
	case 0:
		s.note = "RST at the exact sequence number"
	case 1:
		s.seq = c.e[1-i].ackSent
		s.note = "RST at the peer's last ack"
	case 2:
		s.seq += uint32(1 + g.n(max(1, int(c.peerEdge(i)-e.nxt))))
		s.note = "RST inside the window, not exact"
	case 3:
		s.seq = c.peerEdge(i) + uint32(g.n(3))
		s.note = "RST at or just past the window edge"
	case 4:
		s.seq += uint32(1<<20 + g.n(1<<30))
		s.note = "RST outside the window"
	case 5:
		s.seq -= uint32(1 + g.n(5000))
		s.note = "RST below the peer's ack"
	case 6:
		s.seq = 0
		s.note = "RST with sequence number 0"
	case 7:
		s.n = 1 + g.n(100)
		s.note = "RST with data"
	}
	c.emit(s)
	if where == 0 && g.chance(0.7) || g.chance(0.2) {
		c.closed = true
	}
}

// close ends the connection: FINs one after the other or crossing, or a
// RST, or nothing.
func (c *tcpConv) close() {
	g := c.g
	i := g.n(2)
	fin := func(j int) {
		if c.e[j].finned && g.chance(0.7) {
			return
		}
		s := c.seg(j, fACK|fFIN, 0)
		c.emit(s)
		c.sent(s)
	}
	c.cleanClose = false
	switch g.pick(50, 15, 15, 10, 10) {
	case 0: // one side, then the other
		fin(i)
		acked := g.chance(0.8)
		if acked {
			c.ack(1-i, "")
		}
		fin(1 - i)
		if g.chance(0.9) {
			c.ack(i, "")
			c.cleanClose = acked
		}
	case 1: // crossing FINs
		a, b := c.seg(i, fACK|fFIN, 0), c.seg(1-i, fACK|fFIN, 0)
		c.emit(a)
		c.emit(b)
		c.sent(a)
		c.sent(b)
		c.ack(i, "")
		c.ack(1-i, "")
		c.cleanClose = true
	case 2: // FIN, then a RST from the other side
		fin(i)
		c.rst(1 - i)
	case 3:
		c.rst(i)
	case 4: // FIN with the last ACK lost
		fin(i)
		fin(1 - i)
	}
	c.closed = true
}

// late sends a packet after the close: a retransmitted FIN, a late ACK,
// data, a SYN.
func (c *tcpConv) late() {
	g := c.g
	i := g.n(2)
	switch g.pick(30, 30, 20, 20) {
	case 0:
		s := c.seg(i, fACK|fFIN, 0)
		s.seq, s.note = c.e[i].nxt-1, "FIN retransmitted"
		c.emit(s)
	case 1:
		c.ack(i, "late ACK")
	case 2:
		s := c.seg(i, fACK|fPSH, 1+g.n(100))
		s.note = "data after the close"
		c.emit(s)
	case 3:
		c.step()
	}
}

// flagString writes flags as tcpdump's letters.
func flagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{fFIN, 'F'}, {fSYN, 'S'}, {fRST, 'R'}, {fPSH, 'P'}, {fACK, 'A'}, {fURG, 'U'}, {fECE, 'E'}, {fCWR, 'W'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// describeOpts writes TCP options briefly: "mss,sackOK,ts,ws7,sack2".
func describeOpts(o []byte) string {
	var parts []string
	for i := 0; i < len(o); {
		switch k := o[i]; k {
		case 0:
			parts = append(parts, "eol")
			i = len(o)
			continue
		case 1:
			i++
			continue
		default:
			if i+1 >= len(o) || o[i+1] < 2 {
				parts = append(parts, fmt.Sprintf("bad%d", k))
				i = len(o)
				continue
			}
			l := int(o[i+1])
			switch {
			case k == 2:
				parts = append(parts, "mss")
			case k == 3 && l == 3 && i+2 < len(o):
				parts = append(parts, fmt.Sprintf("ws%d", o[i+2]))
			case k == 3:
				parts = append(parts, fmt.Sprintf("ws-len%d", l))
			case k == 4:
				parts = append(parts, "sackOK")
			case k == 5:
				parts = append(parts, fmt.Sprintf("sack(len%d)", l))
			case k == 8:
				parts = append(parts, "ts")
			default:
				parts = append(parts, fmt.Sprintf("opt%d", k))
			}
			i += l
		}
	}
	return strings.Join(parts, ",")
}
