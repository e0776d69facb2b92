//go:build linux

package daemon

import (
	"os"
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

// TestRestartsKeepConnections: with a state file (the shipped unit has
// one in its StateDirectory by default), every kind of restart keeps an
// established connection that exchanges a line every 100 ms and a bulk
// download that runs across it:
//   - SIGTERM then a start: the divert rules go, the connections go on
//     unseen meanwhile, and the restored entries' windows are stale:
//     liberal tracking of restored entries keeps their packets valid. A
//     connection made during the gap, unknown to the restored table, is
//     picked up mid-stream in the grace after the start.
//   - SIGUSR2 then a start: the divert rules stay, packets in the gap are
//     dropped and retransmitted.
//   - kill -9 then a start: nothing is saved at the crash; the periodic
//     save (here every second) is what the next start loads.
func TestRestartsKeepConnections(t *testing.T) {
	needRoot(t, "socat", "curl", "python3")
	for _, kind := range []string{"sigterm", "sigusr2", "kill9"} {
		t.Run(kind, func(t *testing.T) {
			tp := newTopo(t)
			tp.echoServer(t, 7000)
			tp.httpServer(t)
			big := filepath.Join(tp.dir, "www", "big.bin")
			if err := os.WriteFile(big, make([]byte, 16<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(tp.dir, "router.sock")
			state := filepath.Join(tp.dir, "router.state")
			args := []string{"--rules", testdata(t, "outbound.rules"), "--hooks", "forward", "--state-file", state,
				"--state-save-interval", "1s", "--log-file", ""}
			d := tp.startDaemon(t, tp.router, sock, args...)
			e := tp.dialEcho(t, 7000, 42200)
			e.tick(100*time.Millisecond, 1200)
			if !e.flows(5, 3*time.Second) {
				t.Fatal("the echo connection does not flow through the router")
			}
			out := filepath.Join(tp.dir, "big.out")
			dl := start(t, tp.client, "curl", "-sS", "--limit-rate", "3M", "--max-time", "60", "-o", out, "http://"+serverV4+"/big.bin")
			time.Sleep(2 * time.Second) // the download is under way, and saved once (kill9)

			switch kind {
			case "sigterm":
				tp.stopClean(t, d)
			case "sigusr2":
				d.cmd.Process.Signal(syscall.SIGUSR2)
				<-d.done
			case "kill9":
				d.kill9(t)
			}
			var gap *echoConn
			if kind == "sigterm" {
				// Nothing filters now: a connection made in the gap.
				gap = tp.dialEcho(t, 7000, 42201)
			}
			time.Sleep(500 * time.Millisecond)
			d2 := tp.startDaemon(t, tp.router, sock, args...)
			if !strings.Contains(d2.out.String(), "connection table loaded") {
				t.Errorf("the restart did not load the state file:\n%s", d2.out.String())
			}
			if !e.flows(10, 10*time.Second) {
				t.Errorf("after the restart the echo connection does not flow (%d lines back)\n%s", e.got.Load(), d2.out.String())
			}
			if gap != nil && !gap.roundTrip(t, "made in the gap", 5*time.Second) {
				t.Errorf("the connection made while no statewall ran was not picked up\n%s", d2.out.String())
			}
			select {
			case <-dl.done:
			case <-time.After(60 * time.Second):
				t.Fatal("the download did not end")
			}
			if !dl.cmd.ProcessState.Success() {
				t.Errorf("the download failed across the restart: %v %s", dl.cmd.ProcessState, dl.out.String())
			} else if fi, err := os.Stat(out); err != nil || fi.Size() != 16<<20 {
				t.Errorf("the download is incomplete: %v %v", fi, err)
			}
			s := statusOf(t, sock)
			t.Logf("%s: restored %d, liberal %d, pickups %d", kind, s.Conntrack.Restored, s.Conntrack.Liberal, s.Pickups)
			if kind == "sigterm" && s.Pickups == 0 {
				t.Error("status counts no pickup, but the gap's connection was picked up")
			}
			e.stopTicking()
			tp.stopClean(t, d2)
		})
	}
}
