package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/statewall/statewall/pkg/hasync"
)

// runHA is `statewall ha`: the state sync's offline tools. Its one
// subcommand, keygen, makes the certificates sync peers authenticate
// each other with (pkg/hasync: TLS 1.3, certificates on both ends).
func runHA(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ha", "keygen --dir DIR --nodes NAME,NAME...", `State sync between statewall nodes (run --sync-*): its offline tools.

  statewall ha keygen --dir DIR --nodes a,b

makes a sync CA and a certificate for each node in DIR: ca.crt and ca.key,
then NAME.crt and NAME.key per node (ECDSA P-256, common name and DNS name
the node's name, valid 10 years, keys mode 0600). Give each node ca.crt and
its own pair (run --sync-ca, --sync-cert, --sync-key) and keep ca.key
apart: whoever holds it can make a peer. Run again with new names to add
nodes to an existing DIR (its CA signs them); existing files are never
overwritten.`, stdout)
	dir := fs.String("dir", "", "the `DIR` to write the CA and the node certificates into (made if missing)")
	nodes := fs.String("nodes", "", "the nodes' `NAMES`, comma-separated (host names: letters, digits, '-' and '.')")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "keygen" {
		return usagef("want the subcommand keygen")
	}
	if *dir == "" || *nodes == "" {
		return usagef("keygen needs --dir and --nodes")
	}
	var names []string
	for n := range strings.SplitSeq(*nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if err := hasync.GenerateKeys(*dir, names); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ca.crt, ca.key", *dir)
	for _, n := range names {
		fmt.Fprintf(stdout, ", %s.crt, %s.key", n, n)
	}
	fmt.Fprintf(stdout, "\ncopy %s and a node's own .crt and .key to each node; keep ca.key apart\n", filepath.Join(*dir, "ca.crt"))
	return nil
}
