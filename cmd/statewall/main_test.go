package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Paths from this package's directory.
const (
	repoRoot = "../.."
	testdata = "../../testdata"
	rulesDir = "../../rules"
)

// statewall runs the command in-process and returns its exit status and
// what it printed.
func statewall(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, errs := statewall(t, "version")
	if code != 0 || !strings.HasPrefix(out, "statewall ") || strings.Count(out, "\n") != 1 || errs != "" {
		t.Errorf("version: exit %d, stdout %q, stderr %q; want 0 and one line \"statewall ...\"", code, out, errs)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "help"}} {
		code, out, errs := statewall(t, args...)
		if code != 0 || errs != "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
		for _, c := range []string{"Usage:", "replay", "check", "version", "help"} {
			if !strings.Contains(out, c) {
				t.Errorf("%q: usage lacks %q:\n%s", args, c, out)
			}
		}
	}
	for _, tc := range []struct {
		cmd   string
		words []string
	}{
		{"replay", []string{"-rules", "-mode", "-format", "compare", "jsonl"}},
		{"check", []string{"-q"}},
		{"version", nil},
	} {
		code, out, errs := statewall(t, "help", tc.cmd)
		if code != 0 || errs != "" || !strings.HasPrefix(out, "Usage: statewall "+tc.cmd) {
			t.Errorf("help %s: exit %d, stderr %q, stdout %q", tc.cmd, code, errs, out)
		}
		for _, w := range tc.words {
			if !strings.Contains(out, w) {
				t.Errorf("help %s lacks %q:\n%s", tc.cmd, w, out)
			}
		}
		// COMMAND -h says the same.
		if code2, out2, _ := statewall(t, tc.cmd, "-h"); code2 != 0 || out2 != out {
			t.Errorf("%s -h: exit %d, output differs from help %s", tc.cmd, code2, tc.cmd)
		}
	}
}

// TestUsageErrors: a wrong call exits 2, says what is wrong on stderr with
// a hint where to look, and prints nothing on stdout (which may be piped
// into another tool).
func TestUsageErrors(t *testing.T) {
	rules := rulesDir + "/webserver.rules"
	pcap := testdata + "/ping-v4.pcap"
	for _, tc := range []struct {
		args      []string
		msg, hint string
	}{
		{nil, "Usage:", ""},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, ""},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`, ""},
		{[]string{"replay"}, "--rules FILE is required", "replay"},
		{[]string{"replay", pcap}, "--rules FILE is required", "replay"},
		{[]string{"replay", "--rules", rules}, "no capture files given", "replay"},
		{[]string{"replay", "--rules", rules, "--mode", "both", pcap}, `unknown mode "both"`, "replay"},
		{[]string{"replay", "--rules", rules, "--format", "xml", pcap}, `unknown format "xml"`, "replay"},
		{[]string{"replay", "--rulez", rules, pcap}, "flag provided but not defined: -rulez", "replay"},
		{[]string{"replay", "--rules"}, "flag needs an argument: -rules", "replay"},
		{[]string{"check"}, "want exactly one rules file, got 0", "check"},
		{[]string{"check", rules, rules}, "want exactly one rules file, got 2", "check"},
		{[]string{"check", "-v", rules}, "flag provided but not defined: -v", "check"},
		{[]string{"version", "--json"}, "flag provided but not defined: -json", "version"},
		{[]string{"run", "--rules", rules, "--sync-peer", "198.18.0.2:7946"}, "state sync needs --sync-cert, --sync-key and --sync-ca", "run"},
		{[]string{"run", "--rules", rules, "--sync-cert", "a.crt", "--sync-key", "a.key", "--sync-ca", "ca.crt"}, "state sync needs --sync-listen, --sync-peer or both", "run"},
		{[]string{"run", "--rules", rules, "--sync-listen", "198.18.0.1", "--sync-cert", "a.crt", "--sync-key", "a.key", "--sync-ca", "ca.crt"}, `state sync address "198.18.0.1"`, "run"},
		{[]string{"run", "--rules", rules, "--sync-listen", "198.18.0.1:7946", "--sync-defer", "20ms", "--sync-cert", "a.crt", "--sync-key", "a.key", "--sync-ca", "ca.crt"}, "--sync-defer needs a --sync-peer", "run"},
		{[]string{"run", "--rules", rules, "--sync-peer", "198.18.0.2:7946", "--sync-defer", "2s", "--sync-cert", "a.crt", "--sync-key", "a.key", "--sync-ca", "ca.crt"}, "--sync-defer 2s: want 0 (off) to 1s", "run"},
	} {
		code, out, errs := statewall(t, tc.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(errs, tc.msg) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, errs, tc.msg)
		}
		if tc.hint != "" && !strings.Contains(errs, "Run 'statewall help "+tc.hint+"' for usage.") {
			t.Errorf("%q: stderr %q lacks the hint", tc.args, errs)
		}
		if out != "" {
			t.Errorf("%q: stdout %q, want nothing", tc.args, out)
		}
	}
}

// TestInterleavedFlags: flags may follow the arguments, as in most tools;
// after "--" everything is an argument.
func TestInterleavedFlags(t *testing.T) {
	f := filepath.Join(t.TempDir(), "r.rules")
	if err := os.WriteFile(f, []byte("pass in proto tcp to port 22\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c1, o1, e1 := statewall(t, "check", "--hooks", "output", "--no-host", f)
	c2, o2, e2 := statewall(t, "check", f, "--hooks", "output", "--no-host")
	if c1 != 0 || c1 != c2 || o1 != o2 || e1 != e2 || !strings.Contains(e2, "never matches") {
		t.Errorf("flags before: %d %q %q\nflags after: %d %q %q", c1, o1, e1, c2, o2, e2)
	}
	if code, _, errs := statewall(t, "check", "--no-host", "--", "--hooks"); code != 1 || !strings.Contains(errs, "--hooks") {
		t.Errorf("after --, --hooks is a file name: exit %d, %q", code, errs)
	}
}

// withStdin runs fn with os.Stdin reading the file at path.
func withStdin(t *testing.T, path string, fn func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	fn()
}

// TestStdin: check and replay read standard input for "-".
func TestStdin(t *testing.T) {
	f := filepath.Join(t.TempDir(), "r.rules")
	if err := os.WriteFile(f, []byte("define web = { 80, 443 }\npass proto tcp to port $web\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withStdin(t, f, func() {
		if code, out, errs := statewall(t, "check", "--no-host", "-"); code != 0 || out != "pass proto tcp to any port { 80, 443 }\n" {
			t.Errorf("check -: exit %d, %q, %q", code, out, errs)
		}
	})
	capture := filepath.Join(repoRoot, "testdata", "http-curl-v4.pcap")
	_, want, _ := statewall(t, "replay", "--rules", f, "--format", "summary", capture)
	withStdin(t, capture, func() {
		if code, out, errs := statewall(t, "replay", "--rules", f, "--format", "summary", "-"); code != 0 || out != want {
			t.Errorf("replay -: exit %d, stderr %q\n got %q\nwant %q", code, errs, out, want)
		}
	})
}
