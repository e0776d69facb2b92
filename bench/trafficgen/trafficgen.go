// Package trafficgen generates synthetic IP traffic for benchmarks and
// tests: whole sessions over many concurrent flows, deterministic from a
// seed, written as raw IP packets (decode them with packet.LinkIP) with
// correct checksums.
//
// A session is what a host stack sends:
//
//   - TCP: the handshake with Linux's SYN options (MSS, SACK permitted,
//     timestamps, window scale 7), then requests and responses whose
//     sequence and acknowledgement numbers advance with the data, full-size
//     response segments acknowledged every second segment, windows that
//     grow as the session goes on, and the FIN/FIN/ACK teardown;
//   - UDP: request and response pairs (one for DNS on port 53, several for
//     a QUIC-like flow on 443);
//   - ICMP and ICMPv6: echo request and reply pairs with one identifier.
//
// The generator keeps Config.Flows sessions live at once, one per slot,
// and emits one packet per slot round robin; when a slot's session ends
// the next one starts on it, with a new client port. So the stream always
// has Flows connections in progress, and at 1M flows holds only 32 bytes
// of state per flow: packets are produced on demand, into the caller's
// buffer, never stored (Fill lays a chunk of them out in one arena for a
// measured loop).
//
// The clock is virtual: every packet advances it by Round/Flows, so a slot
// sends one packet per Round (10 s by default) whatever the number of
// flows. Conntrack timeouts (30 s for UDP and ICMP at least) are never hit
// by a live session; ended ones linger in a connection table for their
// closing timeouts (TIME_WAIT 120 s, 12 rounds) as they would on a host.
//
// Optional attack packets (Attacks) are mixed in at a fixed rate: ACK and
// FIN scans, out-of-window segments injected into live TCP sessions, and a
// SYN flood from spoofed sources. Every packet carries its Role, which says
// what a kernel-like connection tracker must label it.
//
// Addresses stay inside the project's test ranges, 198.18.0.0/15 (RFC
// 2544's benchmarking range) and fd00:198:18::/64: see Clients4 and the
// other prefixes.
package trafficgen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// MaxLen is the longest packet the generator writes (an Ethernet MTU):
// buffers passed to Next must be at least this long.
const MaxLen = 1500

// The address plan. Every address the generator writes is in one of these
// prefixes, all inside 198.18.0.0/15 and fd00:198:18::/64.
var (
	// Clients: slot i's client is 198.18.0.0 + i%65536, or
	// fd00:198:18:0:c:: + i. Above 65,536 flows IPv4 slots share addresses
	// and are told apart by disjoint client port ranges.
	Clients4 = netip.MustParsePrefix("198.18.0.0/16")
	Clients6 = netip.MustParsePrefix("fd00:198:18:0:c::/80")
	// Servers: 16 of each family, 198.19.0.1-16 and fd00:198:18::5:1-16.
	// TCP goes to ports 443 and 80, UDP to 53 and 443.
	Servers4 = netip.MustParsePrefix("198.19.0.0/24")
	Servers6 = netip.MustParsePrefix("fd00:198:18::5:0/112")
	// Attackers: scanners (198.19.255.0/24, fd00:198:18:0:f:ffff::/96) and
	// spoofed SYN flood sources (the rest of these prefixes).
	Attackers4 = netip.MustParsePrefix("198.19.128.0/17")
	Attackers6 = netip.MustParsePrefix("fd00:198:18:0:f::/80")
)

// numServers is the number of servers of each family.
const numServers = 16

// Mix sets the kinds of sessions. The zero Mix means DefaultMix; a Mix with
// any field set is used as it is (so IPv6 0 then means IPv4 only).
type Mix struct {
	// TCP, UDP, ICMP are the relative weights of sessions of each
	// protocol. TCP sessions are much longer, so they carry most packets.
	TCP, UDP, ICMP int
	// IPv6 is the percentage of sessions (and attack packets) over IPv6.
	IPv6 int
}

// DefaultMix is 70% TCP sessions, 20% UDP, 10% ICMP echo; a quarter over
// IPv6. About 90% of the packets are then TCP.
var DefaultMix = Mix{TCP: 70, UDP: 20, ICMP: 10, IPv6: 25}

