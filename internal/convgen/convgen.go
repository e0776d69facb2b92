package convgen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Packet is one generated packet.
type Packet struct {
	// Data is the IP packet, from the IP header on.
	Data []byte
	// At is when it is sent: an offset from the start of its conversation
	// (Generate) or of the batch (Batch).
	At time.Duration
	// Note says what the generator meant the packet to be, in the
	// generator's words: "tcp c>s A seq=+0 ack=+0 len=100 [edge+1]".
	Note string
	// Conv is the index of the packet's conversation in its batch, Seed
	// that conversation's seed.
	Conv int
	Seed uint64
}

// Conversation is the packets one seed makes, in sending order.
type Conversation struct {
	Seed    uint64
	Kind    string // "tcp", "udp", "icmp", "icmpv6", "other", "sctp", "gre"
	V6      bool
	Packets []Packet
}

// Duration is the time from the conversation's first packet to its last.
func (c *Conversation) Duration() time.Duration {
	if len(c.Packets) == 0 {
		return 0
	}
	return c.Packets[len(c.Packets)-1].At - c.Packets[0].At
}

// Gate is a set of generator features that are off unless asked for: each
// waits for statewall to be brought to the kernel's behaviour on that
// traffic (see the package documentation for what each waits for).
type Gate uint32

// The gates. Their names (Gate.String, ParseGates) are the words of
// `make fuzz-kernel GATES=...`.
const (
	// GateSCTP: SCTP associations (INIT ... SHUTDOWN COMPLETE, ABORT,
	// wrong verification tags, odd chunks).
	GateSCTP Gate = 1 << iota
	// GateGRE: GRE version 0 (with and without key) and version 1 (PPTP
	// call ids).
	GateGRE
	// GateSelfReverse: flows whose tuple is its own reverse (same address
	// and port at both ends).
	GateSelfReverse
	// GateNoNextHeader: IPv6 packets whose last header is "no next
	// header" (59).
	GateNoNextHeader
	// GateICMPv6OddErrors: ICMPv6 errors of types 0 and 5-127, and
	// Redirect (137), quoting packets of the flows.
	GateICMPv6OddErrors
	// GateShortQuote: ICMP and ICMPv6 errors that quote only the first 4
	// bytes of the transport header (the ports).
	GateShortQuote
	// GateMultiSACK: TCP segments with two SACK options (only the first
	// counts in the kernel's tcp_sack).
	GateMultiSACK
	// GateIPv6FragUnaligned: IPv6 non-last fragments whose length is not a
	// multiple of 8.
	GateIPv6FragUnaligned
	// GateExtPastPayload: IPv6 packets whose payload length ends inside or
	// before their extension headers.
	GateExtPastPayload
	// GateBadIPv4HeaderSum: IPv4 packets with a wrong header checksum,
	// which the kernel drops before netfilter.
	GateBadIPv4HeaderSum
	// GateUDPLite: UDP-Lite datagrams.
	GateUDPLite
	// GateIPv6FragHeaderChain: IPv6 first fragments that do not hold the
	// whole header chain through the transport header's first bytes.
	GateIPv6FragHeaderChain
	// GateTCPSynRST: RSTs around SYNs the kernel ignores or resyncs on:
	// before the side that opened a TCP connection has acknowledged a
	// right SYN+ACK, a RST from it or a SYN with another sequence number;
	// after a SYN in an open connection, a SYN+ACK acking the wrong number
	// or with no SYN before it, any RST.
	GateTCPSynRST

	gateEnd
)

// AllGates is every gate.
const AllGates = gateEnd - 1

var gateNames = map[Gate]string{
	GateSCTP:              "sctp",
	GateGRE:               "gre",
	GateSelfReverse:       "self-reverse",
	GateNoNextHeader:      "no-next-header",
	GateICMPv6OddErrors:   "icmpv6-odd-errors",
	GateShortQuote:        "short-quote",
	GateMultiSACK:         "multi-sack",
	GateIPv6FragUnaligned: "ipv6-frag-unaligned",
	GateExtPastPayload:    "ext-past-payload",
	GateBadIPv4HeaderSum:  "bad-ipv4-header-sum",
	GateUDPLite:           "udplite",

	GateIPv6FragHeaderChain: "ipv6-frag-header-chain",
	GateTCPSynRST:           "tcp-syn-rst",
}

// Gates lists the single gates, in order.
func Gates() []Gate {
	var gs []Gate
	for g := Gate(1); g < gateEnd; g <<= 1 {
		gs = append(gs, g)
	}
	return gs
}

// String names the gates of g, comma-separated ("none" for none).
func (g Gate) String() string {
	if g == 0 {
		return "none"
	}
	var names []string
	for _, one := range Gates() {
		if g&one != 0 {
			names = append(names, gateNames[one])
		}
	}
	return strings.Join(names, ",")
}

