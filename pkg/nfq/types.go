package nfq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// Errors.
var (
	// ErrNotSupported is returned by every function of the package on
	// systems other than Linux.
	ErrNotSupported = errors.New("nfq: NFQUEUE needs Linux")
	// ErrClosed is returned by Run on a Reader that was already closed or
	// is already running.
	ErrClosed = errors.New("nfq: reader closed or already running")
)

// Hook is the netfilter hook a packet was diverted at. The values are the
// kernel's NF_INET_* numbers, so a queued packet's hook converts directly; the
// zero value is not a hook statewall diverts at.
type Hook uint8

// Hooks statewall diverts at.
const (
	HookInput   Hook = 1 // NF_INET_LOCAL_IN: packets for this host
	HookForward Hook = 2 // NF_INET_FORWARD: packets routed through this host
	HookOutput  Hook = 3 // NF_INET_LOCAL_OUT: packets this host sends
)

// AllHooks is the default of DivertConfig.Hooks.
var AllHooks = []Hook{HookInput, HookOutput, HookForward}

func (h Hook) String() string {
	switch h {
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	case HookOutput:
		return "output"
	}
	return "hook(" + strconv.Itoa(int(h)) + ")"
}

// chain is the name of the hook's built-in chain (INPUT, OUTPUT, FORWARD), in
// the table Hook.table names (rules.go).
func (h Hook) chain() string { return strings.ToUpper(h.String()) }

func (h Hook) valid() bool { return h >= HookInput && h <= HookOutput }

// ParseHooks parses a comma-separated list of hook names ("input,output,
// forward"; case and spaces do not matter). Duplicates are dropped, order is
// kept.
func ParseHooks(s string) ([]Hook, error) {
	var hooks []Hook
	seen := map[Hook]bool{}
	for _, f := range strings.Split(s, ",") {
		var h Hook
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "input":
			h = HookInput
		case "output":
			h = HookOutput
		case "forward":
			h = HookForward
		default:
			return nil, fmt.Errorf("nfq: unknown hook %q (want input, output or forward)", strings.TrimSpace(f))
		}
		if !seen[h] {
			seen[h] = true
			hooks = append(hooks, h)
		}
	}
	return hooks, nil
}

// Verdict is what happens to a queued packet. The values are the kernel's
// NF_DROP and NF_ACCEPT, and the zero value drops: a Handler that forgets to
// decide fails closed. Any value other than Accept is sent as Drop.
type Verdict uint8