// Attacks sets the attack packets mixed into the stream, each in packets
// per thousand packets emitted. The zero value means none.
type Attacks struct {
	// ACKScan: a bare ACK to a random low port of a server from a scanner
	// (nmap -sA). Conntrack picks it up mid-stream: new.
	ACKScan int
	// FINScan: a FIN without ACK to a random low port (nmap -sF): invalid
	// flags, invalid.
	FINScan int
	// OutOfWindow: a data segment injected into a live TCP session, with a
	// sequence number 2^30 beyond what the receiver's window allows:
	// invalid, and the session it aims at carries on unharmed.
	OutOfWindow int
	// SYNFlood: a SYN without options from a random spoofed source to a
	// server's port 80 or 443 (hping3 -S --flood --rand-source): new, and
	// a new entry that nothing answers.
	SYNFlood int
}

func (a Attacks) total() int { return a.ACKScan + a.FINScan + a.OutOfWindow + a.SYNFlood }

// Config configures a Generator. The zero value means 1,000 flows of
// DefaultMix, seed 0, no attacks.
type Config struct {
	// Seed makes the stream: the same Config gives the same bytes.
	Seed uint64
	// Flows is the number of concurrent sessions (slots); 0 means 1000. At
	// most MaxFlows.
	Flows int
	Mix   Mix
	// Attacks mixed in; zero means clean traffic.
	Attacks Attacks
	// Round is the virtual time in which every slot sends one packet; 0
	// means 10 s. It must be well under 30 s (the shortest timeout of a
	// live UDP or ICMP flow) for sessions to stay tracked.
	Round time.Duration
	// Start is the virtual clock's first value in nanoseconds since the
	// Unix epoch; 0 means 2025-01-01T00:00:00Z.
	Start int64
}

// MaxFlows is the largest Config.Flows: above it the IPv4 client port
// ranges that tell slots sharing an address apart would get too small.
const MaxFlows = 1 << 22

// DefaultStart is the virtual clock's start when Config.Start is 0.
var DefaultStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// Role says what a packet is, and so what conntrack must label it.
type Role uint8

const (
	// Open is the first packet of a session (TCP SYN, first UDP request,
	// first echo request): new.
	Open Role = iota
	// Flow is every later packet of a session, either direction: established.
	Flow
	// ACKScan, FINScan, OutOfWindow and SYNFlood are attack packets (see
	// Attacks): new, invalid, invalid and new.
	ACKScan
	FINScan
	OutOfWindow
	SYNFlood
	numRoles
)

var roleNames = [numRoles]string{"open", "flow", "ack-scan", "fin-scan", "out-of-window", "syn-flood"}

func (r Role) String() string {
	if r < numRoles {
		return roleNames[r]
	}
	return "role?"
}

// Expect is the conntrack label (nftables ct state) a packet of this role
// must get through a stateful engine that passes new connections: "new",
// "established" or "invalid".
func (r Role) Expect() string {
	switch r {
	case Flow:
		return "established"
	case FINScan, OutOfWindow:
		return "invalid"
	}
	return "new"
}

// Packet is one generated packet.
type Packet struct {
	Data []byte // raw IP (IPv4 or IPv6 by the first nibble); aliases the buffer given to Next
	Time int64  // virtual clock, ns since the Unix epoch
	Role Role
}

// Session kinds (flow.kind): the protocol, plus kindV6.
const (
	kindTCP uint8 = iota
	kindUDP
	kindICMP
	kindV6 uint8 = 0x80
)

// flow is one slot's session in progress: 32 bytes, so 1M flows take 32 MB.
// Addresses and the client port are computed from the slot number and gen,
// not stored.
type flow struct {
	cseq, sseq uint32 // next sequence number of client and server (ICMP: cseq is the echo sequence)
	cts, sts   uint32 // last TCP timestamp value each side sent
	gen        uint16 // sessions started on this slot: picks the client port
	sport      uint16 // server port
	cwin, swin uint16 // TCP window fields (scaled by 2^7)
	kind       uint8
	st         uint8 // step of the session (st* constants)
	server     uint8 // server index
	left       uint8 // exchanges left
	segs       uint8 // TCP response segments left in this exchange
	unacked    uint8 // TCP response segments the client has not acknowledged
	opened     bool  // the session's first packet was sent
	_          uint8
}

