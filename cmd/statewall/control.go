package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/daemon"
	"github.com/statewall/statewall/pkg/hasync"
	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/table"
)

// The commands that talk to a running daemon through its control socket
// (daemon.Ask): status, conntrack, reload, log.

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "[flags]", "Show the running daemon's mode, ruleset and counters.", stdout)
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	asJSON := jsonFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "status"})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(resp.Status)
	}
	printStatus(stdout, resp.Status)
	return nil
}

func printStatus(w io.Writer, s *daemon.Status) {
	fmt.Fprintf(w, "mode:      %s (fail-open: %v)\n", s.Mode, s.FailOpen)
	fmt.Fprintf(w, "rules:     %s, %d rules, loaded %s\n", s.RulesFile, s.Rules, s.Loaded.Format(time.RFC3339))
	fmt.Fprintf(w, "hooks:     %s", strings.Join(s.Hooks, ","))
	if s.Netns != "" {
		fmt.Fprintf(w, " in netns %s", s.Netns)
	}
	fmt.Fprintf(w, "\nuptime:    %s\n", time.Since(s.Started).Round(time.Second))
	fmt.Fprintf(w, "packets:   %d pass, %d block\n", s.Pass, s.Block)
	keys := make([]string, 0, len(s.ByReason))
	for k := range s.ByReason {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-22s %d\n", k, s.ByReason[k])
	}
	if s.Shadow != nil {
		fmt.Fprintf(w, "shadow disagreements:\n")
		keys = keys[:0]
		for k := range s.Shadow {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-34s %d\n", k, s.Shadow[k])
		}
	}
	c := s.Conntrack
	fmt.Fprintf(w, "conntrack: %d of %d entries; inserted %d, evicted %d, refused %d, expired %d, deleted %d, invalid packets %d\n",
		c.Entries, s.Limit, c.Inserted, c.Evicted, c.Refused, c.Expired, c.Deleted, c.Invalid)
	if c.Restored > 0 || c.Liberal > 0 || s.Pickups > 0 {
		fmt.Fprintf(w, "restart:   %d entries restored, %d packets accepted by liberal windows, %d connections picked up mid-stream\n",
			c.Restored, c.Liberal, s.Pickups)
	}
	for _, q := range s.Queues {
		fmt.Fprintf(w, "queue %d:   %d packets, %d accepted, %d dropped, %d ENOBUFS, %d errors",
			q.Queue, q.Packets, q.Accepted, q.Dropped, q.ENOBUFS, q.Errors)
		if q.Held > 0 {
			fmt.Fprintf(w, ", %d held for sync", q.Held)
		}
		fmt.Fprintln(w)
	}
	if sy := s.Sync; sy != nil {
		printSync(w, sy, &c)
	}
	if o := s.Offload; o != nil {
		fmt.Fprintf(w, "offload:   %d connections carried by the kernel now (their packets not seen); offloaded %d, ended %d, handed back %d, ends learnt without an event %d, errors %d\n",
			o.Active, o.Offloaded, o.Ended, o.Returned, o.Lost, o.Errors)
	}
	if src := s.Sources; src != nil && (src.Nodes > 0 || src.Inserted > 0) {
		fmt.Fprintf(w, "sources:   %d of %d nodes; inserted %d, expired %d; past max-src-conn %d, past the rate %d, overloads %d",
			src.Nodes, src.Limit, src.Inserted, src.Expired, src.ConnLimit, src.RateLimit, src.Overloads)
		for _, k := range []string{"max", "max-src-nodes", "max-src-states", "src-nodes-limit"} {
			if n := src.Refused[k]; n > 0 {
				fmt.Fprintf(w, ", refused by %s %d", k, n)
			}
		}
		fmt.Fprintln(w)
	}
	if r := s.Replies; r != nil {
		fmt.Fprintf(w, "replies:   %d sent (block return), %d rate-limited, %d dropped, %d errors\n", r.Sent, r.RateLimited, r.Dropped, r.Errors)
	}
	if l := s.Log; l != nil {
		file := l.File
		if file == "" {
			file = "no file"
		}
		fmt.Fprintf(w, "log:       %d packets logged (%s), %d dropped (buffer full), %d write errors, %d live readers\n",
			l.Logged, file, l.Dropped, l.WriteErrors, l.Subscribers)
	}
}

