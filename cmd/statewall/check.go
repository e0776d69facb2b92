package main

import (
	"fmt"
	"io"

	"github.com/statewall/statewall/pkg/rules"
)

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "FILE", `Validate a ruleset. On success print it back in normal form (which parses
back to the same ruleset) and exit 0; otherwise print file:line:col: message
and exit 1. Checking reads the file only: it is safe on untrusted input.`, stdout)
	quiet := fs.Bool("q", false, "print nothing on success")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one rules file, got %d arguments", fs.NArg())
	}
	rs, err := rules.ParseFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	if !*quiet {
		fmt.Fprint(stdout, rs.String())
	}
	return nil
}
