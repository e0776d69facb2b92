//go:build linux

package daemon

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gapTable is an nft table of the test's that drops everything the router
// forwards: the restart's gap, closed, as with statewall's divert rules
// and nobody reading (fail-closed). Without it a clean stop removes the
// divert rules and the lines would pass unfiltered (and unseen) between
// the two runs.
const gapTable = "sw_e2e_gap"

func closeGap(t *testing.T, ns string) {
	t.Helper()
	mustNS(t, ns, "table inet "+gapTable+" {\n chain drop_all {\n  type filter hook forward priority -300; policy drop;\n }\n}\n", "nft", "-f", "-")
	t.Cleanup(func() { inNS(ns, "", "nft", "delete", "table", "inet", gapTable) })
}

func openGap(t *testing.T, ns string) {
	t.Helper()
	mustNS(t, ns, "", "nft", "delete", "table", "inet", gapTable)
}

// stopTerm sends SIGTERM and wants exit status 0 within 15 s (stopClean
// without the ruleset comparison: the gap table is in it).
func stopTerm(t *testing.T, d *daemonProc) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("statewall did not stop within 15 s of SIGTERM:\n%s", d.out.String())
	}
	if !d.cmd.ProcessState.Success() {
		t.Fatalf("statewall exited with %v:\n%s", d.cmd.ProcessState, d.out.String())
	}
}

// TestStateFileRestart: a connection exchanges a line every 100 ms through
// the router, whose ruleset (outbound.rules) lets the client side open
// connections but does not pick them up mid-stream. statewall is stopped
// with SIGTERM and started again, the router dropping everything in
// between. With --state-file the table comes back and the lines flow again
// once TCP retransmits; without, the restarted statewall blocks the
// connection, which has no SYN left to send.
func TestStateFileRestart(t *testing.T) {
	for _, withState := range []bool{true, false} {
		name := "without state file"
		if withState {
			name = "with state file"
		}
		t.Run(name, func(t *testing.T) {
			needRoot(t, "socat", "ss")
			tp := newTopo(t)
			tp.echoServer(t, 7000)
			sock := filepath.Join(tp.dir, "router.sock")
			state := filepath.Join(tp.dir, "router.state")
			args := []string{"--rules", testdata(t, "outbound.rules"), "--hooks", "forward"}
			if withState {
				args = append(args, "--state-file", state)
			}
			d := tp.startDaemon(t, tp.router, sock, args...)
			if withState && !strings.Contains(d.out.String(), "no state file") {
				t.Errorf("the first start should find no state file:\n%s", d.out.String())
			}
			e := tp.dialEcho(t, 7000, 42000)
			e.tick(100*time.Millisecond, 900)
			if !e.flows(5, 3*time.Second) {
				t.Fatal("the echo connection does not flow through the router")
			}

			closeGap(t, tp.router)
			stopTerm(t, d)
			if withState {
				fi, err := os.Stat(state)
				if err != nil {
					t.Fatalf("no state file after SIGTERM: %v\n%s", err, d.out.String())
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
				}
				if !strings.Contains(d.out.String(), "connection table saved") {
					t.Errorf("no save in the log:\n%s", d.out.String())
				}
				if left, _ := filepath.Glob(state + ".tmp*"); len(left) != 0 {
					t.Errorf("temporary files left behind: %v", left)
				}
			} else if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a state file without --state-file: %v", err)
			}
			time.Sleep(300 * time.Millisecond) // lines that were already on their way
			if !e.silent(time.Second) {
				t.Error("lines still come back while the router drops everything")
			}

			d2 := tp.startDaemon(t, tp.router, sock, args...)
			openGap(t, tp.router)
			if withState {
				if !strings.Contains(d2.out.String(), "connection table loaded") {
					t.Errorf("the restart should load the state file:\n%s", d2.out.String())
				}
				if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the state file should be consumed by the start: %v", err)
				}
				if !e.flows(10, 15*time.Second) {
					t.Fatalf("after the restart the connection does not flow again (%d lines back)", e.got.Load())
				}
				out, _, err := cli("conntrack", "--socket", sock, "--json", "--port", "42000")
				var conns []Conn
				if err == nil {
					err = json.Unmarshal([]byte(out), &conns)
				}
				if err != nil || len(conns) != 1 || conns[0].State != "ESTABLISHED" || !conns[0].Assured || conns[0].Packets[0] < 8 { // SYN, ACK, hello and 5 lines before the restart
					t.Errorf("the restarted daemon should hold the connection with its history: %v %q", err, out)
				}
				if st := statusOf(t, sock); st.ByReason["pass state"] == 0 {
					t.Errorf("status: %+v", st)
				}
			} else {
				if !e.silent(5 * time.Second) {
					t.Error("without the state file the connection should be blocked after the restart (no SYN, no mid-stream pickup)")
				}
				if st := statusOf(t, sock); st.ByReason["block default"] == 0 {
					t.Errorf("the resumed connection's packets should be blocked: %+v", st)
				}
				// New connections still work: only the old one is lost.
				if e2 := tp.dialEcho(t, 7000, 42001); !e2.roundTrip(t, "new", 3*time.Second) {
					t.Error("a new connection does not work after the restart")
				}
			}
			e.stopTicking()
			tp.stopClean(t, d2)
			if withState {
				if _, err := os.Stat(state); err != nil {
					t.Errorf("no state file after the second stop: %v", err)
				}
			}
		})
	}
}