// Session steps.
const (
	stSyn uint8 = iota
	stSynAck
	stAck
	stReq
	stResp
	stCAck
	stFin1
	stFin2
	stFin3
	stUReq // UDP and ICMP: request
	stUResp
)

// Generator produces the packet stream. It is not safe for concurrent use.
type Generator struct {
	cfg   Config
	mix   Mix
	rng   rand.PCG
	flows []flow
	slot  int   // next slot to send
	now   int64 // virtual clock of the next packet
	step  int64 // ns per packet
	// IPv4 client ports: slot i uses portsPer ports from 1024 +
	// (i/65536)*portsPer, so slots that share an address never share a
	// port.
	portsPer uint32
	ipid     uint16
	// pattern is the payload source: a packet's payload is a slice of it
	// at an offset taken from its sequence number.
	pattern [4096]byte
}

// New returns a generator for cfg.
func New(cfg Config) (*Generator, error) {
	if cfg.Flows == 0 {
		cfg.Flows = 1000
	}
	if cfg.Flows < 0 || cfg.Flows > MaxFlows {
		return nil, fmt.Errorf("trafficgen: %d flows: want 1 to %d", cfg.Flows, MaxFlows)
	}
	if cfg.Round == 0 {
		cfg.Round = 10 * time.Second
	}
	if cfg.Round < 0 {
		return nil, errors.New("trafficgen: negative Round")
	}
	if cfg.Start == 0 {
		cfg.Start = DefaultStart
	}
	mix := cfg.Mix
	if mix == (Mix{}) {
		mix = DefaultMix
	}
	if mix.TCP < 0 || mix.UDP < 0 || mix.ICMP < 0 || mix.TCP+mix.UDP+mix.ICMP == 0 || mix.IPv6 < 0 || mix.IPv6 > 100 {
		return nil, fmt.Errorf("trafficgen: bad mix %+v: weights must be non-negative, not all 0, IPv6 a percentage", mix)
	}
	a := cfg.Attacks
	if a.ACKScan < 0 || a.FINScan < 0 || a.OutOfWindow < 0 || a.SYNFlood < 0 || a.total() > 1000 {
		return nil, fmt.Errorf("trafficgen: bad attacks %+v: want per-thousand rates adding up to at most 1000", a)
	}
	g := &Generator{
		cfg:   cfg,
		mix:   mix,
		flows: make([]flow, cfg.Flows),
		now:   cfg.Start,
		step:  max(int64(cfg.Round)/int64(cfg.Flows), 1),
	}
	g.rng.Seed(cfg.Seed, 0x7472616666696367) // "trafficg"
	regions := uint32((cfg.Flows + 65535) / 65536)
	g.portsPer = (65536 - 1024) / regions
	for i := range g.pattern {
		g.pattern[i] = byte(g.rng.Uint64())
	}
	for i := range g.flows {
		f := &g.flows[i]
		f.gen = uint16(g.rng.Uint64())
		g.begin(f, true)
	}
	return g, nil
}

// Flows returns the number of concurrent flows.
func (g *Generator) Flows() int { return len(g.flows) }

// Now returns the virtual time of the next packet.
func (g *Generator) Now() int64 { return g.now }

// Step returns how far the clock advances per packet, in nanoseconds.
func (g *Generator) Step() int64 { return g.step }

// rnd returns a pseudo-random number in [0, n).
func (g *Generator) rnd(n uint32) uint32 {
	return uint32((g.rng.Uint64() >> 32) * uint64(n) >> 32)
}

