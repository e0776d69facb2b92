//go:build linux

// Package smoke runs the live benchmark harness (bench/live/run.sh) at the
// smallest size, so that `make test` keeps it working. It checks that every
// configuration and workload produced a number; it asserts no timing.
package smoke

import (
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/testenv"
)

func TestLiveHarnessSmoke(t *testing.T) {
	testenv.NeedRoot(t, "the live harness: network namespaces, iptables, NFQUEUE")
	out := t.TempDir()
	cmd := exec.Command("bash", "bench/live/run.sh")
	cmd.Dir = "../../.."
	cmd.Env = append(os.Environ(), "REPS=1", "DUR=1", "CONFIGS=nofilter nft sw-stateful-q1", "OUT="+out, "LIVE_COMMAND=smoke test")
	done := make(chan struct{})
	timer := time.AfterFunc(5*time.Minute, func() {
		select {
		case <-done:
		default:
			cmd.Process.Signal(os.Interrupt) // run.sh's trap removes its namespaces
		}
	})
	b, err := cmd.CombinedOutput()
	close(done)
	timer.Stop()
	if err != nil {
		t.Fatalf("bench/live/run.sh: %v\n%s", err, b)
	}
	f, err := os.Open(filepath.Join(out, "live.csv"))
	if err != nil {
		t.Fatalf("no live.csv: %v\n%s", err, b)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("live.csv unreadable or empty: %v", err)
	}
	// Every configuration measured every workload, with a positive result.
	got := map[string]float64{}
	for _, r := range rows[1:] {
		if len(r) < 10 {
			t.Fatalf("short row %v", r)
		}
		v, err := strconv.ParseFloat(r[9], 64)
		if err != nil {
			t.Fatalf("row %v: value %q: %v", r, r[9], err)
		}
		got[r[6]+" "+r[7]] = v
	}
	for _, cfg := range []string{"nofilter", "nft", "sw-stateful-q1"} {
		for _, m := range []string{"udp_pps", "tcp_mbps", "conn_per_s", "rtt_p50_us", "rtt_p99_us", "rtt_loaded_p50_us", "rtt_loaded_p99_us", "load_pps"} {
			if v, ok := got[cfg+" "+m]; !ok || v <= 0 {
				t.Errorf("%s %s: got %v (present %v)", cfg, m, v, ok)
			}
		}
	}
	for _, name := range []string{"live.md", "live.svg"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("%s not written: %v", name, err)
		}
	}
}