// TestStateFileRejected: a corrupt state file and one that is not a state
// file at all are rejected at start with a clear error, moved aside, and
// statewall runs with an empty table, enforcing as usual.
func TestStateFileRejected(t *testing.T) {
	needRoot(t, "socat", "ping")
	tp := newTopo(t)
	tp.echoServer(t, 7000)
	sock := filepath.Join(tp.dir, "router.sock")
	state := filepath.Join(tp.dir, "router.state")

	// A valid header for no entries, with a wrong checksum.
	corrupt := make([]byte, 20)
	copy(corrupt, "SWCT")
	binary.LittleEndian.PutUint16(corrupt[4:], 1)
	binary.LittleEndian.PutUint16(corrupt[6:], 140)
	binary.LittleEndian.PutUint32(corrupt[16:], 0xdeadbeef)

	for i, c := range []struct {
		name, data, why string
	}{
		{"corrupt", string(corrupt), "checksum mismatch"},
		{"foreign", "set default block\npass all\n", "not a statewall conntrack snapshot"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(state, []byte(c.data), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Remove(state + ".bad")
			d := tp.startDaemon(t, tp.router, sock, "--rules", testdata(t, "outbound.rules"), "--hooks", "forward", "--state-file", state)
			log := d.out.String()
			if !strings.Contains(log, "state file "+state+" rejected") || !strings.Contains(log, c.why) ||
				!strings.Contains(log, "starting with an empty table") {
				t.Errorf("the log should say why the state file was rejected (%q):\n%s", c.why, log)
			}
			if b, err := os.ReadFile(state + ".bad"); err != nil || string(b) != c.data {
				t.Errorf("the rejected file should be kept as %s.bad: %v", state, err)
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the rejected file should not stay in place: %v", err)
			}
			if st := statusOf(t, sock); st.Conntrack.Entries != 0 {
				t.Errorf("the table should start empty: %+v", st.Conntrack)
			}
			// It enforces: the client side opens connections, the server
			// side cannot.
			e := tp.dialEcho(t, 7000, 43000+i)
			if !e.roundTrip(t, "after a rejected state file", 3*time.Second) {
				t.Error("the echo connection does not work")
			}
			if n := pingCount(tp.server, clientV4, 1, 0); n != 0 {
				t.Error("the server side reached the client side")
			}
			tp.stopClean(t, d)
			if _, err := os.Stat(state); err != nil {
				t.Errorf("a clean stop should write a good state file again: %v", err)
			}
		})
	}
}
