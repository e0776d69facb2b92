package nfq

import (
	"fmt"
	"slices"
	"strings"
)

// This file turns a DivertConfig into iptables-restore input and reads
// iptables-save output back; it runs no command, so it is tested anywhere.

// ourChains lists every chain name statewall may create for tag, the probe
// chain of DetectBackend included.
func ourChains(tag string) []string {
	return []string{
		hookChain(tag, HookInput),
		hookChain(tag, HookOutput),
		hookChain(tag, HookForward),
		probeChain(tag),
	}
}

func hookChain(tag string, h Hook) string { return tag + "-" + h.chain() }
func probeChain(tag string) string        { return tag + "-PROBE" }

var builtinChains = []string{"INPUT", "OUTPUT", "FORWARD"}

// saved is what a dump of the filter table holds of ours.
type saved struct {
	chains []string // our chains, in dump order
	jumps  []string // our jumps as dumped, "-A" stripped: "INPUT -m comment --comment statewall -j STATEWALL-INPUT"
}

func (s saved) empty() bool { return len(s.chains) == 0 && len(s.jumps) == 0 }

// parseSave reads "iptables-save -t filter" output. A jump to one of our
// chains counts as ours if it sits in a built-in chain and carries our
// comment; inside our own chains it goes with the chain. Any other reference
// is somebody else's rule, which we must not delete and without whose removal
// our chain cannot be: that is an error.
func parseSave(dump, tag string) (saved, error) {
	var s saved
	ours := ourChains(tag)
	table := ""
	for line := range strings.Lines(dump) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			continue
		case table != "filter":
			continue
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if slices.Contains(ours, name) {
				s.chains = append(s.chains, name)
			}
			continue
		case !strings.HasPrefix(line, "-A "):
			continue
		}
		args := splitArgs(line)
		if len(args) < 2 {
			continue
		}
		chain, target := args[1], ruleTarget(args)
		if !slices.Contains(ours, target) || slices.Contains(ours, chain) {
			continue
		}
		if !slices.Contains(builtinChains, chain) || !hasComment(args, comment) {
			return saved{}, fmt.Errorf("nfq: a rule statewall did not make refers to its chain %s (%q): remove it first", target, line)
		}
		s.jumps = append(s.jumps, strings.TrimPrefix(line, "-A "))
	}
	return s, nil
}

// ruleTarget is the chain or target a rule jumps (-j) or goes (-g) to.
func ruleTarget(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-j", "--jump", "-g", "--goto":
			return args[i+1]
		}
	}
	return ""
}

func hasComment(args []string, c string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" && args[i+1] == c {
			return true
		}
	}
	return false
}

// splitArgs splits a saved rule the way iptables-restore does: at spaces,
// except inside double quotes, where a backslash escapes the next character.
func splitArgs(line string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted, escaped := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quoted && r == '\\':
			escaped = true
		case r == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (r == ' ' || r == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// installScript is the one transaction that replaces whatever s holds of
// ours by what cfg asks for: declare (and so create or flush) the chains,
// delete the old jumps and the chains no longer wanted, fill the chains,
// insert the jumps at position 1. cfg must be normalized.
func installScript(cfg DivertConfig, s saved) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	want := make([]string, 0, len(cfg.Hooks))
	for _, h := range cfg.Hooks {
		want = append(want, hookChain(cfg.Tag, h))
		fmt.Fprintf(&b, ":%s - [0:0]\n", hookChain(cfg.Tag, h))
	}
	for _, j := range s.jumps {
		fmt.Fprintf(&b, "-D %s\n", j)
	}
	for _, c := range s.chains {
		if !slices.Contains(want, c) {
			fmt.Fprintf(&b, "-F %s\n-X %s\n", c, c)
		}
	}
	target := fmt.Sprintf("NFQUEUE --queue-num %d", cfg.Queues[0])
	if cfg.Queues[1] != cfg.Queues[0] {
		target = fmt.Sprintf("NFQUEUE --queue-balance %d:%d", cfg.Queues[0], cfg.Queues[1])
	}
	if cfg.FailOpen {
		target += " --queue-bypass"
	}
	for _, h := range cfg.Hooks {
		c := hookChain(cfg.Tag, h)
		if !cfg.Loopback {
			switch h {
			case HookInput:
				fmt.Fprintf(&b, "-A %s -i lo -j RETURN\n", c)
			case HookOutput:
				fmt.Fprintf(&b, "-A %s -o lo -j RETURN\n", c)
			}
		}
		if cfg.SkipMark != 0 {
			fmt.Fprintf(&b, "-A %s -m mark --mark 0x%x/0x%x -j RETURN\n", c, cfg.SkipMark, cfg.SkipMark)
		}
		fmt.Fprintf(&b, "-A %s -j %s\n", c, target)
	}
	for _, h := range cfg.Hooks {
		fmt.Fprintf(&b, "-I %s 1 -m comment --comment %s -j %s\n", h.chain(), comment, hookChain(cfg.Tag, h))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// removeScript deletes our jumps, then our chains; "" if there is nothing
// to remove.
func removeScript(s saved) string {
	if s.empty() {
		return ""
	}
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, j := range s.jumps {
		fmt.Fprintf(&b, "-D %s\n", j)
	}
	for _, c := range s.chains {
		fmt.Fprintf(&b, "-F %s\n-X %s\n", c, c)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// probeScript adds an NFQUEUE rule in a chain nothing jumps to, so no
// packet ever meets it, to learn whether the backend and the kernel accept
// the target; unprobeScript removes it. iptables-restore --test cannot tell:
// it accepted a target this kernel lacks (LED) with a mere warning.
func probeScript(tag string) string {
	c := probeChain(tag)
	return fmt.Sprintf("*filter\n:%s - [0:0]\n-A %s -j NFQUEUE --queue-num 0 --queue-bypass\nCOMMIT\n", c, c)
}

func unprobeScript(tag string) string {
	c := probeChain(tag)
	return fmt.Sprintf("*filter\n-F %s\n-X %s\nCOMMIT\n", c, c)
}

// tool names a command of the backend for a family: tool("iptables-nft",
// true, "restore") is "ip6tables-nft-restore".
func tool(backend string, v6 bool, verb string) string {
	name := backend
	if v6 {
		name = "ip6" + name[len("ip"):]
	}
	if verb != "" {
		name += "-" + verb
	}
	return name
}
