package nfq

// This file builds the nft script of the defragmentation table; it runs no
// command, so it is tested anywhere. EnableDefrag and DisableDefrag
// (defrag_linux.go) run it.
//
// The stateful engine must see whole datagrams (the precondition of
// engine.Stateful): conntrack labels every fragment invalid, so without
// reassembly a fragmented datagram (a large ping, DNS over UDP with EDNS,
// a tunnel) is dropped, every fragment of it. The kernel reassembles
// before the divert rules run, but only in a namespace where its
// defragmentation hooks are registered (priority -400, before raw and
// filter), and the kernel registers them only for a user of connection
// tracking: an iptables NFQUEUE rule is none. Measured on kernel 6.18 in a
// fresh router namespace: "ping -s 3000" through the daemon lost every
// packet; with the table below present, every packet passed, and the
// daemon saw one reassembled datagram per ping.
//
// So EnableDefrag makes the kernel register them: a table of statewall's
// own holding one rule, in a chain that no hook calls, so no packet ever
// runs it, whose expression needs defragmentation. A tproxy statement
// needs it and nothing else (nft_tproxy enables the IPv4 and IPv6
// defragmentation hooks when the rule is added); a rule that references
// ct state would also switch on the kernel's own connection tracking,
// which then keeps a second table of every connection beside statewall's,
// with its own limit (nf_conntrack_max) and drops when that fills. The ct
// rule is the fallback for a kernel without nft_tproxy. The daemon removes
// the table at a clean stop, and replaces it, with the leftovers of a
// crashed run, in one transaction at start. pkg/daemon's
// TestRouterOutboundOnly checks that fragmented pings pass and that the
// kernel tracks nothing.

// DefragTable is the name of the defragmentation table for a tag (empty:
// "STATEWALL"), in the inet family. nft names cannot be quoted in nft
// 1.0.6, so it starts with a letter whatever the tag is.
func DefragTable(tag string) string {
	if tag == "" {
		tag = defaultTag
	}
	return "statewall-defrag-" + tag
}

// defragRules are the rules that need defragmentation, preferred first
// (see above).
var defragRules = []string{"meta l4proto tcp tproxy to :1", "ct state invalid counter"}

// defragScript replaces the table for tag by one holding rule, or, with
// rule empty, removes it. tag must have passed CheckTag: it is spliced in
// unquoted.
func defragScript(tag, rule string) string {
	t := "inet " + DefragTable(tag)
	// "table" then "delete table": removes the table if it is there, and
	// does not fail if it is not.
	s := "table " + t + "\ndelete table " + t + "\n"
	if rule != "" {
		s += "table " + t + " {\n\tchain defrag {\n\t\t" + rule + "\n\t}\n}\n"
	}
	return s
}
