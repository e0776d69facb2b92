package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/hasync"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/pflog"
)

// The control socket speaks one JSON request and one JSON response per
// connection. Only root may connect: the socket is mode 0600 in a directory
// only root can write, and every peer's credentials are checked
// (SO_PEERCRED) before a request is read.

// Request is what `statewall status|conntrack|reload` send.
type Request struct {
	Cmd    string       `json:"cmd"` // "status", "conntrack" (conntrackctl.go), "reload", "table", "log" (a stream: see LogStream)
	Filter ConnFilter   `json:"filter,omitempty"`
	Table  TableRequest `json:"table,omitempty"`
}

// Response is the daemon's answer. Error is set when the request failed.
type Response struct {
	Error string `json:"error,omitempty"`
	// Warnings are a reload's: rules that can never match here.
	Warnings []string    `json:"warnings,omitempty"`
	Status   *Status     `json:"status,omitempty"`
	Conns    []Conn      `json:"conns,omitempty"`
	Deleted  int         `json:"deleted,omitempty"` // conntrack_delete, conntrack_flush
	Tables   []TableInfo `json:"tables,omitempty"`
	Sources  []Source    `json:"sources,omitempty"`
	// RuleCounters answers "rules": the rules with their counters.
	RuleCounters *RuleCounters `json:"rule_counters,omitempty"`
}

// Status is what `statewall status` shows.
type Status struct {
	Mode      string            `json:"mode"`
	RulesFile string            `json:"rules_file"`
	Rules     int               `json:"rules"`
	Loaded    time.Time         `json:"loaded"`
	Started   time.Time         `json:"started"`
	FailOpen  bool              `json:"fail_open"`
	Hooks     []string          `json:"hooks"`
	Netns     string            `json:"netns,omitempty"`
	Pass      uint64            `json:"pass"`
	Block     uint64            `json:"block"`
	ByReason  map[string]uint64 `json:"by_reason"`
	Shadow    map[string]uint64 `json:"shadow_disagreements,omitempty"`
	Conntrack conntrack.Stats   `json:"conntrack"`
	Limit     int               `json:"limit"`
	Queues    []nfq.Stats       `json:"queues"`
	Log       *LogStatus        `json:"log,omitempty"`
	Replies   *ReplyStatus      `json:"replies,omitempty"`
	Sources   *SourceStatus     `json:"sources,omitempty"`
	// Pickups counts TCP connections picked up mid-stream in the grace
	// after a restart (Config.PickupGrace).
	Pickups uint64 `json:"pickups"`
	// Offload counts the connections handed to the kernel (--offload).
	Offload *OffloadStatus `json:"offload,omitempty"`
	// Sync is the state sync with other nodes, when on.
	Sync *hasync.Stats `json:"sync,omitempty"`
}

// ReplyStatus counts the answers to `block return` rules.
type ReplyStatus struct {
	Sent        uint64 `json:"sent"`
	RateLimited uint64 `json:"rate_limited"`
	Dropped     uint64 `json:"dropped"`
	Errors      uint64 `json:"errors"`
}

// LogStatus is the packet log's part of Status.
type LogStatus struct {
	File            string `json:"file,omitempty"`
	Logged          uint64 `json:"logged"`
	Dropped         uint64 `json:"dropped"`
	Written         uint64 `json:"written"`
	Rotations       uint64 `json:"rotations"`
	SubscriberDrops uint64 `json:"subscriber_drops"`
	WriteErrors     uint64 `json:"write_errors"`
	Subscribers     int    `json:"subscribers"`
}

func logStatus(file string, st pflog.Stats) *LogStatus {
	return &LogStatus{File: file, Logged: st.Logged, Dropped: st.Dropped, Written: st.Written, Rotations: st.Rotations,
		SubscriberDrops: st.SubscriberDrops, WriteErrors: st.WriteErrors, Subscribers: st.Subscribers}
}

// listenControl creates the control socket safely: its directory must
// belong to root and not be writable by anyone else, a stale socket of a
// dead daemon is replaced, and a live one is an error.
func listenControl(path string) (net.Listener, error) {
	if err := checkRootDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another statewall is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing stale %s: %w", path, err)
		}
	}
	old := syscall.Umask(0o177) // the socket is born 0600: no window for others
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// peerIsRoot reports whether the process at the other end of c runs as
// root.
func peerIsRoot(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0
}

func (d *Daemon) serveControl(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("control socket", "err", err)
			continue
		}
		go d.serveConn(ctx, c)
	}
}

// maxRequest bounds a request's size: a request is a few dozen bytes.
const maxRequest = 64 << 10

