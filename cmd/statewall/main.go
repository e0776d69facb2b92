// Command statewall is a stateful packet filter that runs in userspace. One
// ruleset is evaluated two ways, stateless and stateful, on the same
// packets; see `statewall help`.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name, args, short string
	run               func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"replay", "[flags] FILE...", "judge every packet of pcap/pcapng files, stateless and stateful, and compare", runReplay},
		{"run", "--rules FILE [flags]", "run the firewall on this host: divert to NFQUEUE and enforce (root)", runRun},
		{"status", "[flags]", "show the running daemon's mode, ruleset and counters", runStatus},
		{"conntrack", "[flags]", "list, delete or flush the running daemon's connections, or follow their events (--events)", runConntrack},
		{"rules", "[flags]", "show the running daemon's rules with their counters (evaluations, packets, bytes, states)", runRules},
		{"reload", "[flags]", "make the running daemon reload its rules file", runReload},
		{"table", "[flags] [NAME [OP] [ADDR...]]", "list, show, test or change the running daemon's tables at run time", runTable},
		{"log", "[flags]", "show the packets the running daemon logs, live (-w: as a pcap tcpdump reads)", runLog},
		{"ha", "keygen --dir DIR --nodes NAMES", "state sync's tools: make the sync CA and the nodes' certificates (keygen)", runHA},
		{"bench", "--rules FILE [flags] [PCAP...]", "measure ns/packet of decode, stateless, stateful and compare, offline", runBench},
		{"check", "FILE", "validate a ruleset and print it back normalised", runCheck},
		{"completion", "bash|zsh", "print the shell completion script for bash or zsh", runCompletion},
		{"version", "", "print the version (also: statewall --version)", runVersion},
		{"help", "[COMMAND]", "show help", runHelp},
	}
}

// errUsage marks an error caused by how statewall was called; main prints
// it with a hint and exits 2.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string   { return e.msg }
func (e usageError) Is(t error) bool { return t == errUsage }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		usage(stdout)
		return 0
	}
	if name == "--version" || name == "-version" {
		name, args = "version", append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands {
		if c.name == name {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "statewall %s: %v\nRun 'statewall help %s' for usage.\n", name, err, name)
				return 2
			case errors.Is(err, errReported):
				return 1
			}
			fmt.Fprintf(stderr, "statewall %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "statewall: unknown command %q\n", name)
	usage(stderr)
	return 2
}

// errReported means the command already printed its error.
var errReported = errors.New("reported")

func usage(w io.Writer) {
	fmt.Fprintf(w, `statewall: a stateful packet filter in userspace.

One ruleset, evaluated two ways on the same packets: stateless (every packet
judged alone by the rules) and stateful (connection tracking in front of the
same rules, like the kernel's ct state).

Usage:
  statewall COMMAND [ARGS]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.short)
	}
	fmt.Fprintf(w, "\nRun 'statewall help COMMAND' for a command's flags.\n")
}

func runHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"-h"}, stdout, stderr)
		}
	}
	if args[0] == "help" {
		usage(stdout)
		return nil
	}
	return usagef("unknown command %q", args[0])
}

// parseFlags parses a command's flags. A bad flag is a usage error: run
// prints it on stderr with the hint and exits 2, and stdout, which may be
// piped into another tool, stays clean (the flag package would print the
// error and the usage on fs's output). -h prints the usage and stays
// flag.ErrHelp (exit 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := parseInterleaved(fs, args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	}
	return usageError{err.Error()}
}

// parseInterleaved parses flags wherever they stand among the arguments
// (`statewall table blocklist add 198.18.0.1 --socket S`), as users of
// other tools expect; the flag package alone stops at the first argument.
// After "--" everything is an argument. fs.Args() then holds the
// arguments in order.
func parseInterleaved(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// jsonFlags registers --format text|json and its shorthand --json, the
// same on every command that prints structured output; it reports
// whether JSON was asked for.
func jsonFlags(fs *flag.FlagSet) *bool {
	asJSON := new(bool)
	fs.BoolVar(asJSON, "json", false, "print JSON (the same as --format json)")
	fs.Func("format", "output `FORMAT`: text (default) or json", func(s string) error {
		switch s {
		case "text":
			*asJSON = false
		case "json":
			*asJSON = true
		default:
			return fmt.Errorf("unknown format %q (want text or json)", s)
		}
		return nil
	})
	return asJSON
}

// flagSetMade, if set, is told of each flag set newFlagSet makes: the
// completion scripts and the man page read the commands' flags and help
// from them (see commandHelp).
var flagSetMade func(fs *flag.FlagSet, args, doc string)

// newFlagSet returns a flag set whose -h prints the command's usage to out
// and whose errors come back to the caller instead of exiting.
func newFlagSet(name, args, doc string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	if flagSetMade != nil {
		flagSetMade(fs, args, doc)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: statewall %s %s\n\n%s\n", name, args, doc)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}
