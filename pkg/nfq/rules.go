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
		offloadChain(tag),
		probeChain(tag),
	}
}

func hookChain(tag string, h Hook) string { return tag + "-" + h.chain() }
func probeChain(tag string) string        { return tag + "-PROBE" }
func offloadChain(tag string) string      { return tag + "-OFFLOAD" }

// offloadAt is where the offload bit of a packet statewall passed is saved
// into its connection's mark, for packets diverted at h: a table and
// built-in chain that runs after the host's filter table, so that a
// connection is handed to the kernel only once a packet of it passed
// both (see doc.go, "Offload").
func (h Hook) offloadAt() (table, chain string) {
	if h == HookOutput {
		return tableMangle, "POSTROUTING" // after security OUTPUT, where output is diverted
	}
	return tableSecurity, h.chain() // security INPUT, FORWARD: after filter
}

// The tables the divert chains live in, and the priorities they run at
// (see doc.go, "Where statewall runs", for why these): a hook's packets
// meet statewall in the table of Hook.table.
const (
	tableMangle   = "mangle"   // input and forward: priority -150, before filter (0)
	tableSecurity = "security" // output: after nat (-100) and filter (0); 50 legacy, 150 iptables-nft
	tableFilter   = "filter"   // the probe; and the divert chains of statewall before #14
)

// table is the table of the hook's divert chain and jump.
func (h Hook) table() string {
	if h == HookOutput {
		return tableSecurity
	}
	return tableMangle
}

// ourTables are the tables a dump is searched for what is ours, in the
// order a script changes them: those that divert first, the table of the
// old layout last, so that an upgrade diverts twice for a moment rather
// than not at all.
var ourTables = []string{tableMangle, tableSecurity, tableFilter}

// builtinChains are the built-in chains of those tables.
var builtinChains = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// saved is what a dump holds of ours, by table.
type saved map[string]tableSaved

// tableSaved is what one table holds of ours.
type tableSaved struct {
	chains []string // our chains, in dump order
	jumps  []string // our jumps as dumped, "-A" stripped: "INPUT -m comment --comment statewall -j STATEWALL-INPUT"
}

func (s saved) empty() bool {
	for _, t := range s {
		if len(t.chains) > 0 || len(t.jumps) > 0 {
			return false
		}
	}
	return true
}