func (d *Daemon) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	enc := json.NewEncoder(c)
	root := peerIsRoot(c)
	// The request is read even from a peer that is refused: a client
	// writes its request before it reads the answer, and closing a Unix
	// socket with the request unread would make that write fail (EPIPE)
	// before the client ever sees why.
	var req Request
	br := bufio.NewReader(io.LimitReader(c, maxRequest))
	dec := json.NewDecoder(br)
	err := dec.Decode(&req)
	if !root {
		d.log.Warn("control socket: refused a peer that is not root")
		enc.Encode(Response{Error: "permission denied: only root may control statewall"})
		return
	}
	if err != nil {
		enc.Encode(Response{Error: "bad request: " + err.Error()})
		return
	}
	if req.Cmd == "log" {
		d.streamLog(c, bufio.NewReader(io.MultiReader(dec.Buffered(), c)))
		return
	}
	if req.Cmd == "conntrack_events" {
		d.streamEvents(ctx, c, bufio.NewReader(io.MultiReader(dec.Buffered(), c)), req.Filter)
		return
	}
	enc.Encode(d.answer(req))
}

func (d *Daemon) answer(req Request) Response {
	switch req.Cmd {
	case "status":
		s := d.Status()
		return Response{Status: &s}
	case "sources":
		var a netip.Addr
		if req.Filter.Addr != "" {
			var err error
			if a, err = netip.ParseAddr(req.Filter.Addr); err != nil {
				return Response{Error: fmt.Sprintf("bad address filter %q", req.Filter.Addr)}
			}
		}
		return Response{Sources: d.Sources(a)}
	case "conntrack":
		conns, err := d.Conntrack(req.Filter)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Conns: conns}
	case "conntrack_delete":
		n, err := d.DeleteConns(req.Filter)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Deleted: n}
	case "conntrack_flush":
		return Response{Deleted: d.FlushConns()}
	case "table":
		ts, err := d.Tables(req.Table)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Tables: ts}
	case "rules":
		return Response{RuleCounters: d.RuleCounters()}
	case "reload":
		ws, err := d.Reload()
		if err != nil {
			return Response{Error: "reload rejected, old ruleset still enforced: " + err.Error()}
		}
		s := d.Status()
		r := Response{Status: &s}
		for _, w := range ws {
			r.Warnings = append(r.Warnings, w.String())
		}
		return r
	}
	return Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
}

// Status returns the daemon's state and counters.
func (d *Daemon) Status() Status {
	li := d.loaded.Load()
	s := Status{
		Mode: d.cfg.Mode.String(), RulesFile: li.File, Rules: li.Rules, Loaded: li.Loaded,
		Started: d.started, FailOpen: d.cfg.FailOpen, Hooks: hookNames(d.cfg.Hooks), Netns: d.cfg.Netns,
		ByReason:  map[string]uint64{},
		Conntrack: d.tableStats(),
		Limit:     d.limit,
	}
	for v := range 2 {
		for c, name := range causes {
			n := counterValue(d.m.packets[v][c])
			if n == 0 {
				continue
			}
			if v == 1 {
				s.Pass += n
			} else {
				s.Block += n
			}
			s.ByReason[[2]string{"block", "pass"}[v]+" "+name] += n
		}
	}
	if d.cfg.Mode == Shadow {
		s.Shadow = map[string]uint64{}
		for a := 1; a < 3; a++ {
			for l := range d.m.disagree[a] {
				if c := d.m.disagree[a][l]; c != nil {
					if n := counterValue(c); n > 0 {
						s.Shadow[agreementLabelIndex(a)+" "+conntrack.Label(l).String()] += n
					}
				}
			}
		}
	}
	if r := d.reader.Load(); r != nil {
		s.Queues = r.Stats()
	}
	if o := d.off.Load(); o != nil {
		s.Offload = o.status()
	}
	if n := d.sync.Load(); n != nil {
		st := n.Stats()
		s.Sync = &st
	}
	if pl := d.plogReady.Load(); pl != nil {
		s.Log = logStatus(d.cfg.LogFile, pl.Stats())
	}
	s.Sources = d.sourceStatus()
	s.Pickups = d.stateful.Pickups()
	if rj := d.rejReady.Load(); rj != nil {
		st := rj.Stats()
		s.Replies = &ReplyStatus{Sent: st.Sent, RateLimited: st.RateLimited, Dropped: st.Dropped, Errors: st.Errors}
	}
	return s
}

// tableStats are the table's counters, with expired entries reaped first,
// so that Entries counts the live ones only, as the listing does.
func (d *Daemon) tableStats() conntrack.Stats {
	d.table.Live(d.now())
	return d.table.Stats()
}

func agreementLabelIndex(a int) string {
	if a == 1 {
		return "only_stateful_passes"
	}
	return "only_stateless_passes"
}
