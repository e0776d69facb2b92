package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNeedRoot runs a test that calls NeedRoot in a child process, as the
// user it runs as: without root it must skip, or fail when RootTestsEnv
// demands root tests; as root it must run, and fail for a missing tool.
func TestNeedRoot(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "" {
		NeedRoot(t, "testing NeedRoot", strings.Fields(os.Getenv("TESTENV_TOOLS"))...)
		t.Log("ran")
		return
	}
	run := func(env ...string) string {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNeedRoot$", "-test.v")
		cmd.Env = append(os.Environ(), append([]string{"TESTENV_CHILD=1"}, env...)...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if os.Geteuid() == 0 {
		if out := run(RootTestsEnv + "=1"); !strings.Contains(out, "--- PASS") || !strings.Contains(out, "ran") {
			t.Errorf("as root it should run:\n%s", out)
		}
		if out := run("TESTENV_TOOLS=no-such-tool-here"); !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "no-such-tool-here is missing") {
			t.Errorf("a missing tool should fail the test:\n%s", out)
		}
		return
	}
	if out := run(RootTestsEnv + "=0"); !strings.Contains(out, "--- SKIP") {
		t.Errorf("without root it should skip:\n%s", out)
	}
	if out := run(RootTestsEnv + "=1"); !strings.Contains(out, "--- FAIL") {
		t.Errorf("without root, with %s=1, it should fail:\n%s", RootTestsEnv, out)
	}
}
