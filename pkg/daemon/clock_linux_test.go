//go:build linux

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/nfq"
)

// steppedClock is the machine's clocks, with the wall clock stepped by the
// test (no test changes the machine's real clock) and the monotonic clock
// shifted, as another boot's would be.
type steppedClock struct {
	wallStep atomic.Int64 // added to the wall clock
	monoOff  int64        // added to the monotonic clock
}

func (c *steppedClock) Monotonic() int64 { return SystemClock{}.Monotonic() + c.monoOff }
func (c *steppedClock) Wall() time.Time {
	return time.Now().Add(time.Duration(c.wallStep.Load()))
}
func (c *steppedClock) step(d time.Duration) { c.wallStep.Add(int64(d)) }

// inProcess is a daemon run by this test process.
type inProcess struct {
	*Daemon
	logs *syncBuffer
	stop func() error
}

// runInProcess starts a daemon in this process and waits until it
// enforces; it is stopped (as by SIGTERM) at the end of the test unless
// the test stopped it.
func runInProcess(t *testing.T, cfg Config) *inProcess {
	t.Helper()
	logs := &syncBuffer{}
	d, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	stopped := false
	p := &inProcess{Daemon: d, logs: logs}
	p.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-runErr:
			return err
		case <-time.After(20 * time.Second):
			return fmt.Errorf("Run did not return within 20 s of cancel")
		}
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	if !waitFor(20*time.Second, func() bool { return strings.Contains(logs.String(), "statewall running") }) {
		t.Fatalf("the daemon did not start:\n%s", logs.String())
	}
	return p
}

// echoTimeout returns the time left on the echo connection's entry.
func echoTimeout(t *testing.T, d *Daemon, sport int) float64 {
	t.Helper()
	conns, err := d.Conntrack(ConnFilter{Port: sport, Proto: "tcp"})
	if err != nil || len(conns) != 1 {
		t.Fatalf("conntrack for port %d: %v, %d entries, want 1", sport, err, len(conns))
	}
	return conns[0].Timeout
}

// TestClockStepKeepsConnections: the wall clock steps six hours forward,
// then twelve back, while a connection exchanges a line every 100 ms
// through the router. Its entry's timeout is one hour (set timeout
// tcp.established 1h), so a conntrack clock on wall time would expire it at
// the forward step: the next segment, mid-stream, would be new, and the
// rule (flags S/SA, as every keep-state pass rule) would block it. With the
// monotonic clock the connection flows throughout, its timeout stays about
// an hour, and the state file carries the time left, not a deadline:
// restored by a daemon whose monotonic clock restarted (another boot) and
// whose wall clock is days off, the entry has the same time left.
func TestClockStepKeepsConnections(t *testing.T) {
	needRoot(t, "socat", "ss")
	tp := newTopo(t)
	tp.echoServer(t, 7000)
	rules := writeRules(t, filepath.Join(tp.dir, "clock.rules"), `
set default block
set invalid block
set timeout tcp.established 1h
pass from { 198.18.1.0/24, fd00:198:18::1:0/112 }
`)
	state := filepath.Join(tp.dir, "router.state")
	clk := &steppedClock{monoOff: int64(1000 * time.Hour)}
	cfg := Config{
		RulesFile:     rules,
		Hooks:         []nfq.Hook{nfq.HookForward},
		Netns:         tp.router,
		ControlSocket: filepath.Join(tp.dir, "router.sock"),
		StateFile:     state,
		Clock:         clk,
	}
	d := runInProcess(t, cfg)
	const sport = 42300
	e := tp.dialEcho(t, 7000, sport)
	e.tick(100*time.Millisecond, 600)
	if !e.flows(5, 3*time.Second) {
		t.Fatal("the echo connection does not flow through the router")
	}
	for _, step := range []time.Duration{6 * time.Hour, -12 * time.Hour} {
		clk.step(step)
		time.Sleep(50 * time.Millisecond) // past the daemon's clock tick
		if !e.flows(10, 5*time.Second) {
			t.Fatalf("after a wall-clock step of %v the connection stopped (%d lines back)", step, e.got.Load())
		}
		if to := echoTimeout(t, d.Daemon, sport); to < 3590 || to > 3600 {
			t.Errorf("after a wall-clock step of %v the entry has %.0f s left, want about 3600", step, to)
		}
	}

	// A restart across a clock difference: quiet the connection, stop
	// (the table is saved), and start again with the monotonic clock
	// where another boot would have it and the wall clock 3 days on.
	e.stopTicking()
	time.Sleep(300 * time.Millisecond)
	before := echoTimeout(t, d.Daemon, sport)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	clk2 := &steppedClock{monoOff: -SystemClock{}.Monotonic() + int64(time.Second)}
	clk2.step(72 * time.Hour)
	cfg.Clock = clk2
	d2 := runInProcess(t, cfg)
	if !strings.Contains(d2.logs.String(), "connection table loaded") {
		t.Fatalf("the restart did not load the state file:\n%s", d2.logs.String())
	}
	if after := echoTimeout(t, d2.Daemon, sport); after > before || after < before-5 {
		t.Errorf("restored entry has %.0f s left, %.0f s before the restart: the state file must carry the time left", after, before)
	}
	if !e.roundTrip(t, "after the restart", 5*time.Second) {
		t.Error("after the restart the connection does not flow")
	}
}