// begin starts a new session on f. The first sessions of a generator get a
// random share of their exchanges, so that the slots' sessions end at
// different times and the stream reaches its steady mix of new and
// established packets sooner.
func (g *Generator) begin(f *flow, first bool) {
	f.gen++
	m := &g.mix
	k := g.rnd(uint32(m.TCP + m.UDP + m.ICMP))
	var kind uint8
	switch {
	case k < uint32(m.TCP):
		kind = kindTCP
	case k < uint32(m.TCP+m.UDP):
		kind = kindUDP
	default:
		kind = kindICMP
	}
	if g.rnd(100) < uint32(m.IPv6) {
		kind |= kindV6
	}
	f.kind = kind
	f.server = uint8(g.rnd(numServers))
	f.opened = false
	f.segs, f.unacked = 0, 0
	switch kind &^ kindV6 {
	case kindTCP:
		f.st = stSyn
		f.sport = 443
		if g.rnd(10) < 3 {
			f.sport = 80
		}
		f.left = uint8(1 + g.rnd(8))
		f.cseq, f.sseq = uint32(g.rng.Uint64()), uint32(g.rng.Uint64())
		f.cts, f.sts = 0, 0
		f.cwin, f.swin = 501, 509
	case kindUDP:
		f.st = stUReq
		if g.rnd(10) < 6 {
			f.sport, f.left = 53, 1
		} else {
			f.sport, f.left = 443, uint8(2+g.rnd(9))
		}
	default:
		f.st = stUReq
		f.sport = 0
		f.left = uint8(1 + g.rnd(4))
		f.cseq = 1
	}
	if first {
		f.left = uint8(1 + g.rnd(uint32(f.left)))
	}
}

// clientPort is the client port (ICMP: the echo identifier) of slot's
// current session.
func (g *Generator) clientPort(slot int, f *flow) uint16 {
	region := uint32(slot >> 16)
	return uint16(1024 + region*g.portsPer + uint32(f.gen)%g.portsPer)
}

// Next writes the next packet into buf, which must hold MaxLen bytes, and
// returns it. It does not allocate.
func (g *Generator) Next(buf []byte) Packet {
	buf = buf[:MaxLen]
	t := g.now
	g.now += g.step
	g.ipid++
	if tot := g.cfg.Attacks.total(); tot > 0 {
		if r := g.rnd(1000); r < uint32(tot) {
			n, role := g.attack(buf, r, t)
			return Packet{Data: buf[:n], Time: t, Role: role}
		}
	}
	slot := g.slot
	if g.slot++; g.slot == len(g.flows) {
		g.slot = 0
	}
	f := &g.flows[slot]
	var n int
	if f.kind&^kindV6 == kindTCP {
		n = g.tcpStep(buf, slot, f, t)
	} else {
		n = g.exchangeStep(buf, slot, f, t)
	}
	role := Flow
	if !f.opened {
		role = Open
		f.opened = true
	}
	if f.st == stDone {
		g.begin(f, false)
	}
	return Packet{Data: buf[:n], Time: t, Role: role}
}

// stDone marks a session whose last packet was just written.
const stDone uint8 = 0xff

// TCP constants: the window scale both sides announce, the SYN windows
// (Linux's), and the scaled windows' ceiling (4000 << 7, 512 kB) and growth
// per exchange: windows open up as a session goes on, as Linux's receive
// buffer autotuning makes them.
const (
	wscale    = 7
	synWinC   = 64240
	synWinS   = 65160
	maxWin    = 4000
	winGrowth = 48
)