// ParseGates parses a comma-separated list of gate names; "all" is every
// gate, "" and "none" none.
func ParseGates(s string) (Gate, error) {
	var g Gate
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		switch w {
		case "", "none":
			continue
		case "all":
			g |= AllGates
			continue
		}
		found := false
		for one, name := range gateNames {
			if name == w {
				g |= one
				found = true
			}
		}
		if !found {
			var all []string
			for _, n := range gateNames {
				all = append(all, n)
			}
			sort.Strings(all)
			return 0, fmt.Errorf("unknown gate %q (gates: %s, all)", w, strings.Join(all, ", "))
		}
	}
	return g, nil
}

// Options tune the generator. The zero value generates the ungated
// traffic.
type Options struct {
	// Gates switches gated features on.
	Gates Gate
	// Gaps puts up to three long pauses in a conversation, for comparing
	// expiry: the oracle then honours the gaps, and the timeouts of both
	// sides are lowered to whole seconds. A long gap is a whole number of
	// seconds, 0 to MaxGap (default 8 s), plus a quarter second, and the
	// short gaps between the other packets are below 200 µs: any time
	// between two packets of a conversation is then at least 0.2 s away
	// from a whole second, so that no packet arrives within 0.2 s of a
	// timeout's end and the kernel's clock (the wall clock, jiffies) and
	// the capture's agree on every expiry.
	Gaps   bool
	MaxGap time.Duration
}

func (o Options) on(g Gate) bool { return o.Gates&g != 0 }

// Endpoints are the addresses one conversation may use: client, server,
// and a third host (a router that sends ICMP errors), per IP version.
type Endpoints struct {
	C4, S4, R4 netip.Addr
	C6, S6, R6 netip.Addr
}

// SlotEndpoints returns the addresses of conversation slot k of a batch:
// distinct for every k below MaxSlots, all in 198.18.0.0/15 and
// fd00:198:18::/64, none in the ranges the rewriter and the oracle keep for
// themselves (198.19.255.0/24, fd00:198:18:0:ffff::/80), no IPv4 address
// ending in .0 or .255.
func SlotEndpoints(k int) Endpoints {
	if k < 0 || k >= MaxSlots {
		panic(fmt.Sprintf("convgen: slot %d out of range [0, %d)", k, MaxSlots))
	}
	v4 := func(i int) netip.Addr {
		// 254 usable addresses per /24: .1 to .254.
		n := (i/254)<<8 | (i%254 + 1)
		return netip.AddrFrom4([4]byte{198, 18 + byte(n>>16), byte(n >> 8), byte(n)})
	}
	v6 := func(i int) netip.Addr {
		b := [16]byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0, 0, 0, 0, 0x01}
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return netip.AddrFrom16(b)
	}
	return Endpoints{
		C4: v4(3 * k), S4: v4(3*k + 1), R4: v4(3*k + 2),
		C6: v6(3 * k), S6: v6(3*k + 1), R6: v6(3*k + 2),
	}
}

// MaxSlots is the number of conversations a batch can hold: 3 addresses
// each, from the 511 /24s of 198.18.0.0/15 outside 198.19.255.0/24.
const MaxSlots = 511 * 254 / 3

// Generate returns the conversation of seed, on the addresses ep.
func Generate(seed uint64, ep Endpoints, opt Options) *Conversation {
	g := newGen(seed, ep, opt)
	c := &Conversation{Seed: seed}
	c.Kind = g.conversation()
	c.V6 = g.v6
	c.Packets = g.pkts
	for i := range c.Packets {
		c.Packets[i].Seed = seed
	}
	return c
}

// Batch generates the conversations of seeds, conversation i on slot i's
// addresses, and returns their packets in one list, conversation after
// conversation, with times that start each conversation spacing after the
// previous one ended.
func Batch(seeds []uint64, opt Options, spacing time.Duration) ([]Packet, []*Conversation) {
	var all []Packet
	convs := make([]*Conversation, len(seeds))
	var t time.Duration
	for i, s := range seeds {
		c := Generate(s, SlotEndpoints(i), opt)
		convs[i] = c
		for _, p := range c.Packets {
			p.At += t
			p.Conv = i
			all = append(all, p)
		}
		t += c.Duration() + spacing
	}
	return all, convs
}

// Interleave generates the conversations of seeds, conversation i on slot
// i's addresses starting at i*stagger, and returns their packets merged in
// time order: for conversations with long gaps (Options.Gaps), whose one
// after the other would take minutes.
func Interleave(seeds []uint64, opt Options, stagger time.Duration) ([]Packet, []*Conversation) {
	var all []Packet
	convs := make([]*Conversation, len(seeds))
	for i, s := range seeds {
		c := Generate(s, SlotEndpoints(i), opt)
		convs[i] = c
		for _, p := range c.Packets {
			p.At += time.Duration(i) * stagger
			p.Conv = i
			all = append(all, p)
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].At < all[b].At })
	return all, convs
}

// gen is the state of one conversation being generated.
type gen struct {
	r    *rand.Rand
	opt  Options
	ep   Endpoints
	v6   bool
	t    time.Duration
	pkts []Packet
	ipid uint16

	longGaps int // long gaps so far (Options.Gaps)

	// fragRate is the chance that a packet is sent in fragments;
	// errRate that an ICMP error about it follows.
	fragRate, errRate float64
}

