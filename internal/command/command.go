// Package command runs the system tools statewall drives (ip, nft,
// iptables, conntrack) and its tests drive (ping, socat, the statewall
// binary): one command, optionally inside a named network namespace, always
// with a deadline, and, when it fails, an error that says what ran and what
// the tool printed about it. Commands are run directly, never through a
// shell, so arguments need no quoting.
package command

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// DefaultTimeout bounds a command whose Cmd has no Timeout. These tools
// finish in milliseconds; a hung one (a held xtables lock, a stuck netlink
// request) must fail the caller, not hang the daemon or a test forever.
const DefaultTimeout = 30 * time.Second

// waitDelay is how long Run waits, after the deadline killed the command,
// for its output pipes to close: a grandchild that inherited them (a tool
// that forks) would otherwise keep Run blocked past the deadline.
const waitDelay = time.Second

// Cmd says how to run a command. The zero value runs it in the caller's
// network namespace, with no input, for at most DefaultTimeout.
type Cmd struct {
	// Netns is the named network namespace (ip netns add) to run in, with
	// "ip netns exec"; empty for the caller's.
	Netns string
	// Stdin is the command's standard input (an nft or iptables-restore
	// script); empty for none.
	Stdin string
	// Timeout bounds the run; zero means DefaultTimeout. A deadline of the
	// context passed to Run applies as well, whichever comes first.
	Timeout time.Duration
}

// Run runs name with args as c says and returns its standard output. The
// output is returned also when the command fails: some tools report by
// exit status and still print a result (ping: 1 for losses).
//
// The error names the command line (with "ip netns exec NS" when c.Netns is
// set), wraps the error of os/exec (an *exec.ExitError if the command ran
// and failed, and the context's error too if the deadline or a cancellation
// stopped it) and ends with the trimmed standard error, or the standard
// output if that is empty, for tools that explain themselves there.
func Run(ctx context.Context, c Cmd, name string, args ...string) (string, error) {
	out, _, err := Output(ctx, c, name, args...)
	return out, err
}

// Output is Run that also returns the standard error, whether or not the
// command failed, for callers that check what a tool said.
func Output(ctx context.Context, c Cmd, name string, args ...string) (stdout, stderr string, err error) {
	if c.Netns != "" {
		name, args = InNetns(c.Netns, name, args...)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if c.Stdin != "" {
		cmd.Stdin = strings.NewReader(c.Stdin)
	}
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	cmd.WaitDelay = waitDelay
	if err = cmd.Run(); err != nil {
		line := strings.Join(append([]string{name}, args...), " ")
		// A killed command reports only "signal: killed"; say why.
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		detail := strings.TrimSpace(errb.String())
		if detail == "" {
			detail = strings.TrimSpace(outb.String())
		}
		if detail == "" {
			err = fmt.Errorf("%s: %w", line, err)
		} else {
			err = fmt.Errorf("%s: %w: %s", line, err, detail)
		}
	}
	return outb.String(), errb.String(), err
}

// InNetns returns the command line that runs name with args inside the
// named network namespace ns: "ip netns exec ns name args...". It is for
// callers that start the process themselves (background servers, pipes);
// Cmd.Netns does the same for Run.
func InNetns(ns, name string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", ns, name}, args...)
}
