package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
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
// So the daemon becomes such a user while it runs: a table of its own
// holding one rule that references ct state, in a chain that no hook
// calls, so no packet ever runs it. Its only effect is that the namespace
// has conntrack and defragmentation on, as most hosts (NAT, Docker, any ct
// rule) already do. It is removed at a clean stop, and replaced, with the
// leftovers of a crashed run, in one transaction at start.

// defragTable is the name of the table for a tag; nft names cannot be
// quoted in nft 1.0.6, so it starts with a letter whatever the tag is.
func defragTable(tag string) string { return "statewall-defrag-" + tag }

func defragScript(tag string, enable bool) string {
	t := "inet " + defragTable(tag)
	// "table" then "delete table": removes the table if it is there, and
	// does not fail if it is not.
	s := "table " + t + "\ndelete table " + t + "\n"
	if enable {
		s += "table " + t + " {\n\tchain defrag {\n\t\tct state invalid counter\n\t}\n}\n"
	}
	return s
}

// setDefrag installs (enable) or removes the defragmentation table in the
// named network namespace (the caller's if empty), with nft.
func setDefrag(netns, tag string, enable bool) error {
	name, args := "nft", []string{"-f", "-"}
	if netns != "" {
		name, args = "ip", append([]string{"netns", "exec", netns, "nft"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(defragScript(tag, enable))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