func newGen(seed uint64, ep Endpoints, opt Options) *gen {
	if opt.MaxGap <= 0 {
		opt.MaxGap = 8 * time.Second
	}
	g := &gen{r: rand.New(rand.NewPCG(seed, 0x5eed_c0_1e_7a11)), opt: opt, ep: ep}
	g.ipid = uint16(g.r.Uint32())
	return g
}

// n returns a number in [0, k).
func (g *gen) n(k int) int { return g.r.IntN(k) }

// chance is true with probability p.
func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

// pick returns an index chosen with the given weights.
func (g *gen) pick(weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := g.r.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// u32 and u16 are random numbers.
func (g *gen) u32() uint32 { return g.r.Uint32() }
func (g *gen) u16() uint16 { return uint16(g.r.Uint32()) }

// addrs returns the client, server and router addresses of the
// conversation's IP version.
func (g *gen) addrs() (c, s, r netip.Addr) {
	if g.v6 {
		return g.ep.C6, g.ep.S6, g.ep.R6
	}
	return g.ep.C4, g.ep.S4, g.ep.R4
}

// conversation generates one conversation and returns its kind.
func (g *gen) conversation() string {
	g.v6 = g.chance(0.5)
	switch {
	case g.chance(0.12):
		g.fragRate = 0.05 + 0.4*g.r.Float64()
	case g.chance(0.03):
		g.fragRate = 1
	}
	if g.chance(0.3) {
		g.errRate = 0.02 + 0.15*g.r.Float64()
	}
	kinds := []struct {
		name string
		w    int
		gate Gate
		run  func()
	}{
		{"tcp", 55, 0, g.tcpConversation},
		{"udp", 14, 0, g.udpConversation},
		{"icmp", 10, 0, g.icmpConversation},
		{"other", 5, 0, g.otherConversation},
		{"sctp", 8, GateSCTP, g.sctpConversation},
		{"gre", 5, GateGRE, g.greConversation},
	}
	w := make([]int, len(kinds))
	for i, k := range kinds {
		if k.gate == 0 || g.opt.on(k.gate) {
			w[i] = k.w
		}
	}
	k := kinds[g.pick(w...)]
	k.run()
	if k.name == "icmp" && g.v6 {
		return "icmpv6"
	}
	return k.name
}

// step advances the clock by a short random gap, or with Options.Gaps
// sometimes by a long one.
func (g *gen) step() {
	if g.opt.Gaps {
		if g.longGaps < 3 && g.chance(0.12) {
			g.longGaps++
			g.t += time.Duration(g.n(int(g.opt.MaxGap/time.Second)+1))*time.Second + 250*time.Millisecond
			return
		}
		g.t += time.Duration(20+g.n(180)) * time.Microsecond
		return
	}
	g.t += time.Duration(20+g.n(1500)) * time.Microsecond
}

// emit appends a finished packet (or fragment), sometimes with bytes
// after its end (as Ethernet pads short frames), which the kernel trims.
func (g *gen) emit(data []byte, note string) {
	g.step()
	if g.chance(0.01) {
		data = append(data, make([]byte, 1+g.n(20))...)
		note += " [trailing bytes after the IP packet]"
	}
	g.pkts = append(g.pkts, Packet{Data: data, At: g.t, Note: note})
}

// nextID returns a fresh IPv4 identification / IPv6 fragment id.
func (g *gen) nextID() uint16 {
	g.ipid++
	return g.ipid
}

// ip returns an IP header from src to dst with the conversation's
// occasional oddities: IPv4 options, IPv6 extension headers, a bad IPv4
// header checksum (gated), and with GateExtPastPayload an IPv6 payload
// length that ends before the extension headers do.
func (g *gen) ip(src, dst netip.Addr) ipHdr {
	h := ipHdr{v6: src.Is6(), src: src, dst: dst, ttl: uint8(1 + g.n(255)), id: g.nextID()}
	if !h.v6 {
		h.df = g.chance(0.5)
		if g.chance(0.03) {
			// NOPs then EOL: options ip_rcv_options accepts.
			h.opts4 = []byte{1, 1, 1, 0}
			if g.chance(0.5) {
				h.opts4 = []byte{1, 1, 1, 1, 1, 1, 1, 0}
			}
		}
		if g.opt.on(GateBadIPv4HeaderSum) && g.chance(0.01) {
			h.badHdrSum = true
		}
		return h
	}
	switch g.pick(94, 3, 3) {
	case 1:
		h.ext6 = append(h.ext6, ext6Options(protoHopOpts, g.n(2)))
	case 2:
		h.ext6 = append(h.ext6, ext6Options(protoDstOpts, g.n(2)))
		if g.chance(0.3) {
			h.ext6 = append([][]byte{ext6Options(protoHopOpts, 0)}, h.ext6...)
		}
	}
	return h
}
