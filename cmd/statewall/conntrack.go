package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/statewall/statewall/pkg/daemon"
)

func runConntrack(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("conntrack", "[flags]", `List the running daemon's tracked connections, like conntrack -L: protocol,
state, timeout left, original and reply tuples, packets and bytes each way.

  statewall conntrack [FILTERS]              list (--json: structured tuples)
  statewall conntrack --delete FILTERS       delete the matching connections, like conntrack -D
  statewall conntrack --flush                delete every connection, like conntrack -F
  statewall conntrack --events [FILTERS]     follow them live, like conntrack -E: [NEW] when a
                                             connection is committed, [UPDATE] when its state
                                             changes, [DESTROY] when it goes (timeout, delete...)

Filters (every one given must match): --addr (either end), --src, --dst
(the original direction, as conntrack -s/-d) take an address or a prefix;
--port (either end), --sport, --dport a number or a service name (ssh,
http, domain...); --proto a protocol; --state what the state column shows
(ESTABLISHED, SYN_SENT, TIME_WAIT... for TCP; UNREPLIED, REPLIED, ASSURED
for UDP and the others).

The next packet of a deleted connection is decided as a new one, by the
rules: a mid-stream TCP segment is blocked unless a rule says flags any.`, stdout)
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	addr := fs.String("addr", "", "only connections with an address in `ADDR` (address or prefix) on either end")
	src := fs.String("src", "", "only connections whose original source is in `ADDR` (address or prefix)")
	dst := fs.String("dst", "", "only connections whose original destination is in `ADDR` (address or prefix)")
	port := fs.String("port", "", "only connections with `PORT` (number or service name) on either end")
	sport := fs.String("sport", "", "only connections whose original source port is `PORT`")
	dport := fs.String("dport", "", "only connections whose original destination port is `PORT`")
	proto := fs.String("proto", "", "only `PROTO` (tcp, udp, icmp, icmp6, sctp, gre, or a number)")
	state := fs.String("state", "", "only connections in `STATE` (ESTABLISHED, SYN_SENT, TIME_WAIT..., UNREPLIED, REPLIED, ASSURED)")
	asJSON := jsonFlags(fs)
	del := fs.Bool("delete", false, "delete the connections the filters select (at least one filter)")
	flush := fs.Bool("flush", false, "delete every connection")
	events := fs.Bool("events", false, "follow the connections' events live (NEW, UPDATE, DESTROY) until interrupted")
	count := fs.Int("c", 0, "--events: stop after `N` events (0: run until interrupted)")
	sources := fs.Bool("sources", false, "list the source nodes of the stateful tracking options (max-src-*, overload) instead, as pfctl -sS (--addr filters)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	modes := 0
	for _, b := range []bool{*del, *flush, *events, *sources} {
		if b {
			modes++
		}
	}
	if modes > 1 {
		return usagef("--delete, --flush, --events and --sources go one at a time")
	}
	if *sources {
		return listSources(*socket, *addr, *asJSON, stdout, stderr)
	}
	f := daemon.ConnFilter{Addr: *addr, Src: *src, Dst: *dst, Proto: *proto, State: *state}
	for _, p := range []struct {
		flag, s string
		n       *int
	}{{"port", *port, &f.Port}, {"sport", *sport, &f.Sport}, {"dport", *dport, &f.Dport}} {
		if p.s == "" {
			continue
		}
		n, err := daemon.ParsePort(p.s)
		if err != nil {
			return usagef("--%s: %v", p.flag, err)
		}
		*p.n = n
	}
	if err := f.Check(); err != nil {
		return usagef("%v", err)
	}
	switch {
	case *flush:
		if !f.IsZero() {
			return usagef("--flush deletes every connection: to delete some, use --delete with the filters")
		}
		resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "conntrack_flush"})
		if err != nil {
			return err
		}
		return printDeleted(stdout, resp.Deleted, *asJSON)
	case *del:
		if f.IsZero() {
			return usagef("--delete needs a filter (--addr, --port, --proto, --state...): to delete every connection, use --flush")
		}
		resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "conntrack_delete", Filter: f})
		if err != nil {
			return err
		}
		return printDeleted(stdout, resp.Deleted, *asJSON)
	case *events:
		return followEvents(*socket, f, *count, *asJSON, stdout, stderr)
	}
	resp, err := daemon.Ask(*socket, daemon.Request{Cmd: "conntrack", Filter: f})
	if err != nil {
		return err
	}
	if *asJSON {
		if resp.Conns == nil {
			resp.Conns = []daemon.Conn{}
		}
		return json.NewEncoder(stdout).Encode(resp.Conns)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tSTATE\tTIMEOUT\tORIGINAL\tREPLY\tPACKETS\tBYTES\tFLAGS")
	for _, c := range resp.Conns {
		flags := ""
		switch {
		case c.Assured:
			flags = "[ASSURED]"
		case !c.SeenReply:
			flags = "[UNREPLIED]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0fs\t%s\t%s\t%d/%d\t%d/%d\t%s\n", c.Proto, c.State, c.Timeout, c.Original, c.Reply,
			c.Packets[0], c.Packets[1], c.Bytes[0], c.Bytes[1], flags)
	}
	tw.Flush()
	fmt.Fprintf(stderr, "%d connections\n", len(resp.Conns))
	return nil
}

func printDeleted(w io.Writer, n int, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(struct {
			Deleted int `json:"deleted"`
		}{n})
	}
	_, err := fmt.Fprintf(w, "%d connections deleted\n", n)
	return err
}

// followEvents prints the event stream, one event a line, as conntrack -E
// does ("    [NEW] tcp      6 120 SYN_SENT src=..."), or as JSON lines.
// Events the daemon had to drop for this client are said on stderr (in
// the JSON stream too, as a line of type DROPPED).
func followEvents(socket string, f daemon.ConnFilter, count int, asJSON bool, stdout, stderr io.Writer) error {
	st, err := daemon.EventStream(socket, f)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); st.Close() }()
	enc := json.NewEncoder(stdout)
	for n := 0; count == 0 || n < count; {
		ev, err := st.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the event stream: %w", err)
		}
		if ev.Type == "DROPPED" {
			fmt.Fprintf(stderr, "statewall conntrack: %d events dropped so far: the daemon's queue for this reader was full\n", ev.Dropped)
		}
		if asJSON {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		} else if ev.Conn != nil {
			if _, err := fmt.Fprintf(stdout, "%9s %s\n", "["+ev.Type+"]", ev.Conn); err != nil {
				return err
			}
		}
		if ev.Conn != nil {
			n++
		}
	}
	return nil
}

func listSources(socket, addr string, asJSON bool, stdout, stderr io.Writer) error {
	resp, err := daemon.Ask(socket, daemon.Request{Cmd: "sources", Filter: daemon.ConnFilter{Addr: addr}})
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(resp.Sources)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tSOURCE\tSTATES\tCONNS\tRATE\tEXPIRES\tLABEL")
	for _, s := range resp.Sources {
		rate, exp := "-", "-"
		if s.RatePer > 0 {
			rate = fmt.Sprintf("%.1f/%.0fs", s.Rate, s.RatePer)
		}
		if s.Expires > 0 {
			exp = fmt.Sprintf("%.0fs", s.Expires)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%s\n", s.Rule, s.Addr, s.States, s.Conns, rate, exp, s.Label)
	}
	tw.Flush()
	fmt.Fprintf(stderr, "%d source nodes\n", len(resp.Sources))
	return nil
}