// Verdicts.
const (
	Drop   Verdict = 0
	Accept Verdict = 1
	// Hold: no verdict yet. The Handler keeps the packet's queue and id
	// and gives its verdict later with Reader.Release, from any goroutine
	// (state sync holds a connection's first packet until the peer has its
	// entry). The kernel keeps the packet meanwhile, and the queue sends
	// plain verdicts instead of batch ones while any packet is held, so
	// that no batch covers it.
	Hold Verdict = 2
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case Accept:
		return "accept"
	case Hold:
		return "hold"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// PacketFlags are the kernel's NFQA_SKB_INFO bits for a packet.
type PacketFlags uint32

// Packet flags. A locally generated packet whose checksum the NIC would
// compute carries FlagChecksumNotReady: its transport checksum is partial and
// must not be verified.
const (
	FlagChecksumNotReady    PacketFlags = 1 << 0 // NFQA_SKB_CSUMNOTREADY
	FlagGSO                 PacketFlags = 1 << 1 // NFQA_SKB_GSO: a segmentation-offload super-packet, may exceed the MTU
	FlagChecksumNotVerified PacketFlags = 1 << 2 // NFQA_SKB_CSUM_NOTVERIFIED
)

// Packet is one queued packet as the Handler sees it. NFQUEUE gives no link
// header: Payload starts at the IP header (version in the first nibble).
//
// The Packet and its Payload are valid only during the Handler call: the
// Reader reuses them.
type Packet struct {
	ID        uint32 // the kernel's id within the queue
	Queue     uint16
	Hook      Hook
	Payload   []byte // at most QueueConfig.CopyRange bytes of the packet
	Length    uint32 // length of the whole packet (more than len(Payload) if truncated)
	Mark      uint32
	InDev     uint32 // ifindex, 0 if none (output)
	OutDev    uint32 // ifindex, 0 if none (input)
	Flags     PacketFlags
	Timestamp time.Time // receive time if the kernel has one (input, forward), else zero
	// Read is when the reader read the packet from the socket: one clock
	// read per read of up to 16 datagrams, with Go's monotonic reading,
	// so that a handler that needs the time has it without a clock read
	// of its own. Zero from readers that do not set it (nfqref).
	Read time.Time
	// SetMark is set by the Handler, not the kernel: bits to set in the
	// packet's mark if it is accepted (the verdict carries the new mark,
	// NFQA_MARK). The daemon sets DivertConfig.OffloadMark there to hand
	// a connection to the kernel. Mark is the packet's mark as queued;
	// a packet that only the flow hash marked (see SpreadFlow) goes on
	// with its mark as it was before the hash, 0, plus SetMark.
	SetMark uint32
}

// Handler decides a packet. It is called on the reader goroutine of the
// packet's queue, so with several queues it is called concurrently and must
// be safe for that; it must not retain p or p.Payload. A slow Handler slows
// its queue: the kernel holds at most QueueConfig.MaxLen packets per queue
// and then drops (or, with FailOpen, accepts) the rest.
type Handler func(p *Packet) Verdict

// QueueConfig configures a Reader. The zero value reads queue 0, fails
// closed, and uses the defaults below.
type QueueConfig struct {
	// Queues is the first and last queue number (inclusive), as in
	// DivertConfig; {0, 0} is queue 0 alone.
	Queues [2]uint16
	// FailOpen sets NFQA_CFG_F_FAIL_OPEN: the kernel accepts packets the
	// queue has no room for (it drops them without). Use it together with
	// DivertConfig.FailOpen, which covers the time no reader is bound.
	FailOpen bool
	// MaxLen is how many packets the kernel holds per queue awaiting a
	// verdict. Zero means 4096 (the kernel's own default is 1024).
	MaxLen uint32
	// CopyRange is how many bytes of each packet are copied to us. Zero
	// means 0xffff, whole packets (up to the 64 KiB a GSO packet may
	// have). The daemon asks for 512 (daemon.DefaultCopyRange): its
	// engines read headers only, and the kernel keeps the packet while
	// its verdict is pending, so copying all of it would be wasted work.
	CopyRange uint32
	// NoGSO clears NFQA_CFG_F_GSO. By default it is set, so the kernel
	// queues segmentation-offload super-packets whole (see FlagGSO) instead
	// of segmenting them in software first.
	NoGSO bool
	// SockBuf is the socket receive buffer in bytes, set with
	// SO_RCVBUFFORCE (SO_RCVBUF, capped by net.core.rmem_max, if that is
	// refused). Zero means 8 MiB. When it overflows, the kernel accepts
	// (FailOpen) or drops the packets it could not deliver and the Reader
	// counts an ENOBUFS.
	SockBuf int
	// DrainTimeout bounds how long Close waits for the packets in flight to
	// be decided. Zero means 5 s.
	DrainTimeout time.Duration
	// Spread is how the divert rules spread packets over the queues (as
	// DivertConfig.Spread): with SpreadFlow and more than one queue, the
	// reader gives every packet that carries its queue's flow mark
	// (FlowMark) back the mark it had before the hash, 0, in its verdict.
	Spread Spread
	// Spin is how long the reader keeps polling an empty socket (yielding
	// the CPU between polls) before it sleeps until the next packet, when
	// the traffic is sparse: after a burst of more than a couple of
	// packets it sleeps at once, as the CPU is then busy with traffic.
	// It sends the verdicts it holds first, so a spin never delays one.
	// A sleeping reader is woken by the packet that arrives, which on a
	// VM costs tens of microseconds on both sides; a reply that comes
	// back within Spin is read at once instead (see bench/results/live.md:
	// request/response p50 about 46 -> 28 us at no cost in UDP packets/s).
	// Zero means DefaultSpin; negative never spins.
	Spin time.Duration
	// NetnsName is a network namespace made by "ip netns add" to open the
	// queues in; empty means the caller's.
	NetnsName string
}

// DefaultSpin is QueueConfig.Spin's default: about a local round trip
// through a forwarding host, at most this much CPU after each sparse
// packet.
const DefaultSpin = 20 * time.Microsecond

func (c QueueConfig) normalize() (QueueConfig, error) {
	if c.Queues[0] > c.Queues[1] {
		return c, fmt.Errorf("nfq: queue range %d:%d is reversed", c.Queues[0], c.Queues[1])
	}
	if c.MaxLen == 0 {
		c.MaxLen = nfqnl.DefaultMaxLen
	}
	if c.CopyRange == 0 || c.CopyRange > nfqnl.DefaultCopyRange {
		c.CopyRange = nfqnl.DefaultCopyRange
	}
	if c.SockBuf <= 0 {
		c.SockBuf = nfqnl.DefaultSockBuf
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = nfqnl.DefaultDrainTimeout
	}
	return c, nil
}

// Stats are the counters of one queue since Open.
type Stats struct {
	Queue    uint16 `json:"queue"`
	Packets  uint64 `json:"packets"`  // handed to the Handler
	Accepted uint64 `json:"accepted"` // verdicts sent
	Dropped  uint64 `json:"dropped"`
	// ENOBUFS counts receive-buffer overruns the kernel reported. Each may
	// stand for several packets, which the kernel accepted (FailOpen) or
	// dropped without queueing them: none of them awaits a verdict.
	ENOBUFS uint64 `json:"enobufs"`
	// Errors counts everything else that went wrong and was survived:
	// messages that were not packets, verdicts the kernel refused or that
	// could not be sent, receive errors.
	Errors uint64 `json:"errors"`
	// Held counts packets whose Handler held them (Hold) for a later
	// Release.
	Held uint64 `json:"held"`
}

// DivertConfig says which packets Install diverts to which queues. The zero
// value diverts IPv4 and IPv6 at input, output and forward, except on the
// loopback interface, to queue 0, fail-closed, with the backend detected.
type DivertConfig struct {
	// Hooks to divert at; empty means AllHooks.
	Hooks []Hook
	// Queues is the first and last queue (inclusive): {n, n} is
	// "--queue-num n"; several queues are spread as Spread says.
	Queues [2]uint16
	// Spread says how packets are spread over several queues. The zero
	// value, SpreadFlow, hashes the 5-tuple, the same in both directions;
	// Install falls back to SpreadAddr where the kernel lacks HMARK (see
	// Divert.Config for what was installed).
	Spread Spread
	// OffloadMark, if not zero, is a connmark bit (one bit) that lets a
	// connection bypass the queues: packets of a connection whose
	// kernel conntrack mark has it pass undiverted, and a packet that
	// leaves statewall with it in its mark (Packet.SetMark) sets it on its
	// connection, after the host's filter table has passed the packet
	// (the <Tag>-OFFLOAD chains; see doc.go, "Offload").
	OffloadMark uint32
	// FailOpen adds --queue-bypass: packets pass while no reader is bound.
	// Pair it with QueueConfig.FailOpen.
	FailOpen bool
	// Loopback diverts traffic on "lo" too.
	Loopback bool
	// SkipMark, if not zero, lets packets whose mark has all these bits set
	// pass undiverted ("-m mark --mark SkipMark/SkipMark -j RETURN").
	SkipMark uint32
	// IPv4 and IPv6 select the families; if neither is set, both are.
	IPv4, IPv6 bool
	// Backend is "iptables-nft" or "iptables-legacy"; empty means
	// DetectBackend.
	Backend string
	// Tag prefixes the chain names (<Tag>-INPUT ...); empty means
	// "STATEWALL". At most 20 letters, digits, '_' or '-' (see CheckTag).
	Tag string
	// NetnsName is a network namespace made by "ip netns add" to install
	// the rules in ("ip netns exec"); empty means the caller's.
	NetnsName string

	// seed is the flow hash's key (--hmark-rnd), drawn by Install, so
	// that nobody outside can aim flows at one queue.
	seed uint32
}

// Spread is how the divert rules spread packets over several queues.
type Spread uint8

// Spreads.
const (
	// SpreadFlow hashes the 5-tuple (addresses, ports, protocol) with the
	// kernel's HMARK target, symmetrically, so that both directions of a
	// flow meet one queue, into the packet's mark (FlowMark), and
	// queues by that mark. Only packets with mark 0 are hashed (HMARK
	// writes the whole mark): the others keep their mark and go by
	// SpreadAddr. The reader gives the hashed packets their 0 back.
	SpreadFlow Spread = iota
	// SpreadAddr is the kernel's --queue-balance: a hash of the
	// addresses (and protocol), the same in both directions: all flows
	// between two hosts meet one queue.
	SpreadAddr
	// SpreadCPU is --queue-balance with --queue-cpu-fanout: the queue of
	// the CPU that handles the packet. The two directions of a flow may
	// meet different queues.
	SpreadCPU
)

func (s Spread) String() string {
	switch s {
	case SpreadFlow:
		return "flow"
	case SpreadAddr:
		return "addr"
	case SpreadCPU:
		return "cpu"
	}
	return "spread(" + strconv.Itoa(int(s)) + ")"
}

// ParseSpread parses "flow", "addr" or "cpu".
func ParseSpread(s string) (Spread, error) {
	for _, v := range []Spread{SpreadFlow, SpreadAddr, SpreadCPU} {
		if s == v.String() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("nfq: unknown spread %q (want flow, addr or cpu)", s)
}

// FlowMarkBase is the first of the marks the flow hash gives packets
// (SpreadFlow): the packets for the i-th queue carry FlowMarkBase+i
// between the hash and the reader, which sets them back to 0. It lacks
// the bit 0x00010000, so that no flow mark has all the bits of the
// daemon's skip mark (0x53570000), and the flow marks share no bit with
// an offload mark (offloadMarkBits): a packet accepted with its flow
// mark still on (fail-open) never sets the offload bit of its
// connection.
const FlowMarkBase = 0x53560000

// offloadMarkBits are the bits an OffloadMark may be: none of the flow
// marks' (FlowMarkBase + up to MaxFlowQueues-1).
const offloadMarkBits = 0xffc0

// DefaultOffloadMark is the offload bit the daemon uses unless told
// otherwise: a bit none of kube-proxy (0x4000, 0x8000), Calico and
// Tailscale (upper 16 bits), Cilium (0x0f00) and WireGuard's wg-quick
// (0xca6c) uses.
const DefaultOffloadMark = 0x1000

// MaxFlowQueues is the most queues SpreadFlow spreads over (one rule
// each); more queues are spread by SpreadAddr.
const MaxFlowQueues = 64

// FlowMark is the mark the flow hash gives the packets of the i-th queue
// of a range (i from 0).
func FlowMark(i int) uint32 { return FlowMarkBase + uint32(i) }

// Backends.
const (
	BackendNFT    = "iptables-nft"
	BackendLegacy = "iptables-legacy"
)

const (
	defaultTag = "STATEWALL"
	maxTagLen  = 20 // chain names are at most 28 bytes; "-FORWARD" is 8
	comment    = "statewall"
)

func (c DivertConfig) normalize() (DivertConfig, error) {
	if len(c.Hooks) == 0 {
		c.Hooks = AllHooks
	}
	seen := map[Hook]bool{}
	var hooks []Hook
	for _, h := range c.Hooks {
		if !h.valid() {
			return c, fmt.Errorf("nfq: cannot divert at %v", h)
		}
		if !seen[h] {
			seen[h] = true
			hooks = append(hooks, h)
		}
	}
	c.Hooks = hooks
	if c.Queues[0] > c.Queues[1] {
		return c, fmt.Errorf("nfq: queue range %d:%d is reversed", c.Queues[0], c.Queues[1])
	}
	if !c.IPv4 && !c.IPv6 {
		c.IPv4, c.IPv6 = true, true
	}
	if c.Tag == "" {
		c.Tag = defaultTag
	}
	if err := CheckTag(c.Tag); err != nil {
		return c, err
	}
	if c.Spread > SpreadCPU {
		return c, fmt.Errorf("nfq: unknown spread %v", c.Spread)
	}
	if c.OffloadMark&(c.OffloadMark-1) != 0 {
		return c, fmt.Errorf("nfq: offload mark 0x%x is not one bit", c.OffloadMark)
	}
	if c.OffloadMark != 0 && (c.OffloadMark&c.SkipMark != 0 || c.OffloadMark&^offloadMarkBits != 0) {
		return c, fmt.Errorf("nfq: offload mark 0x%x must be one of the bits 0x%x, and not in the skip mark 0x%x", c.OffloadMark, offloadMarkBits, c.SkipMark)
	}
	switch c.Backend {
	case "", BackendNFT, BackendLegacy:
	default:
		return c, fmt.Errorf("nfq: unknown backend %q (want %s or %s)", c.Backend, BackendNFT, BackendLegacy)
	}
	return c, nil
}

// CheckTag reports whether tag can name what statewall adds to netfilter:
// the divert chains <tag>-INPUT, <tag>-OUTPUT and <tag>-FORWARD (iptables
// allows 28 characters, "-FORWARD" takes 8) and the defragmentation table
// statewall-defrag-<tag> (see EnableDefrag). It wants 1 to 20 letters,
// digits, '_' or '-', not starting with '-' (iptables would read the chain
// name as an option). The tag is spliced unquoted into the nft script that
// makes the table, run as root (nft names cannot be quoted), so anything
// else, a newline above all, could add commands of its own. Install,
// Cleanup and EnableDefrag check it; a caller that takes a tag from a user
// can check it before anything runs.
func CheckTag(tag string) error {
	ok := tag != "" && len(tag) <= maxTagLen && tag[0] != '-'
	for i := 0; ok && i < len(tag); i++ {
		c := tag[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("nfq: bad tag %q: want 1 to %d letters, digits, '_' or '-', not starting with '-'", tag, maxTagLen)
	}
	return nil
}
