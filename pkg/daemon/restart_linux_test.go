//go:build linux

package daemon

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopForRestartKeepsConnections: SIGUSR2 stops statewall for a
// restart. The divert rules stay, so the lines the connection sends while
// no statewall runs are dropped (not passed unseen, as after SIGTERM) and
// TCP retransmits them; the next statewall loads the state file, finds the
// windows where it left them, and the connection flows again, with no help
// from the test in the gap (compare TestStateFileRestart, which has to
// close the gap itself).
func TestStopForRestartKeepsConnections(t *testing.T) {
	needRoot(t, "socat", "ss")
	tp := newTopo(t)
	tp.echoServer(t, 7000)
	sock := filepath.Join(tp.dir, "router.sock")
	state := filepath.Join(tp.dir, "router.state")
	args := []string{"--rules", testdata(t, "outbound.rules"), "--hooks", "forward", "--state-file", state}
	d := tp.startDaemon(t, tp.router, sock, args...)
	e := tp.dialEcho(t, 7000, 42100)
	e.tick(100*time.Millisecond, 900)
	if !e.flows(5, 3*time.Second) {
		t.Fatal("the echo connection does not flow through the router")
	}

	d.cmd.Process.Signal(syscall.SIGUSR2)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("statewall did not stop within 15 s of SIGUSR2:\n%s", d.out.String())
	}
	if !d.cmd.ProcessState.Success() {
		t.Fatalf("statewall exited with %v:\n%s", d.cmd.ProcessState, d.out.String())
	}
	if !strings.Contains(d.out.String(), "divert rules kept") || !strings.Contains(d.out.String(), "connection table saved") {
		t.Errorf("the log should say the rules were kept and the table saved:\n%s", d.out.String())
	}
	if rs := ruleset(t, tp.router); !strings.Contains(rs, "STATEWALL") {
		t.Errorf("after SIGUSR2 the divert rules should still be installed:\n%s", rs)
	}
	time.Sleep(300 * time.Millisecond) // lines that were already on their way
	if !e.silent(time.Second) {
		t.Error("lines pass while no statewall runs: the divert rules should make the kernel drop them (fail-closed)")
	}

	d2 := tp.startDaemon(t, tp.router, sock, args...)
	if !strings.Contains(d2.out.String(), "connection table loaded") {
		t.Errorf("the restart should load the state file:\n%s", d2.out.String())
	}
	if !e.flows(10, 15*time.Second) {
		t.Fatalf("after the restart the connection does not flow again (%d lines back)\n%s", e.got.Load(), d2.out.String())
	}
	e.stopTicking()
	tp.stopClean(t, d2)
}
