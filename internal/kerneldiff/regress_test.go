//go:build linux

package kerneldiff

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// regressDir holds the minimized captures of the disagreements the
// differential test found, each NAME.pcap with a NAME.pcap.cmd that says
// how it was made and what each packet is, and the kernel's labels in
// internal/oracle/testdata/kernel-labels/NAME.jsonl.
const (
	regressDir = "../../testdata/kerneldiff"
	goldenDir  = "../oracle/testdata/kernel-labels"
)

// pending lists the regressions statewall still labels differently from
// the kernel, each with the generator gate that keeps its kind of traffic
// out of the make-test budget until the fix lands. Such a capture is
// replayed and its disagreement logged, not failed; one that agrees with
// the kernel fails the test until it leaves this list, so that the list
// cannot go stale: when it does, check `make fuzz-kernel GATES=<gate>` and
// add the gate to budgetGates.
var pending = map[string]string{}

// TestRegressions replays every capture in testdata/kerneldiff through
// the kernel and statewall. Each must agree, or be pending; where the
// running kernel is the one the golden labels were made on, the kernel's
// labels must also equal them.
func TestRegressions(t *testing.T) {
	needRoot(t)
	files, err := filepath.Glob(filepath.Join(regressDir, "*.pcap"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s (%v)", regressDir, err)
	}
	goldKernel := goldenKernel(t)
	var uts unix.Utsname
	unix.Uname(&uts)
	kernel := unix.ByteSliceToString(uts.Release[:])
	cfg := Config{Rules: defaultPass(t)}
	cfg.Oracle.KeepAddresses = true
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		seen[name] = true
		if _, err := os.Stat(f + ".cmd"); err != nil {
			t.Errorf("%s has no .cmd saying how it was made", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := Compare(ctx, f, cfg)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var diffs []string
		for _, d := range res.Diffs {
			diffs = append(diffs, d.String())
		}
		gate, isPending := pending[name]
		switch {
		case len(diffs) > 0 && isPending:
			t.Logf("%s: still disagrees, pending (gate %s): %s", name, gate, strings.Join(diffs, "; "))
		case len(diffs) > 0:
			t.Errorf("%s: statewall disagrees with the kernel: %s", name, strings.Join(diffs, "; "))
		case isPending:
			t.Errorf("%s agrees with the kernel now: take it out of pending, and once `make fuzz-kernel GATES=%s` is clean add the gate to budgetGates", name, gate)
		}
		if kernel != goldKernel {
			continue
		}
		golden := readGolden(t, strings.TrimSuffix(name, ".pcap")+".jsonl")
		if len(golden) != len(res.Kernel) {
			t.Errorf("%s: %d kernel labels, %d golden ones", name, len(res.Kernel), len(golden))
			continue
		}
		for i, g := range golden {
			if k := res.Kernel[i]; k.CT != g.CT || k.Dir != g.Dir {
				t.Errorf("%s #%d: the kernel says %s, its golden %s", name, i, labelText(k.CT, k.Dir), labelText(g.CT, g.Dir))
			}
		}
	}
	for name := range pending {
		if !seen[name] {
			t.Errorf("pending names %s, which is not in %s", name, regressDir)
		}
	}
}

// goldenKernel reads the kernel the regressions' golden labels were made
// on from the goldens' README ("- Kernel (kerneldiff regressions): ...").
func goldenKernel(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, ok := strings.CutPrefix(line, "- Kernel (kerneldiff regressions): "); ok {
			return strings.TrimSpace(k)
		}
	}
	t.Fatal("goldens README: no line \"- Kernel (kerneldiff regressions): ...\"")
	return ""
}

type goldenLine struct {
	Index int    `json:"index"`
	CT    string `json:"ct"`
	Dir   string `json:"dir,omitempty"`
}

func readGolden(t *testing.T, name string) []goldenLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenLine
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var g goldenLine
		if err := json.Unmarshal([]byte(line), &g); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, g)
	}
	return out
}
