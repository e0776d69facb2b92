package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/statewall/statewall/pkg/daemon"
)

// runRules is `statewall rules`: the running daemon's rules with their
// counters, as pfctl -vsr shows them.
func runRules(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rules", "[flags]", `Show the running daemon's rules in canonical form, antispoof expanded, each
with its counters, as pfctl -vsr does:

  Evaluations  rule evaluations that reached the rule in file order: every one
               no earlier rule decided (pf's count without skip steps)
  Packets      evaluations the rule decided (a forwarded packet is evaluated
               inbound and outbound when rules say in, out or on)
  Bytes        their bytes, whole IP packets
  States       connection-table entries made for packets it passed

Packets of known connections (established, related) count for no rule.
A reload keeps the counts of the rules it did not change.`, stdout)
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	asJSON := jsonFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "rules"})
	if err != nil {
		return err
	}
	rc := resp.RuleCounters
	if rc == nil {
		return fmt.Errorf("the daemon sent no rule counters (is it older than this command?)")
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rc)
	}
	printRules(stdout, rc)
	if rc.Lost > 0 {
		fmt.Fprintf(stderr, "%d packets counted for no rule: decided by a ruleset two reloads old\n", rc.Lost)
	}
	return nil
}

// printRules prints each rule as pfctl -vsr does: "@N rule", then its
// counters in brackets.
func printRules(w io.Writer, rc *daemon.RuleCounters) {
	for _, r := range rc.Rules {
		fmt.Fprintf(w, "@%d %s\n", r.Number, r.Rule)
		fmt.Fprintf(w, "  [ Evaluations: %-10d Packets: %-10d Bytes: %-12d States: %-6d ]\n",
			r.Evaluations, r.Packets, r.Bytes, r.States)
	}
}
