//go:build linux

package hademo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/testenv"
)

// The demo at the size of the test: 40 connections, router a killed 3 s
// after they open, an 8 s bulk transfer (16 MB), the connections running
// 12 s. Each run takes about 20 s (the control's connections fail only at
// the 15 s echo timeout: 30 s); with the builds, about a minute.
var demoEnv = []string{"N=40", "DURATION=12", "KILL_AFTER=3", "BULK_SECONDS=8", "BULK_RATE=2000000", "TIMEOUT=15"}

// summary matches the demo's last two lines.
var summary = regexp.MustCompile(`(?m)^(with|without) sync: connections kept across failover: (\d+)/(\d+), transfer complete: (yes|no)$`)

// TestFailoverKeepsConnections runs scripts/ha-demo.sh as `make ha-demo`
// does, smaller: with state sync, every connection and the bulk transfer
// must survive router a's death; the control run without sync is logged
// (b holds no state for them and its ruleset opens TCP state only with a
// SYN: expect none kept).
func TestFailoverKeepsConnections(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces, iptables, NFQUEUE, keepalived", "ip", "iptables", "keepalived", "timeout", "ping", "bash")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	statewall, haload := filepath.Join(bin, "statewall"), filepath.Join(bin, "haload")
	build(t, root, statewall, "./cmd/statewall")
	build(t, root, haload, "./internal/cmd/haload")

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "ha-demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), append([]string{"STATEWALL=" + statewall, "HALOAD=" + haload, "KEEP="}, demoEnv...)...)
	// Out of the test's process group; on timeout SIGTERM, which the
	// script's trap turns into removing its namespaces and processes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("scripts/ha-demo.sh %v: %v in %v", demoEnv, runErr, time.Since(start).Round(time.Second))

	got := map[string][]string{}
	for _, m := range summary.FindAllStringSubmatch(out.String(), -1) {
		got[m[1]] = m
	}
	with, without := got["with"], got["without"]
	if with == nil || without == nil {
		t.Fatalf("the demo did not end with its two summary lines (%v):\n%s", runErr, out.String())
	}
	if i := bytes.Index(out.Bytes(), []byte("### ")); i >= 0 {
		t.Logf("the demo's report:\n%s", out.Bytes()[i:])
	}
	t.Log(without[0])
	k, _ := strconv.Atoi(with[2])
	n, _ := strconv.Atoi(with[3])
	if k != n || with[4] != "yes" || runErr != nil {
		t.Errorf("%s (exit: %v); want every connection kept and the transfer complete:\n%s", with[0], runErr, out.String())
	} else {
		t.Log(with[0])
	}
}

// build compiles pkg (relative to the module's root) into out with the go
// that runs the test.
func build(t *testing.T, root, out, pkg string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build %s: %v", pkg, err)
	}
	// -buildvcs=false: no VCS stamp needed, and git refuses a checkout
	// owned by another user.
	cmd := exec.Command(goTool, "build", "-buildvcs=false", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}
