package daemon

import (
	"context"
	"errors"
	"fmt"

	// Renamed: this package's tests have a helper named command.
	cmdpkg "github.com/statewall/statewall/internal/command"
)

// The stateful engine must see whole datagrams (the precondition of
// engine.Stateful): conntrack labels every fragment invalid, so without
// reassembly a fragmented datagram (a large ping, DNS over UDP with EDNS,
// a tunnel) is dropped, every fragment of it. In the daemon the kernel
// reassembles before the divert rules run, but only in a namespace where
// its defragmentation hooks are registered (priority -400, before raw and
// filter), and the kernel registers them only for a user of connection
// tracking: an iptables NFQUEUE rule is none. Measured on kernel 6.18 in a
// fresh router namespace: "ping -s 3000" through the daemon lost every
// packet; with the table below present, every packet passed, and the
// daemon saw one reassembled datagram per ping.
//
// So the daemon makes the kernel register them while it runs: a table of
// its own holding one rule, in a chain that no hook calls, so no packet
// ever runs it, whose expression needs defragmentation. A tproxy
// statement needs it and nothing else (nft_tproxy enables the IPv4 and
// IPv6 defragmentation hooks when the rule is added); a rule that
// references ct state would also switch on the kernel's own connection
// tracking, which then keeps a second table of every connection beside
// statewall's, with its own limit (nf_conntrack_max) and drops when that
// fills. The ct rule is the fallback for a kernel without nft_tproxy. The
// table is removed at a clean stop, and replaced, with the leftovers of a
// crashed run, in one transaction at start. TestRouterOutboundOnly checks
// that fragmented pings pass and that the kernel tracks nothing.

// defragTable is the name of the table for a tag; nft names cannot be
// quoted in nft 1.0.6, so it starts with a letter whatever the tag is.
func defragTable(tag string) string { return "statewall-defrag-" + tag }

// maxTagLen keeps the longest divert chain name, <Tag>-FORWARD, within
// the 28 characters iptables allows (nfq checks the same length).
const maxTagLen = 28 - len("-FORWARD")

// checkTag reports whether tag is safe in an iptables chain name and in
// the nft script below: 1 to maxTagLen letters, digits, '_' and '-', not
// starting with '-' (iptables would read the chain name as an option). A
// tag is spliced into the script unquoted (nft names cannot be quoted), so
// a newline in it would add commands of its own, run as root.
func checkTag(tag string) error {
	ok := tag != "" && len(tag) <= maxTagLen && tag[0] != '-'
	for i := 0; ok && i < len(tag); i++ {
		c := tag[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("bad tag %q: want 1 to %d letters, digits, '_' or '-', not starting with '-'", tag, maxTagLen)
	}
	return nil
}

// The rules that need defragmentation, preferred first (see above).
var defragRules = []string{"meta l4proto tcp tproxy to :1", "ct state invalid counter"}

func defragScript(tag, rule string) string {
	t := "inet " + defragTable(tag)
	// "table" then "delete table": removes the table if it is there, and
	// does not fail if it is not.
	s := "table " + t + "\ndelete table " + t + "\n"
	if rule != "" {
		s += "table " + t + " {\n\tchain defrag {\n\t\t" + rule + "\n\t}\n}\n"
	}
	return s
}

// setDefrag installs (enable) or removes the defragmentation table in the
// named network namespace (the caller's if empty), with nft. It returns the
// rule it installed.
func setDefrag(netns, tag string, enable bool) (string, error) {
	// Config.check has refused a bad tag already; this is the last line
	// before the tag reaches a script run as root.
	if err := checkTag(tag); err != nil {
		return "", err
	}
	if !enable {
		return "", runNft(netns, defragScript(tag, ""))
	}
	var errs []error
	for _, rule := range defragRules {
		err := runNft(netns, defragScript(tag, rule))
		if err == nil {
			return rule, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// runNft runs an nft script in the named network namespace (the caller's
// if empty).
func runNft(netns, script string) error {
	_, err := cmdpkg.Run(context.Background(), cmdpkg.Cmd{Netns: netns, Stdin: script}, "nft", "-f", "-")
	return err
}