// parseSave reads "iptables-save" output (all tables). A jump to one of
// our chains counts as ours if it sits in a built-in chain and carries our
// comment; inside our own chains it goes with the chain. Any other
// reference is somebody else's rule, which we must not delete and without
// whose removal our chain cannot be: that is an error. Tables other than
// ourTables are not read.
func parseSave(dump, tag string) (saved, error) {
	s := saved{}
	ours := ourChains(tag)
	table := ""
	for line := range strings.Lines(dump) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			continue
		case !slices.Contains(ourTables, table):
			continue
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if slices.Contains(ours, name) {
				t := s[table]
				t.chains = append(t.chains, name)
				s[table] = t
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
			return nil, fmt.Errorf("nfq: a rule statewall did not make refers to its chain %s in table %s (%q): remove it first", target, table, line)
		}
		t := s[table]
		t.jumps = append(t.jumps, strings.TrimPrefix(line, "-A "))
		s[table] = t
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

// installScript replaces whatever s holds of ours by what cfg asks for,
// in one transaction per table (iptables-restore commits each "*table"
// block on its own, in both backends): in each table that diverts,
// declare (and so create or flush) the chains, delete the old jumps and
// the chains no longer wanted, fill the chains, and append the jumps at
// the end of the built-in chains; then, in the tables that no longer
// divert, delete what is left. Every hook's jump is replaced within one
// transaction, so no packet goes undiverted. cfg must be normalized.
func installScript(cfg DivertConfig, s saved) string {
	var b strings.Builder
	lay := layout(cfg)
	var later []string
	for _, table := range ourTables {
		t, ok := lay[table]
		if !ok {
			later = append(later, table)
			continue
		}
		fmt.Fprintf(&b, "*%s\n", table)
		want := make([]string, 0, len(t.chains))
		for _, c := range t.chains {
			want = append(want, c.name)
			fmt.Fprintf(&b, ":%s - [0:0]\n", c.name)
		}
		writeRemoval(&b, s[table], want)
		for _, c := range t.chains {
			for _, r := range c.rules {
				fmt.Fprintf(&b, "-A %s %s\n", c.name, r)
			}
		}
		for _, j := range t.jumps {
			fmt.Fprintf(&b, "-A %s -m comment --comment %s -j %s\n", j.from, comment, j.to)
		}
		b.WriteString("COMMIT\n")
	}
	for _, table := range later {
		writeTableRemoval(&b, table, s[table])
	}
	return b.String()
}

// tableLayout is what one table holds of ours: chains with their rules,
// and the jumps to them from the built-in chains, in order.
type tableLayout struct {
	chains []chainLayout
	jumps  []jumpLayout
}

type chainLayout struct {
	name  string
	rules []string // rule specifications, without "-A chain"
}

type jumpLayout struct{ from, to string }

// layout is what cfg asks for, by table. cfg must be normalized.
func layout(cfg DivertConfig) map[string]*tableLayout {
	lay := map[string]*tableLayout{}
	at := func(table string) *tableLayout {
		if lay[table] == nil {
			lay[table] = &tableLayout{}
		}
		return lay[table]
	}
	queue := queueRules(cfg)
	for _, h := range cfg.Hooks {
		c := chainLayout{name: hookChain(cfg.Tag, h)}
		if !cfg.Loopback {
			switch h {
			case HookInput:
				c.rules = append(c.rules, "-i lo -j RETURN")
			case HookOutput:
				c.rules = append(c.rules, "-o lo -j RETURN")
			}
		}
		if cfg.SkipMark != 0 {
			c.rules = append(c.rules, fmt.Sprintf("-m mark --mark 0x%x/0x%x -j RETURN", cfg.SkipMark, cfg.SkipMark))
		}
		if cfg.OffloadMark != 0 {
			c.rules = append(c.rules, fmt.Sprintf("-m connmark --mark 0x%x/0x%x -j RETURN", cfg.OffloadMark, cfg.OffloadMark))
		}
		c.rules = append(c.rules, queue...)
		t := at(h.table())
		t.chains = append(t.chains, c)
		t.jumps = append(t.jumps, jumpLayout{h.chain(), c.name})
	}
	if cfg.OffloadMark != 0 {
		m := fmt.Sprintf("0x%x", cfg.OffloadMark)
		save := chainLayout{name: offloadChain(cfg.Tag), rules: []string{
			"-m mark --mark " + m + "/" + m + " -j CONNMARK --save-mark --nfmask " + m + " --ctmask " + m,
			"-m mark --mark " + m + "/" + m + " -j MARK --set-xmark 0x0/" + m,
		}}
		for _, h := range cfg.Hooks {
			table, chain := h.offloadAt()
			t := at(table)
			if !slices.ContainsFunc(t.chains, func(c chainLayout) bool { return c.name == save.name }) {
				t.chains = append(t.chains, save)
			}
			t.jumps = append(t.jumps, jumpLayout{chain, save.name})
		}
	}
	return lay
}

// queueRules are the rules that end a divert chain: the NFQUEUE rule, or
// for SpreadFlow over several queues the flow hash and a rule per queue.
func queueRules(cfg DivertConfig) []string {
	bypass := ""
	if cfg.FailOpen {
		bypass = " --queue-bypass"
	}
	first, last := int(cfg.Queues[0]), int(cfg.Queues[1])
	n := last - first + 1
	balance := fmt.Sprintf("-j NFQUEUE --queue-balance %d:%d%s", first, last, bypass)
	switch {
	case n == 1:
		return []string{fmt.Sprintf("-j NFQUEUE --queue-num %d%s", first, bypass)}
	case cfg.Spread == SpreadCPU:
		return []string{balance + " --queue-cpu-fanout"}
	case cfg.Spread == SpreadAddr || n > MaxFlowQueues:
		return []string{balance}
	}
	// HMARK sets the whole mark: packets that carry a mark of the
	// host's keep it and are spread by address; the others are hashed
	// and go to the queue their mark names. A packet HMARK finds no
	// header in keeps mark 0 and goes to the first queue.
	rs := []string{
		"-m mark ! --mark 0x0 " + balance,
		fmt.Sprintf("-j HMARK --hmark-tuple src,dst,sport,dport,proto --hmark-mod %d --hmark-offset 0x%x --hmark-rnd 0x%x", n, FlowMarkBase, cfg.seed),
	}
	for i := range n {
		rs = append(rs, fmt.Sprintf("-m mark --mark 0x%x -j NFQUEUE --queue-num %d%s", FlowMark(i), first+i, bypass))
	}
	return append(rs, fmt.Sprintf("-j NFQUEUE --queue-num %d%s", first, bypass))
}

// writeRemoval writes the deletion of t's jumps, then of its chains
// except those in keep.
func writeRemoval(b *strings.Builder, t tableSaved, keep []string) {
	for _, j := range t.jumps {
		fmt.Fprintf(b, "-D %s\n", j)
	}
	for _, c := range t.chains {
		if !slices.Contains(keep, c) {
			fmt.Fprintf(b, "-F %s\n-X %s\n", c, c)
		}
	}
}

// writeTableRemoval writes a transaction deleting what table holds of
// ours, t, if anything.
func writeTableRemoval(b *strings.Builder, table string, t tableSaved) {
	if len(t.chains) == 0 && len(t.jumps) == 0 {
		return
	}
	fmt.Fprintf(b, "*%s\n", table)
	writeRemoval(b, t, nil)
	b.WriteString("COMMIT\n")
}

// removeScript deletes our jumps, then our chains, one transaction per
// table; "" if there is nothing to remove.
func removeScript(s saved) string {
	var b strings.Builder
	for _, table := range ourTables {
		writeTableRemoval(&b, table, s[table])
	}
	return b.String()
}

// emptyNFTTable reads "nft list table" output and reports whether the
// table holds nothing but base chains without rules whose policy is
// accept, as iptables-nft leaves a table after its last rule is deleted;
// chains are their names. Such a table lets every packet through, so
// deleting it changes nothing but the listing.
func emptyNFTTable(list string) (chains []string, empty bool) {
	base := true // the last chain opened has its hook line
	for line := range strings.Lines(list) {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, "table "):
		case line == "}":
			if !base {
				return nil, false // a regular chain: somebody else's
			}
		case strings.HasPrefix(line, "chain ") && strings.HasSuffix(line, " {"):
			chains = append(chains, strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {"))
			base = false
		case !base && (strings.HasPrefix(line, "type filter hook ") || strings.HasPrefix(line, "type route hook ")) &&
			strings.HasSuffix(line, "policy accept;"):
			base = true
		default:
			return nil, false
		}
	}
	return chains, true
}

// dropTableScript deletes family's table if its chains are still empty:
// deleting a chain that holds a rule fails (EBUSY), and with it the whole
// transaction.
func dropTableScript(family, table string, chains []string) string {
	var b strings.Builder
	for _, c := range chains {
		fmt.Fprintf(&b, "delete chain %s %s %s\n", family, table, c)
	}
	fmt.Fprintf(&b, "delete table %s %s\n", family, table)
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

// probeFlowScript adds, in the same chain nothing jumps to, the rules
// SpreadFlow needs (HMARK and a mark match), and offload's (connmark,
// CONNMARK, MARK) if offload is set: the kernel may lack either.
func probeFlowScript(tag string, flow, offload bool) string {
	c := probeChain(tag)
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", c)
	if flow {
		fmt.Fprintf(&b, "-A %s -j HMARK --hmark-tuple src,dst,sport,dport,proto --hmark-mod 2 --hmark-offset 0x%x --hmark-rnd 0x1\n", c, FlowMarkBase)
		fmt.Fprintf(&b, "-A %s -m mark --mark 0x%x -j NFQUEUE --queue-num 0 --queue-bypass\n", c, FlowMarkBase)
	}
	if offload {
		fmt.Fprintf(&b, "-A %s -m connmark --mark 0x1000/0x1000 -j RETURN\n", c)
		fmt.Fprintf(&b, "-A %s -m mark --mark 0x1000/0x1000 -j CONNMARK --save-mark --nfmask 0x1000 --ctmask 0x1000\n", c)
		fmt.Fprintf(&b, "-A %s -j MARK --set-xmark 0x0/0x1000\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.String()
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
