// Package daemon is `statewall run`: it diverts the host's traffic to
// NFQUEUE, decides every queued packet with the engines, and enforces the
// verdicts, until it is told to stop; then it removes what it installed.
//
// The packet path, per queue: nfq reader -> packet.Decode (into the
// queue's own Packet) -> engine (stateless, stateful, or both in shadow
// mode) -> verdict. Nothing on it takes a global lock: the rulesets are
// swapped atomically, conntrack shards its locks, the counters are atomic.
package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/statewall/statewall/pkg/nfq"
)

// Mode is what the daemon enforces.
type Mode uint8

const (
	// Stateful enforces the stateful engine's verdicts (the default).
	Stateful Mode = iota
	// Stateless enforces the stateless engine's verdicts.
	Stateless
	// Shadow enforces stateful verdicts and computes the stateless verdict
	// of every packet too, counting and logging where they differ: the live
	// form of the replay comparison.
	Shadow
)

func (m Mode) String() string {
	switch m {
	case Stateless:
		return "stateless"
	case Shadow:
		return "shadow"
	}
	return "stateful"
}

// ParseMode parses a --mode value.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "stateful", "":
		return Stateful, nil
	case "stateless":
		return Stateless, nil
	case "shadow":
		return Shadow, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want stateful, stateless or shadow)", s)
}

// DefaultControlSocket is where the control socket lives unless told
// otherwise: in a directory of its own, which the systemd unit has made
// (RuntimeDirectory=statewall, the only part of /run it may write) and
// which Run makes otherwise.
const DefaultControlSocket = "/run/statewall/statewall.sock"