// tcpStep writes the next packet of f's TCP session.
func (g *Generator) tcpStep(buf []byte, slot int, f *flow, t int64) int {
	v6 := f.kind&kindV6 != 0
	mss := uint16(1448) // 1500 - 20 - 20 - 12 (timestamps)
	if v6 {
		mss = 1428
	}
	cport := g.clientPort(slot, f)
	c := seg{v6: v6, fromClient: true, slot: slot, server: f.server, sport: cport, dport: f.sport}
	s := seg{v6: v6, slot: slot, server: f.server, sport: f.sport, dport: cport}
	ms := uint32(t / 1e6)
	ctsNow := ms + uint32(slot)*2654435761 + uint32(f.gen)*40503
	stsNow := ms + uint32(f.server)*97 + 12345
	var n int
	switch f.st {
	case stSyn:
		c.flags, c.seq, c.win, c.syn, c.mss = tcpSyn, f.cseq, synWinC, true, mss+12
		c.tsval = ctsNow
		n = g.writeTCP(buf, &c)
		f.cts = ctsNow
		f.cseq++
		f.st = stSynAck
	case stSynAck:
		s.flags, s.seq, s.ack, s.win, s.syn, s.mss = tcpSyn|tcpAck, f.sseq, f.cseq, synWinS, true, mss+12
		s.tsval, s.tsecr = stsNow, f.cts
		n = g.writeTCP(buf, &s)
		f.sts = stsNow
		f.sseq++
		f.st = stAck
	case stAck, stCAck:
		c.flags, c.seq, c.ack, c.win = tcpAck, f.cseq, f.sseq, f.cwin
		c.tsval, c.tsecr = ctsNow, f.sts
		n = g.writeTCP(buf, &c)
		f.cts = ctsNow
		f.unacked = 0
		if f.st == stAck {
			f.st = stReq
		} else {
			f.st = stResp
		}
	case stReq:
		c.flags, c.seq, c.ack, c.win = tcpPsh|tcpAck, f.cseq, f.sseq, f.cwin
		c.tsval, c.tsecr = ctsNow, f.sts
		c.payload = int(64 + g.rnd(600))
		n = g.writeTCP(buf, &c)
		f.cts = ctsNow
		f.cseq += uint32(c.payload)
		f.segs = uint8(1 + g.rnd(4))
		f.unacked = 0
		f.st = stResp
	case stResp:
		s.flags, s.seq, s.ack, s.win = tcpAck, f.sseq, f.cseq, f.swin
		s.tsval, s.tsecr = stsNow, f.cts
		s.payload = int(mss)
		if f.segs == 1 {
			s.flags |= tcpPsh
			s.payload = int(1 + g.rnd(uint32(mss)))
		}
		n = g.writeTCP(buf, &s)
		f.sts = stsNow
		f.sseq += uint32(s.payload)
		f.segs--
		f.unacked++
		switch {
		case f.segs == 0:
			// The client acknowledges the response with its next
			// request, or its FIN.
			f.left--
			f.cwin = min(f.cwin+winGrowth, maxWin)
			f.swin = min(f.swin+winGrowth/4, maxWin)
			if f.left == 0 {
				f.st = stFin1
			} else {
				f.st = stReq
			}
		case f.unacked == 2:
			f.st = stCAck // delayed ACK: every second full segment
		}
	case stFin1:
		c.flags, c.seq, c.ack, c.win = tcpFin|tcpAck, f.cseq, f.sseq, f.cwin
		c.tsval, c.tsecr = ctsNow, f.sts
		n = g.writeTCP(buf, &c)
		f.cts = ctsNow
		f.cseq++
		f.st = stFin2
	case stFin2:
		s.flags, s.seq, s.ack, s.win = tcpFin|tcpAck, f.sseq, f.cseq, f.swin
		s.tsval, s.tsecr = stsNow, f.cts
		n = g.writeTCP(buf, &s)
		f.sts = stsNow
		f.sseq++
		f.st = stFin3
	case stFin3:
		c.flags, c.seq, c.ack, c.win = tcpAck, f.cseq, f.sseq, f.cwin
		c.tsval, c.tsecr = ctsNow, f.sts
		n = g.writeTCP(buf, &c)
		f.st = stDone
	}
	return n
}

// exchangeStep writes the next packet of f's UDP or ICMP session: requests
// and responses in turn.
func (g *Generator) exchangeStep(buf []byte, slot int, f *flow, t int64) int {
	v6 := f.kind&kindV6 != 0
	cport := g.clientPort(slot, f)
	fromClient := f.st == stUReq
	e := seg{v6: v6, fromClient: fromClient, slot: slot, server: f.server, sport: cport, dport: f.sport}
	if !fromClient {
		e.sport, e.dport = f.sport, cport
	}
	var n int
	if f.kind&^kindV6 == kindUDP {
		switch {
		case f.sport == 53 && fromClient:
			e.payload = int(28 + g.rnd(40))
		case f.sport == 53:
			e.payload = int(60 + g.rnd(400))
		case fromClient:
			e.payload = int(40 + g.rnd(1200))
		default:
			e.payload = int(40 + g.rnd(1200))
		}
		e.seq = uint32(t) // payload offset only
		n = g.writeUDP(buf, &e)
	} else {
		e.seq = f.cseq // echo sequence
		n = g.writeEcho(buf, &e, cport, !fromClient)
	}
	if fromClient {
		f.st = stUResp
	} else {
		f.cseq++
		if f.left--; f.left == 0 {
			f.st = stDone
		} else {
			f.st = stUReq
		}
	}
	return n
}

