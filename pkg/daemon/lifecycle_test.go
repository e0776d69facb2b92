package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/rules"
)

// decide is the verdict of both engines for a UDP packet 198.18.0.1:1024
// > 198.18.0.2:53 (they must agree).
func decide(t *testing.T, d *Daemon) engine.Verdict {
	t.Helper()
	p := udpConnPacket(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 1024, 53)
	var sl, sf engine.Decision
	d.stateless.DecideInto(&sl, &p, rules.DirUnknown)
	d.stateful.DecideInto(&sf, &p, rules.DirUnknown, d.now())
	if sl.Verdict != sf.Verdict {
		t.Fatalf("stateless %v, stateful %v", sl, sf)
	}
	return sf.Verdict
}

// TestOnBadRules: a rules file that does not parse stops New by default
// (refuse); with block, the daemon starts and blocks everything until a
// reload brings a good file, and its status line says so.
func TestOnBadRules(t *testing.T) {
	f := filepath.Join(t.TempDir(), "host.rules")
	if err := os.WriteFile(f, []byte("pass proto udp\nblock frm any\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RulesFile: f, Clock: &manualClock{}}, nil)
	if err == nil || d != nil || !strings.Contains(err.Error(), "host.rules:2:") {
		t.Fatalf("refuse: New = %v, %v; want the file's error", d, err)
	}
	var states []string
	d, err = New(Config{RulesFile: f, Clock: &manualClock{}, OnBadRules: Block,
		Notify: func(s State, status string) { states = append(states, s.String()+": "+status) }}, nil)
	if err != nil {
		t.Fatalf("block: %v", err)
	}
	if v := decide(t, d); v != engine.Block {
		t.Fatalf("with the fallback ruleset: %v, want block", v)
	}
	d.reloadMu.Lock()
	d.setState(Ready)
	d.reloadMu.Unlock()
	if len(states) != 1 || !strings.Contains(states[0], "ready: BLOCKING ALL TRAFFIC: ") || !strings.Contains(states[0], "host.rules:2:") {
		t.Fatalf("states %q", states)
	}
	// Still bad: still blocking.
	if _, err := d.Reload(); err == nil {
		t.Fatal("reload of a bad file succeeded")
	}
	if v := decide(t, d); v != engine.Block {
		t.Fatalf("after a rejected reload: %v, want block", v)
	}
	if err := os.WriteFile(f, []byte("pass proto udp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if v := decide(t, d); v != engine.Pass {
		t.Fatalf("after a good reload: %v, want pass", v)
	}
	want := []string{"reloading", "ready: BLOCKING", "reloading", "ready: stateful: 1 rules from " + f}
	if len(states) != 5 {
		t.Fatalf("states %q", states)
	}
	for i, w := range want {
		if !strings.HasPrefix(states[i+1], w) {
			t.Errorf("state %d: %q, want %q...", i+1, states[i+1], w)
		}
	}
	if _, err := ParseBadRules("open"); err == nil {
		t.Error("ParseBadRules accepted open")
	}
}

// TestNotifyOrder: no reload notification before the first Ready or after
// Stopping, so systemd never hears READY=1 before the divert rules are in
// place, nor after STOPPING=1.
func TestNotifyOrder(t *testing.T) {
	f := filepath.Join(t.TempDir(), "host.rules")
	if err := os.WriteFile(f, []byte("pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var states []State
	d, err := New(Config{RulesFile: f, Clock: &manualClock{},
		Notify: func(s State, _ string) { states = append(states, s) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	step := func(s State) {
		d.reloadMu.Lock()
		d.setState(s)
		d.reloadMu.Unlock()
	}
	d.Reload() // before Ready: nothing
	step(Ready)
	d.Reload()
	step(Stopping)
	d.Reload() // after Stopping: nothing
	if want := []State{Ready, Reloading, Ready, Stopping}; !slices.Equal(states, want) {
		t.Errorf("states %v, want %v", states, want)
	}
}

// TestAlive: a queue whose packet path has held one packet for a whole
// interval is reported; a busy queue and an idle one are not.
func TestAlive(t *testing.T) {
	f := filepath.Join(t.TempDir(), "host.rules")
	if err := os.WriteFile(f, []byte("pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RulesFile: f, Queues: [2]uint16{3, 5}, Clock: &manualClock{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stats := []nfq.Stats{{Queue: 3}, {Queue: 4}, {Queue: 5}}
	tick := func() error { return d.alive(stats) }
	if err := tick(); err != nil {
		t.Fatal(err)
	}
	// Queue 3 busy (a packet in flight at each tick, but progress), queue
	// 4 idle, queue 5 takes a packet and never returns.
	stats[0].Packets, stats[1].Packets, stats[2].Packets = 10, 7, 1
	d.workers[0].done.Store(9)
	d.workers[1].done.Store(7)
	if err := tick(); err != nil {
		t.Fatal(err)
	}
	stats[0].Packets = 20
	d.workers[0].done.Store(19)
	err = tick()
	if err == nil || !strings.Contains(err.Error(), "queue 5:") {
		t.Fatalf("stuck queue 5: %v", err)
	}
	// It returns, and queue 3 has decided what it held: alive again.
	d.workers[2].done.Store(1)
	d.workers[0].done.Store(20)
	if err := tick(); err != nil {
		t.Fatal(err)
	}
}