// Config configures a daemon. RulesFile is required; the zero value of
// every other field is the default noted on it.
type Config struct {
	RulesFile string
	Mode      Mode // Stateful
	// Hooks to divert at: nil means input, output and forward.
	Hooks []nfq.Hook
	// Queues: first and last NFQUEUE number (inclusive); several queues
	// are spread as Spread says, one reader each. {0,0}: queue 0.
	Queues [2]uint16
	// Spread: how several queues share the packets (nfq.DivertConfig.Spread;
	// the zero value spreads by flow, both directions of a flow on one
	// queue).
	Spread nfq.Spread
	// Offload hands established connections to the kernel (offload.go):
	// once statewall passed a packet of an assured connection, its later
	// packets bypass the queues until the kernel's conntrack ends it.
	// Off by default.
	Offload bool
	// OffloadMark is the connmark bit of offloaded connections
	// (nfq.DivertConfig.OffloadMark); 0 means nfq.DefaultOffloadMark.
	OffloadMark uint32
	// FailOpen: when statewall is not reading, or a queue is full, the
	// kernel passes packets (queue bypass and the fail-open flag) instead
	// of dropping them. Availability over security: see README.
	FailOpen bool
	// Loopback diverts traffic on lo too.
	Loopback bool
	// Netns runs the whole daemon (divert rules, queues, metrics listener)
	// inside the named network namespace ("ip netns add NAME").
	Netns string
	// MetricsAddr, if set, serves Prometheus metrics at http://ADDR/metrics.
	MetricsAddr string
	// ControlSocket is the Unix socket of `statewall status`, `conntrack`
	// and `reload`; DefaultControlSocket when empty.
	ControlSocket string
	// Backend forces "iptables-nft" or "iptables-legacy"; empty: detect.
	Backend string
	// Tag prefixes the chain names of the divert rules (<Tag>-INPUT, ...)
	// and ends the name of the defragmentation table (nfq.DefragTable);
	// "STATEWALL" when empty. Two daemons on one host (or namespace) need
	// different tags. At most 20 letters, digits, '_' and '-', not
	// starting with '-' (nfq.CheckTag): the longest chain name, <Tag>-FORWARD,
	// must fit iptables' 28 characters, and the tag is written into the
	// nft script the daemon runs as root.
	Tag string
	// StateFile, if set, keeps the connection table across restarts: a
	// clean stop saves it there and the next start loads it (see
	// statefile.go). Empty: every start begins with an empty table.
	StateFile string
	// StateSaveEvery also saves the table to StateFile at this interval
	// while running, so that a crash loses at most that much; 0: only at a
	// stop.
	StateSaveEvery time.Duration
	// PickupGrace: for this long after a start that restored a table from
	// StateFile, TCP connections the table does not know are picked up
	// mid-stream (engine.Stateful.SetPickup); 0: never.
	PickupGrace time.Duration
	// CopyRange is how many bytes of each packet the kernel copies to
	// statewall; DefaultCopyRange when zero. The engines read headers only
	// (IP with options or extension headers, the transport header, and for
	// ICMP errors the quoted headers), and the kernel keeps the packet
	// while its verdict is pending, so copying a 64 KiB GSO packet whole
	// would be wasted work.
	CopyRange uint32
	// Spin: nfq.QueueConfig.Spin (zero: nfq.DefaultSpin; negative: never).
	Spin time.Duration
	// DisagreementLogEvery rate-limits shadow-mode logging: at most one log
	// line per interval per disagreement kind. 0 means 1 s.
	DisagreementLogEvery time.Duration
	// LogFile is where packets decided by `log` rules are written, as a
	// PFLOG capture (tcpdump -n -e -r FILE), rotated by size; empty: no
	// file (`statewall log` still streams them).
	LogFile string
	// LogLines also writes a line per logged packet to the daemon's own
	// log, at most 10 a second.
	LogLines bool
	// Clock is where the daemon reads the time: conntrack counts on its
	// monotonic side only (see Clock). nil means SystemClock.
	Clock Clock
	// OnBadRules: what New does when the rules file does not parse;
	// Refuse (the zero value) returns the error, Block starts with
	// FallbackRules (see BadRules).
	OnBadRules BadRules
	// Sync, if set, syncs the connection table with other statewall
	// nodes (sync.go); nil: no sync.
	Sync *SyncConfig
	// Notify, if set, is told of the daemon's life for a service manager
	// (cmd/statewall sends systemd's READY=1 and the like): Ready once the
	// divert rules and the ruleset are in place, Reloading and Ready
	// around each later reload, Stopping when Run begins to stop; status
	// is a line for humans. It is called with the reload lock held, from
	// Run's goroutine or a reload's: it must not block for long nor call
	// the Daemon back.
	Notify func(s State, status string)
}

// DefaultCopyRange covers an IPv6 header with extension headers, a
// transport header with options, and an ICMP error's quoted headers.
const DefaultCopyRange = 512

var errNoRules = errors.New("no rules file")

func (c *Config) check() error {
	if c.RulesFile == "" {
		return errNoRules
	}
	// Reloads read the file again, maybe after the working directory
	// changed; status shows where the rules come from.
	if abs, err := filepath.Abs(c.RulesFile); err == nil {
		c.RulesFile = abs
	}
	if c.Queues[0] > c.Queues[1] {
		return fmt.Errorf("queue range %d-%d is reversed", c.Queues[0], c.Queues[1])
	}
	// Before anything runs: the tag becomes part of iptables chain names
	// and of an nft script.
	if c.Tag != "" {
		if err := nfq.CheckTag(c.Tag); err != nil {
			return err
		}
	}
	if c.ControlSocket == "" {
		c.ControlSocket = DefaultControlSocket
	}
	if c.StateFile != "" {
		if abs, err := filepath.Abs(c.StateFile); err == nil {
			c.StateFile = abs
		}
	}
	if c.CopyRange == 0 {
		c.CopyRange = DefaultCopyRange
	}
	if c.CopyRange < 128 {
		return fmt.Errorf("copy range %d is too small to hold the headers (at least 128)", c.CopyRange)
	}
	if c.DisagreementLogEvery <= 0 {
		c.DisagreementLogEvery = time.Second
	}
	if len(c.Hooks) == 0 {
		c.Hooks = nfq.AllHooks
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	return nil
}