// attack writes an attack packet; r in [0, Attacks.total()) picks which.
func (g *Generator) attack(buf []byte, r uint32, t int64) (int, Role) {
	a := &g.cfg.Attacks
	v6 := g.rnd(100) < uint32(g.mix.IPv6)
	e := seg{v6: v6, attacker: true, server: uint8(g.rnd(numServers))}
	switch {
	case r < uint32(a.ACKScan):
		e.scanner, e.sport, e.dport = uint32(g.rnd(254)), uint16(1024+g.rnd(64512)), uint16(1+g.rnd(1023))
		e.flags, e.seq, e.ack, e.win = tcpAck, uint32(g.rng.Uint64()), uint32(g.rng.Uint64()), 1024
		return g.writeTCP(buf, &e), ACKScan
	case r < uint32(a.ACKScan+a.FINScan):
		return g.finScan(buf, &e), FINScan
	case r < uint32(a.ACKScan+a.FINScan+a.OutOfWindow):
		// Aim at a TCP session in its data phase, looking at a few slots
		// from a random one; a FIN scan when none is there.
		start := int(g.rnd(uint32(len(g.flows))))
		for i := range min(64, len(g.flows)) {
			slot := (start + i) % len(g.flows)
			f := &g.flows[slot]
			if f.kind&^kindV6 != kindTCP || f.st < stReq || f.st > stCAck {
				continue
			}
			o := seg{v6: f.kind&kindV6 != 0, fromClient: true, slot: slot, server: f.server, sport: g.clientPort(slot, f), dport: f.sport}
			o.flags, o.seq, o.ack, o.win = tcpPsh|tcpAck, f.cseq+1<<30, f.sseq, f.cwin
			o.tsval, o.tsecr = f.cts, f.sts
			o.payload = 100
			return g.writeTCP(buf, &o), OutOfWindow
		}
		return g.finScan(buf, &e), FINScan
	}
	// SYN flood: spoofed source, no options (hping3).
	e.spoofed = true
	e.srcRand = g.rng.Uint64()
	e.sport, e.dport = uint16(1024+g.rnd(64512)), 443
	if g.rnd(2) == 0 {
		e.dport = 80
	}
	e.flags, e.seq, e.win, e.bare = tcpSyn, uint32(g.rng.Uint64()), 512, true
	return g.writeTCP(buf, &e), SYNFlood
}

func (g *Generator) finScan(buf []byte, e *seg) int {
	e.scanner, e.sport, e.dport = uint32(g.rnd(254)), uint16(1024+g.rnd(64512)), uint16(1+g.rnd(1023))
	e.flags, e.seq, e.win = tcpFin, uint32(g.rng.Uint64()), 1024
	return g.writeTCP(buf, e)
}

// Batch is a chunk of packets laid out back to back in one arena, for a
// measured loop that should read packets from memory, not make them.
type Batch struct {
	Data []byte  // the packets, back to back
	Off  []int32 // packet i is Data[Off[i]:Off[i+1]]
	Time []int64
	Role []Role
}

// Len returns the number of packets.
func (b *Batch) Len() int { return len(b.Time) }

// At returns packet i.
func (b *Batch) At(i int) []byte { return b.Data[b.Off[i]:b.Off[i+1]] }

// Fill replaces b's contents with the next n packets. It allocates only
// when b has never held n packets: the arena is sized for n packets of
// MaxLen bytes, so that a reused Batch never grows again.
func (g *Generator) Fill(b *Batch, n int) {
	b.Grow(n)
	b.Data, b.Off, b.Time, b.Role = b.Data[:0], append(b.Off[:0], 0), b.Time[:0], b.Role[:0]
	for range n {
		l := len(b.Data)
		p := g.Next(b.Data[l : l+MaxLen])
		b.Data = b.Data[:l+len(p.Data)]
		b.Off = append(b.Off, int32(len(b.Data)))
		b.Time = append(b.Time, p.Time)
		b.Role = append(b.Role, p.Role)
	}
}

// Grow makes room for n packets, so that filling b with up to n packets
// does not allocate.
func (b *Batch) Grow(n int) {
	if cap(b.Data) < n*MaxLen {
		b.Data = make([]byte, 0, n*MaxLen)
	}
	if cap(b.Off) < n+1 {
		b.Off = make([]int32, 0, n+1)
		b.Time = make([]int64, 0, n)
		b.Role = make([]Role, 0, n)
	}
}
