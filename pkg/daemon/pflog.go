package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/rules"
)

// Logging, as pflog does: every packet decided by a `log` rule (and every
// packet of a connection a `log (all)` rule created) becomes a PFLOG
// record, written by pkg/pflog's Logger to the log file and to every
// `statewall log` client. The packet path only copies the record into the
// Logger's ring; when the ring is full the record is dropped and counted,
// so logging never holds a packet up.

// DefaultLogFile is where the daemon writes its pflog capture unless told
// otherwise (cmd's --log-file default; Config.LogFile "" means none).
const DefaultLogFile = "/var/log/statewall/pflog.pcap"

// logLineEvery rate-limits Config.LogLines: at most one line per interval.
const logLineEvery = 100 * time.Millisecond

// logDecision logs p if its decision calls for it. A forwarded packet was
// matched twice (inbound, outbound): each evaluation whose rule logs gives
// one record, with that evaluation's direction and interface, as pf logs
// a forwarded packet on each interface.
func (d *Daemon) logDecision(dec *engine.Decision, p *nfq.Packet, at rules.Where) {
	if r := dec.Rule; r != nil && r.Log {
		d.logRecord(p, dec.Verdict, uint32(r.Index), dec.Dir, at)
	}
	if o := dec.Other; o != nil && o.Log {
		dir := rules.DirOut
		if dec.Dir == rules.DirOut {
			dir = rules.DirIn
		}
		d.logRecord(p, engine.Pass, uint32(o.Index), dir, at)
	}
	if r := d.stateful.LogAllRule(dec); r != nil && dec.Rule == nil {
		n := r.Index
		dir := at.Dir
		if dir == rules.DirForward {
			dir = rules.DirIn
		}
		d.logRecord(p, dec.Verdict, uint32(n), dir, at)
	}
}

func (d *Daemon) logRecord(p *nfq.Packet, v engine.Verdict, rule uint32, dir rules.Dir, at rules.Where) {
	rec := pflog.Record{
		Action: pflog.Pass,
		Reason: pflog.ReasonMatch,
		Dir:    pflog.DirIn,
		RuleNr: rule,
		Length: int(p.Length),
		Packet: p.Payload,
		Time:   p.Read,
	}
	if v == engine.Block {
		rec.Action = pflog.Block
	}
	idx := at.In
	if dir == rules.DirOut {
		rec.Dir, idx = pflog.DirOut, at.Out
	}
	if idx == 0 {
		idx = at.In | at.Out
	}
	if name := d.stateful.Rules().IfaceName(idx); name != "" {
		rec.Ifname = pflog.MakeIfname(name)
	}
	d.plog.Log(&rec)
	if d.cfg.LogLines {
		now := d.now()
		last := d.lastLogLine.Load()
		if now-last >= int64(logLineEvery) && d.lastLogLine.CompareAndSwap(last, now) {
			d.log.Info("logged packet", "packet", pflog.Format(&rec))
		}
	}
}

// streamLog serves `statewall log`: a JSON line saying the stream starts
// (or why it cannot), then the pflog capture as a pcap stream, live, until
// the client goes away or the daemon stops.
func (d *Daemon) streamLog(c net.Conn, r *bufio.Reader) {
	c.SetDeadline(time.Time{})
	enc := json.NewEncoder(c)
	pl := d.plogReady.Load()
	if pl == nil {
		enc.Encode(Response{Error: "logging is not running"})
		return
	}
	sub := pl.Subscribe()
	defer sub.Close()
	if err := enc.Encode(Response{}); err != nil {
		return
	}
	// The client sends nothing more: a read returns when it hangs up.
	go func() {
		io.Copy(io.Discard, r)
		sub.Close()
	}()
	sub.WriteTo(c)
}

// LogStream connects to a running daemon's log stream: the pflog capture
// of every logged packet from now on, as a pcap stream (pflog.NewReader
// reads it). Close the returned reader to stop.
func LogStream(socket string) (io.ReadCloser, error) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot reach statewall at %s (is it running? are you root?): %w", socket, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(Request{Cmd: "log"}); err != nil {
		c.Close()
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.Error != "" {
		c.Close()
		return nil, fmt.Errorf("%s", resp.Error)
	}
	c.SetDeadline(time.Time{})
	return &logConn{Reader: br, c: c}, nil
}

type logConn struct {
	*bufio.Reader
	c net.Conn
}

func (l *logConn) Close() error { return l.c.Close() }
