package reject

import "errors"

// Defaults of Config.
const (
	DefaultRate  = 1000 // answers per second
	DefaultBurst = 100
)

// ErrNotSupported is returned by Open on systems other than Linux.
var ErrNotSupported = errors.New("reject: sending needs Linux")

// Config configures a Sender. The zero value sends in the caller's network
// namespace, at most DefaultRate answers a second with bursts of
// DefaultBurst, unmarked.
type Config struct {
	// NetnsName is a network namespace made by "ip netns add" whose raw
	// sockets send the answers, so that they are routed as that
	// namespace routes (out of the interface that leads to the blocked
	// packet's source); empty means the caller's.
	NetnsName string
	// Rate is how many answers a second may go, Burst how many may go at
	// once after a quiet time; the others are not sent and are counted
	// (Stats.RateLimited). Zero means DefaultRate and DefaultBurst; a
	// negative Rate means no limit. The kernel limits its own ICMP errors
	// too (net.ipv4.icmp_ratelimit, net.ipv6.icmp.ratelimit: 1000 ms per
	// destination; net.ipv4.icmp_msgs_per_sec: 1000 overall), and so does pf
	// for return-icmp (its icmp_error rate limit): an attacker must not be
	// able to turn blocked traffic into as much traffic back at a forged
	// source.
	Rate, Burst int
	// Mark, if not zero, is set with SO_MARK on the sockets, so every
	// answer carries it. The answers leave through the output hook; a
	// daemon that diverts the output hook to NFQUEUE would otherwise be
	// handed its own RSTs. Give the same value to the divert rules'
	// skip mark (nfq.DivertConfig.SkipMark) so that they pass undiverted.
	Mark uint32
}

func (c Config) normalize() Config {
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	return c
}

// Stats are a Sender's counters since Open.
type Stats struct {
	Sent        uint64 // answers the kernel took
	RateLimited uint64 // answers not sent because of Config.Rate
	// Dropped counts answers the kernel had no room for (EAGAIN,
	// ENOBUFS): Send never waits for room.
	Dropped uint64
	// Errors counts answers that could not be sent for any other reason:
	// not an IPv4 or IPv6 packet, no socket for its version, no route,
	// a refusal by the kernel.
	Errors uint64
}
