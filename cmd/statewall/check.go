package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/statewall/statewall/pkg/daemon"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/rules"
)

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "[flags] FILE", `Validate a ruleset. On success print it back in normal form (which parses
back to the same ruleset) and exit 0; otherwise print file:line:col: message
and exit 1. Checking reads the file only: it is safe on untrusted input.
FILE - reads the ruleset from standard input.

Warnings (file:line:col: warning: ...) go to stderr for rules that can never
match where they would run (--hooks, the daemon's default unless given): an
'in' rule when no hook decides inbound packets, 'on' an interface this host
does not have (it may appear later), an empty ruleset, and on the input and
output hooks an IPv6 ruleset that blocks neighbour discovery. --strict makes
them errors (exit 1).

--expand prints the rules as they are matched instead, numbered as in logs
and status, antispoof expanded with the addresses this host's interfaces
have now.`, stdout)
	quiet := fs.Bool("q", false, "print nothing on success")
	hooks := fs.String("hooks", "input,output,forward", "the netfilter `HOOKS` the ruleset will run on, as 'run --hooks'")
	strict := fs.Bool("strict", false, "treat warnings as errors")
	expand := fs.Bool("expand", false, "print the expanded, numbered rules (antispoof with this host's addresses)")
	noHost := fs.Bool("no-host", false, "do not look at this host's interfaces (no warnings about missing ones; --expand leaves antispoof unfilled)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one rules file, got %d arguments", fs.NArg())
	}
	hs, err := nfq.ParseHooks(*hooks)
	if err != nil {
		return usagef("--hooks: %v", err)
	}
	var rs *rules.Ruleset
	if fs.Arg(0) == "-" {
		// The ruleset on standard input; includes and table files are
		// relative to the working directory.
		var src []byte
		if src, err = io.ReadAll(io.LimitReader(os.Stdin, rules.MaxFileSize+1)); err == nil {
			rs, err = rules.Parse("stdin", src)
		}
	} else {
		rs, err = rules.ParseFile(fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	var ifs []rules.Iface
	if !*noHost {
		if ifs, err = hostIfaces(); err != nil {
			fmt.Fprintf(stderr, "statewall check: cannot list this host's interfaces (%v): not checking the interfaces rules name\n", err)
		}
	}
	ws := rs.Lint(daemon.LintConfig(hs, ifs))
	for _, w := range ws {
		fmt.Fprintln(stderr, w)
	}
	if *strict && len(ws) > 0 {
		fmt.Fprintf(stderr, "statewall check: %d warning(s), and --strict makes them errors\n", len(ws))
		return errReported
	}
	if *quiet {
		return nil
	}
	if *expand {
		if ifs != nil {
			rs = rs.Bind(ifs)
		}
		fmt.Fprint(stdout, rs.Expanded())
		return nil
	}
	fmt.Fprint(stdout, rs.String())
	return nil
}

// hostIfaces lists this host's interfaces with their addresses, once
// (the daemon follows changes through netlink instead).
func hostIfaces() ([]rules.Iface, error) {
	nifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	ifs := make([]rules.Iface, 0, len(nifs))
	var errs []error
	for _, n := range nifs {
		f := rules.Iface{Index: uint32(n.Index), Name: n.Name}
		addrs, err := n.Addrs()
		if err != nil {
			errs = append(errs, err)
		}
		for _, a := range addrs {
			if in, ok := a.(*net.IPNet); ok {
				ip, ok := netip.AddrFromSlice(in.IP)
				ones, _ := in.Mask.Size()
				if ok {
					ip = ip.Unmap()
					f.Addrs = append(f.Addrs, netip.PrefixFrom(ip, ones))
				}
			}
		}
		ifs = append(ifs, f)
	}
	return ifs, errors.Join(errs...)
}
