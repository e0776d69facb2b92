package command

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests run sh, cat, echo and sleep; none needs root, and none makes
// a network namespace.

func TestRunReturnsStdout(t *testing.T) {
	out, err := Run(context.Background(), Cmd{}, "echo", "hello", "world")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hello world\n" {
		t.Errorf("stdout %q, want %q", out, "hello world\n")
	}
}

func TestRunFeedsStdin(t *testing.T) {
	out, err := Run(context.Background(), Cmd{Stdin: "line 1\nline 2\n"}, "cat")
	if err != nil {
		t.Fatal(err)
	}
	if out != "line 1\nline 2\n" {
		t.Errorf("stdout %q, want the input back", out)
	}
	// No Stdin means no input (not the test's own stdin): cat ends at once.
	out, err = Run(context.Background(), Cmd{Timeout: 5 * time.Second}, "cat")
	if err != nil || out != "" {
		t.Errorf("cat without input: %q, %v", out, err)
	}
}

func TestRunFailure(t *testing.T) {
	out, err := Run(context.Background(), Cmd{},
		"sh", "-c", "echo partial result; echo 'no such table' >&2; exit 3")
	if err == nil {
		t.Fatal("exit status 3 gave no error")
	}
	msg := err.Error()
	for _, want := range []string{"sh -c echo partial result;", "exit status 3", "no such table"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	// Stderr, trimmed, ends the error; stdout is left out when stderr speaks.
	if !strings.HasSuffix(msg, "exit status 3: no such table") {
		t.Errorf("error %q does not end with the trimmed stderr alone", msg)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("error %q does not unwrap to *exec.ExitError", msg)
	}
	if ee.ExitCode() != 3 {
		t.Errorf("exit code %d, want 3", ee.ExitCode())
	}
	if out != "partial result\n" {
		t.Errorf("stdout of the failed command %q, want it returned", out)
	}
}

// A tool that reports on stdout (iptables-restore in some versions) still
// explains its failure.
func TestRunFailureStdoutOnly(t *testing.T) {
	_, err := Run(context.Background(), Cmd{}, "sh", "-c", "echo '  line 2: bad rule  '; exit 1")
	if err == nil {
		t.Fatal("exit status 1 gave no error")
	}
	if !strings.HasSuffix(err.Error(), "exit status 1: line 2: bad rule") {
		t.Errorf("error %q does not end with the trimmed stdout", err)
	}
}

func TestRunNotFound(t *testing.T) {
	_, err := Run(context.Background(), Cmd{}, "statewall-no-such-tool", "-x")
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("error %v, want exec.ErrNotFound", err)
	}
	if err != nil && !strings.Contains(err.Error(), "statewall-no-such-tool -x") {
		t.Errorf("error %q does not name the command line", err)
	}
}

func TestOutputReturnsStderr(t *testing.T) {
	out, stderr, err := Output(context.Background(), Cmd{}, "sh", "-c", "echo result; echo warning >&2")
	if err != nil {
		t.Fatal(err)
	}
	if out != "result\n" || stderr != "warning\n" {
		t.Errorf("stdout %q, stderr %q", out, stderr)
	}
	_, stderr, err = Output(context.Background(), Cmd{}, "sh", "-c", "echo refused >&2; exit 1")
	if err == nil || stderr != "refused\n" {
		t.Errorf("failing command: stderr %q, err %v", stderr, err)
	}
}

// killedQuickly runs sleep 10 and checks that it was stopped well before,
// by the deadline, with an error that says so.
func killedQuickly(t *testing.T, ctx context.Context, c Cmd, wantCtxErr error) {
	t.Helper()
	start := time.Now()
	_, err := Run(ctx, c, "sleep", "10")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("sleep 10 ran %v", d)
	}
	if err == nil {
		t.Fatal("no error from a killed command")
	}
	if !errors.Is(err, wantCtxErr) {
		t.Errorf("error %q is not %v", err, wantCtxErr)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("error %q does not unwrap to *exec.ExitError", err)
	}
	if !strings.Contains(err.Error(), "sleep 10") {
		t.Errorf("error %q does not name the command", err)
	}
}

func TestTimeout(t *testing.T) {
	killedQuickly(t, context.Background(), Cmd{Timeout: 100 * time.Millisecond}, context.DeadlineExceeded)
}

// The caller's deadline applies although Cmd has none (DefaultTimeout).
func TestContextDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	killedQuickly(t, ctx, Cmd{}, context.DeadlineExceeded)
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	killedQuickly(t, ctx, Cmd{Timeout: time.Minute}, context.Canceled)
}

func TestInNetns(t *testing.T) {
	args := []string{"-f", "-"}
	name, argv := InNetns("sw-test", "nft", args...)
	if name != "ip" {
		t.Errorf("name %q, want ip", name)
	}
	if want := []string{"netns", "exec", "sw-test", "nft", "-f", "-"}; !slices.Equal(argv, want) {
		t.Errorf("argv %q, want %q", argv, want)
	}
	if !slices.Equal(args, []string{"-f", "-"}) {
		t.Errorf("InNetns changed its arguments: %q", args)
	}
	name, argv = InNetns("ns", "iptables-save")
	if name != "ip" || !slices.Equal(argv, []string{"netns", "exec", "ns", "iptables-save"}) {
		t.Errorf("no arguments: %q %q", name, argv)
	}
}

// Cmd.Netns runs the command through ip netns exec: shown here by the
// error for a namespace that does not exist (none is created).
func TestRunNetnsCommandLine(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed")
	}
	const ns = "sw-command-test-no-such-namespace"
	_, err := Run(context.Background(), Cmd{Netns: ns, Timeout: 5 * time.Second}, "echo", "hi")
	if err == nil {
		t.Fatalf("ip netns exec in the missing namespace %s succeeded", ns)
	}
	if want := "ip netns exec " + ns + " echo hi: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("error %q does not unwrap to *exec.ExitError", err)
	}
}