func runLog(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("log", "[flags]", `Show the packets the running daemon logs, live, as they are decided (what
'tcpdump -n -e -i pflog0' shows on pf): every packet decided by a rule with
'log', and every packet of a connection a 'log (all)' rule created. One line
a packet: rule N/0(match): pass|block in|out on IFACE: the packet.

-w FILE writes the PFLOG capture instead (-w - to stdout), for
'statewall log -w - | tcpdump -n -e -r -'. The daemon's log file
(run --log-file) holds the same records.`, stdout)
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	write := fs.String("w", "", "write the raw PFLOG capture to `FILE` (- for stdout) instead of lines")
	count := fs.Int("c", 0, "stop after `N` packets (0: run until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	st, err := daemon.LogStream(*socket)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); st.Close() }()
	rd, err := pflog.NewReader(st)
	if err != nil {
		return fmt.Errorf("reading the log stream: %w", err)
	}
	var out *pflog.Writer
	if *write != "" {
		var f io.Writer = stdout
		if *write != "-" {
			fh, err := os.OpenFile(*write, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			defer fh.Close()
			f = fh
		}
		if out, err = pflog.NewWriter(f); err != nil {
			return err
		}
	}
	var rec pflog.Record
	for n := 0; *count == 0 || n < *count; n++ {
		if err := rd.Next(&rec); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the log stream: %w", err)
		}
		if out != nil {
			if err := out.Write(&rec); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(stdout, pflog.Format(&rec))
	}
	return nil
}

func runReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reload", "[flags]", `Make the running daemon read its rules file again (as SIGHUP does). A file
with errors is rejected, with its error, and the old ruleset keeps running.`, stdout)
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "reload"})
	if err != nil {
		return err
	}
	for _, w := range resp.Warnings {
		fmt.Fprintln(stderr, w)
	}
	fmt.Fprintf(stdout, "reloaded %s: %d rules\n", resp.Status.RulesFile, resp.Status.Rules)
	return nil
}

func runTable(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("table", "[flags] [NAME [show|add|delete|replace|flush|test|zero] [ADDR...]]", `List the running daemon's tables, or show, test or change one at run time,
as pfctl -t does: no reload, and the next packet sees the change.

  statewall table                          every table: entries, hits/evaluations
  statewall table NAME [show]              its entries
  statewall table NAME add ADDR...         add addresses or prefixes (198.18.9.0/24)
  statewall table NAME delete ADDR...      delete them
  statewall table NAME replace ADDR...     make them its whole content (-f FILE: one a line)
  statewall table NAME flush               empty it
  statewall table NAME test ADDR...        which entry holds each address
  statewall table NAME zero                zero its hit counters

A change with an address that does not parse, past the table's limit, or
of a const table, is refused whole and changes nothing. A reload keeps a
table's run-time content unless its definition in the rules file changed.`, stdout)
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	file := fs.String("f", "", "replace: read the addresses from `FILE`, one address or prefix a line, # comments")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req := daemon.TableRequest{}
	if fs.NArg() > 0 {
		req.Name = fs.Arg(0)
		req.Op = "show"
	}
	if fs.NArg() > 1 {
		req.Op = fs.Arg(1)
		req.Addrs = fs.Args()[2:]
	}
	if *file != "" {
		if req.Op != "replace" && req.Op != "add" && req.Op != "delete" {
			return usagef("-f goes with replace, add or delete")
		}
		ps, err := table.ParseFile(*file)
		if err != nil {
			return err
		}
		for _, p := range ps {
			req.Addrs = append(req.Addrs, p.String())
		}
	}
	resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "table", Table: req})
	if err != nil {
		return err
	}
	if req.Name == "" {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tENTRIES\tHITS\tEVALUATIONS\tFLAGS")
		for _, t := range resp.Tables {
			var flags []string
			if t.Const {
				flags = append(flags, "const")
			}
			if t.Persist {
				flags = append(flags, "persist")
			}
			fmt.Fprintf(tw, "<%s>\t%d\t%d\t%d\t%s\n", t.Name, t.Entries, t.Hits, t.Evaluations, strings.Join(flags, ","))
		}
		return tw.Flush()
	}
	t := resp.Tables[0]
	switch req.Op {
	case "show":
		for _, a := range t.Addrs {
			fmt.Fprintln(stdout, a)
		}
	case "test":
		missing := 0
		for i, a := range req.Addrs {
			if t.Addrs[i] == "" {
				fmt.Fprintf(stdout, "%s: not in <%s>\n", a, t.Name)
				missing++
			} else {
				fmt.Fprintf(stdout, "%s: in <%s> as %s\n", a, t.Name, t.Addrs[i])
			}
		}
		if missing > 0 {
			return errReported
		}
	default:
		fmt.Fprintf(stdout, "<%s>: %s %d, now %d entries\n", t.Name, req.Op, t.Changed, t.Entries)
	}
	return nil
}

// printSync is status's state sync part: the node, each peer link, the
// deferrals and what the table made of the peers' records.
func printSync(w io.Writer, sy *hasync.Stats, c *conntrack.Stats) {
	fmt.Fprintf(w, "sync:      node %s, %d of %d links up; from peers: %d installed, %d merged, %d stale, %d refused (table full), %d deleted; taken over %d, picked up %d\n",
		sy.Name, sy.Connected, len(sy.Peers), c.PeerInstalled, c.PeerMerged, c.PeerStale, c.PeerFull, c.PeerDeleted, c.TakenOver, c.PickedUp)
	for _, p := range sy.Peers {
		name := p.Name
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(w, "  %-3s %-21s %-8s %-14s since %s; %d msgs/%d B sent, %d msgs/%d B received",
			p.Direction, p.Address, name, p.State, p.Since.Format(time.TimeOnly), p.MessagesSent, p.BytesSent, p.MessagesReceived, p.BytesReceived)
		if p.Direction == hasync.Out {
			fmt.Fprintf(w, "; %d records, %d deletes sent; lag p50 %s p99 %s", p.RecordsSent, p.DeletesSent, secs(p.Lag.P50Seconds), secs(p.Lag.P99Seconds))
		} else {
			fmt.Fprintf(w, "; %d installed, %d merged, %d stale, %d full", p.Installed, p.Merged, p.Stale, p.Full)
		}
		if n := p.CutOff.Total(); n > 0 {
			fmt.Fprintf(w, "; %d sessions cut off", n)
		}
		fmt.Fprintln(w)
	}
	if n := sy.Refused.Total(); n > 0 {
		fmt.Fprintf(w, "  refused: %d connections before a session (bad certificate, not allowed, busy, version)\n", n)
	}
	if d := sy.Defer; d.Deferred > 0 || d.NoPeer > 0 {
		fmt.Fprintf(w, "  defer:   %d first packets held, %d acked in time (p50 %s p99 %s), %d timed out, %d failed, %d with no peer up\n",
			d.Deferred, d.Acked, secs(d.Latency.P50Seconds), secs(d.Latency.P99Seconds), d.TimedOut, d.Failed, d.NoPeer)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
