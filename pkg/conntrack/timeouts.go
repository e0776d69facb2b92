package conntrack

import (
	"fmt"
	"sort"
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
)

// Timeouts holds every conntrack timeout. The zero value of a field means
// the kernel's default; WithDefaults fills them in.
type Timeouts struct {
	TCP       tcpstate.Timeouts
	UDP       time.Duration // unreplied, or replied but not yet a stream (kernel: 30 s)
	UDPStream time.Duration // assured UDP flow (kernel: 120 s)
	ICMP      time.Duration // 30 s
	ICMPv6    time.Duration // 30 s
	Generic   time.Duration // other protocols: 600 s
	SCTP      SCTPTimeouts
	GRE       time.Duration // GRE, unreplied (kernel: 30 s)
	GREStream time.Duration // GRE once a reply was seen (kernel: 180 s)
}

// SCTPTimeouts are the SCTP timeouts by state (the kernel's
// nf_conntrack_sctp_timeout_<state>). An entry's timer is set to its
// state's timeout by every packet that the state machine accepts, except
// a retransmitted INIT and a HEARTBEAT on another path.
type SCTPTimeouts struct {
	Closed          time.Duration // 10 s; also the first packet's when it leaves the state NONE, which it never does
	CookieWait      time.Duration // 3 s
	CookieEchoed    time.Duration // 3 s
	Established     time.Duration // 210 s
	ShutdownSent    time.Duration // 3 s
	ShutdownRecd    time.Duration // 3 s
	ShutdownAckSent time.Duration // 3 s
	HeartbeatSent   time.Duration // 30 s
}

// of is the timeout of state s (the fields are set: the table's timeouts
// went through WithDefaults). NONE has CLOSED's, as in the kernel.
func (to *SCTPTimeouts) of(s SCTPState) time.Duration {
	switch s {
	case SCTPCookieWait:
		return to.CookieWait
	case SCTPCookieEchoed:
		return to.CookieEchoed
	case SCTPEstablished:
		return to.Established
	case SCTPShutdownSent:
		return to.ShutdownSent
	case SCTPShutdownRecd:
		return to.ShutdownRecd
	case SCTPShutdownAckSent:
		return to.ShutdownAckSent
	case SCTPHeartbeatSent:
		return to.HeartbeatSent
	}
	return to.Closed
}

// DefaultTimeouts are the Linux kernel's defaults.
var DefaultTimeouts = Timeouts{
	TCP:       tcpstate.DefaultTimeouts,
	UDP:       30 * time.Second,
	UDPStream: 120 * time.Second,
	ICMP:      30 * time.Second,
	ICMPv6:    30 * time.Second,
	Generic:   600 * time.Second,
	SCTP: SCTPTimeouts{
		Closed:          10 * time.Second,
		CookieWait:      3 * time.Second,
		CookieEchoed:    3 * time.Second,
		Established:     210 * time.Second,
		ShutdownSent:    3 * time.Second,
		ShutdownRecd:    3 * time.Second,
		ShutdownAckSent: 3 * time.Second,
		HeartbeatSent:   30 * time.Second,
	},
	GRE:       30 * time.Second,
	GREStream: 180 * time.Second,
}

// timeoutFields maps the ruleset's names (after the kernel sysctls
// net.netfilter.nf_conntrack_<proto>_timeout_<state>) to the field they set.
func (t *Timeouts) fields() map[string]*time.Duration {
	return map[string]*time.Duration{
		"tcp.syn_sent":           &t.TCP.SynSent,
		"tcp.syn_sent2":          &t.TCP.SynSent2,
		"tcp.syn_recv":           &t.TCP.SynRecv,
		"tcp.established":        &t.TCP.Established,
		"tcp.fin_wait":           &t.TCP.FinWait,
		"tcp.close_wait":         &t.TCP.CloseWait,
		"tcp.last_ack":           &t.TCP.LastAck,
		"tcp.time_wait":          &t.TCP.TimeWait,
		"tcp.close":              &t.TCP.Close,
		"tcp.max_retrans":        &t.TCP.MaxRetrans,
		"tcp.unacknowledged":     &t.TCP.Unacknowledged,
		"udp":                    &t.UDP,
		"udp.stream":             &t.UDPStream,
		"icmp":                   &t.ICMP,
		"icmpv6":                 &t.ICMPv6,
		"generic":                &t.Generic,
		"sctp.closed":            &t.SCTP.Closed,
		"sctp.cookie_wait":       &t.SCTP.CookieWait,
		"sctp.cookie_echoed":     &t.SCTP.CookieEchoed,
		"sctp.established":       &t.SCTP.Established,
		"sctp.shutdown_sent":     &t.SCTP.ShutdownSent,
		"sctp.shutdown_recd":     &t.SCTP.ShutdownRecd,
		"sctp.shutdown_ack_sent": &t.SCTP.ShutdownAckSent,
		"sctp.heartbeat_sent":    &t.SCTP.HeartbeatSent,
		"gre":                    &t.GRE,
		"gre.stream":             &t.GREStream,
	}
}

// TimeoutNames lists the names Set accepts, sorted.
func TimeoutNames() []string {
	var t Timeouts
	var names []string
	for n := range t.fields() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Set sets the timeout called name (for example "tcp.established").
func (t *Timeouts) Set(name string, d time.Duration) error {
	f, ok := t.fields()[name]
	if !ok {
		return fmt.Errorf("unknown timeout %q", name)
	}
	if d <= 0 {
		return fmt.Errorf("timeout %s must be positive", name)
	}
	*f = d
	return nil
}

// WithDefaults returns t with every zero field replaced by the kernel
// default.
func (t Timeouts) WithDefaults() Timeouts {
	out := t
	def := DefaultTimeouts
	dst, src := out.fields(), def.fields()
	for n, f := range dst {
		if *f == 0 {
			*f = *src[n]
		}
	}
	return out
}
