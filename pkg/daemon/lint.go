package daemon

import (
	"strings"

	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/rules"
)

// LintConfig is where a ruleset runs when the daemon diverts at hooks:
// the input hook decides inbound packets, output outbound ones, and
// forward both (a forwarded packet is matched inbound and outbound, as pf
// does); input and output carry the host's own traffic, IPv6 neighbour
// discovery included. ifaces are the host's interfaces, nil if unknown.
func LintConfig(hooks []nfq.Hook, ifaces []rules.Iface) rules.LintConfig {
	if len(hooks) == 0 {
		hooks = nfq.AllHooks
	}
	c := rules.LintConfig{Ifaces: ifaces}
	var names []string
	for _, h := range hooks {
		names = append(names, h.String())
		switch h {
		case nfq.HookInput:
			c.In, c.Local = true, true
		case nfq.HookOutput:
			c.Out, c.Local = true, true
		case nfq.HookForward:
			c.In, c.Out = true, true
		}
	}
	c.Where = "the " + strings.Join(names, ", ") + " hook"
	if len(names) > 1 {
		c.Where += "s"
	}
	return c
}

// where is where the rules see a queued packet: inbound on its input
// interface at the input hook, outbound on its output interface at the
// output hook, and both at the forward hook.
func where(p *nfq.Packet) rules.Where {
	switch p.Hook {
	case nfq.HookInput:
		return rules.Where{Dir: rules.DirIn, In: p.InDev}
	case nfq.HookOutput:
		return rules.Where{Dir: rules.DirOut, Out: p.OutDev}
	case nfq.HookForward:
		return rules.Where{Dir: rules.DirForward, In: p.InDev, Out: p.OutDev}
	}
	return rules.Where{In: p.InDev, Out: p.OutDev}
}
