package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall runs `make install` into a scratch DESTDIR and checks
// what it installed: every file, the unit with the paths put in (and, with
// systemd-analyze, that systemd accepts it), the example ruleset kept on a
// second install, the man pages rendered without a warning, the completions
// loaded, and the binary's version.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	for _, tool := range []string{"make", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	dest := t.TempDir()
	install := func() string {
		t.Helper()
		cmd := exec.Command("make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr", "BINDIR=/usr/sbin")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	files := map[string]os.FileMode{
		"usr/sbin/statewall":                              0o755,
		"usr/lib/systemd/system/statewall.service":        0o644,
		"etc/statewall/statewall.rules":                   0o644,
		"usr/share/man/man8/statewall.8":                  0o644,
		"usr/share/man/man5/statewall.rules.5":            0o644,
		"usr/share/bash-completion/completions/statewall": 0o644,
		"usr/share/zsh/site-functions/_statewall":         0o644,
	}
	for f, mode := range files {
		st, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Error(err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	path := func(f string) string { return filepath.Join(dest, f) }

	unit, _ := os.ReadFile(path("usr/lib/systemd/system/statewall.service"))
	for _, w := range []string{"\nExecStart=/usr/sbin/statewall run --rules /etc/statewall/statewall.rules ", "\nExecReload=/usr/sbin/statewall reload\n", "\nType=notify\n"} {
		if !bytes.Contains(unit, []byte(w)) {
			t.Errorf("installed unit lacks %q", w)
		}
	}
	if bytes.Contains(unit, []byte("/usr/local/bin")) {
		t.Error("installed unit still names /usr/local/bin")
	}

	// The example ruleset is the workstation's, and a second install keeps
	// the administrator's.
	example, _ := os.ReadFile(repoRoot + "/rules/workstation.rules")
	if got, _ := os.ReadFile(path("etc/statewall/statewall.rules")); !bytes.Equal(got, example) {
		t.Error("the installed ruleset is not rules/workstation.rules")
	}
	mine := []byte("pass all # mine\n")
	if err := os.WriteFile(path("etc/statewall/statewall.rules"), mine, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := install(); !strings.Contains(out, "statewall.rules exists: kept") {
		t.Errorf("second install does not say it kept the ruleset:\n%s", out)
	}
	if got, _ := os.ReadFile(path("etc/statewall/statewall.rules")); !bytes.Equal(got, mine) {
		t.Error("a second install overwrote /etc/statewall/statewall.rules")
	}

	out, err := exec.Command(path("usr/sbin/statewall"), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "statewall ") {
		t.Errorf("statewall --version: %v, %q", err, out)
	}

	// The shipped pages are those TestManPages checks against the sources;
	// here: installed, they render.
	if _, err := exec.LookPath("man"); err != nil {
		t.Error("man is not installed (scripts/install-deps.sh installs man-db)")
	} else {
		checkManRenders(t, path("usr/share/man/man8/statewall.8"))
		checkManRenders(t, path("usr/share/man/man5/statewall.rules.5"))
	}

	o, err := exec.Command("bash", "-c", `source "$1" && complete -p statewall`, "bash", path("usr/share/bash-completion/completions/statewall")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(o)) != "complete -F _statewall statewall" {
		t.Errorf("bash completion: %v, %q", err, o)
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		o, err := exec.Command("zsh", "-f", "-c", `autoload -U compinit && compinit -u -D && fpath=("$1" $fpath) && autoload -U _statewall && compdef _statewall statewall && print -r -- $_comps[statewall]`,
			"zsh", path("usr/share/zsh/site-functions")).CombinedOutput()
		if err != nil || strings.TrimSpace(string(o)) != "_statewall" {
			t.Errorf("zsh completion: %v, %q", err, o)
		}
	}

	verifyUnit(t, dest, path("usr/lib/systemd/system/statewall.service"), path("usr/sbin/statewall"), path("usr/share/man"))
}

// verifyUnit runs systemd-analyze verify on the installed unit, its binary
// path pointed into DESTDIR (verify checks that it exists) and MANPATH at
// the installed pages (verify runs man for Documentation=), and checks its
// exposure score (systemd-analyze security --offline) stays "OK".
func verifyUnit(t *testing.T, dest, unitPath, bin, manPath string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Error("systemd-analyze is not installed (scripts/install-deps.sh installs systemd)")
		return
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	u := filepath.Join(dir, "statewall.service")
	if err := os.WriteFile(u, bytes.ReplaceAll(unit, []byte("/usr/sbin/statewall"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", u)
	cmd.Env = append(os.Environ(), "MANPATH="+manPath, "SYSTEMD_LOG_LEVEL=warning")
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", u).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
		return
	}
	i := bytes.LastIndex(out, []byte("Overall exposure level"))
	if i < 0 || !bytes.Contains(out[i:], []byte(" OK")) {
		t.Errorf("systemd-analyze security: exposure not OK:\n%s", out[max(0, i):])
	}
}
