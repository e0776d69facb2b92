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
}

// DefaultTimeouts are the Linux kernel's defaults.
var DefaultTimeouts = Timeouts{
	TCP:       tcpstate.DefaultTimeouts,
	UDP:       30 * time.Second,
	UDPStream: 120 * time.Second,
	ICMP:      30 * time.Second,
	ICMPv6:    30 * time.Second,
	Generic:   600 * time.Second,
}

// timeoutFields maps the ruleset's names (after the kernel sysctls
// net.netfilter.nf_conntrack_<proto>_timeout_<state>) to the field they set.
func (t *Timeouts) fields() map[string]*time.Duration {
	return map[string]*time.Duration{
		"tcp.syn_sent":       &t.TCP.SynSent,
		"tcp.syn_sent2":      &t.TCP.SynSent2,
		"tcp.syn_recv":       &t.TCP.SynRecv,
		"tcp.established":    &t.TCP.Established,
		"tcp.fin_wait":       &t.TCP.FinWait,
		"tcp.close_wait":     &t.TCP.CloseWait,
		"tcp.last_ack":       &t.TCP.LastAck,
		"tcp.time_wait":      &t.TCP.TimeWait,
		"tcp.close":          &t.TCP.Close,
		"tcp.max_retrans":    &t.TCP.MaxRetrans,
		"tcp.unacknowledged": &t.TCP.Unacknowledged,
		"udp":                &t.UDP,
		"udp.stream":         &t.UDPStream,
		"icmp":               &t.ICMP,
		"icmpv6":             &t.ICMPv6,
		"generic":            &t.Generic,
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
