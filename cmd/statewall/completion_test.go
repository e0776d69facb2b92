package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// complete runs the bash completion function on a command line (the word
// under the cursor last) and returns its candidates.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var q []string
	for _, w := range words {
		q = append(q, shQuote(w))
	}
	prog := `source "$1" || exit 9
COMP_WORDS=(` + strings.Join(q, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_statewall
printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", "-c", prog, "bash", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	code, out, errs := statewall(t, "completion", "bash")
	if code != 0 || errs != "" {
		t.Fatalf("completion bash: exit %d, stderr %q", code, errs)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "statewall")
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("bash", "-c", `source "$1" && complete -p statewall`, "bash", script).CombinedOutput(); err != nil ||
		strings.TrimSpace(string(o)) != "complete -F _statewall statewall" {
		t.Fatalf("complete -p statewall: %v, %q", err, o)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.rules"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"statewall", "rel"}, "reload"},
		{[]string{"statewall", "--ver"}, "--version"},
		{[]string{"statewall", "run", "--on-bad"}, "--on-bad-rules"},
		{[]string{"statewall", "run", "--mode", "sha"}, "shadow"},
		{[]string{"statewall", "run", "--on-bad-rules", ""}, "refuse block"},
		{[]string{"statewall", "run", "--on-bad-rules", "=", "bl"}, "block"},
		{[]string{"statewall", "replay", "--format", ""}, "text jsonl summary"},
		{[]string{"statewall", "run", "--rules", filepath.Join(dir, "x.r")}, filepath.Join(dir, "x.rules")},
		{[]string{"statewall", "check", filepath.Join(dir, "x")}, filepath.Join(dir, "x.rules")},
		{[]string{"statewall", "help", "comp"}, "completion"},
		{[]string{"statewall", "completion", ""}, "bash zsh"},
		{[]string{"statewall", "run", "--queues", ""}, ""},
	} {
		if got := strings.Join(complete(t, script, tc.words...), " "); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestZshCompletion: the zsh script parses, and the flags are there; where
// zsh is installed it must also load with compinit.
func TestZshCompletion(t *testing.T) {
	code, out, errs := statewall(t, "completion", "zsh")
	if code != 0 || errs != "" || !strings.HasPrefix(out, "#compdef statewall\n") {
		t.Fatalf("completion zsh: exit %d, stderr %q, out %.40q", code, errs, out)
	}
	for _, w := range []string{"'--on-bad-rules=[", ":what:(refuse block)'", "'--rules=[", ":file:_files'", "'reload:make the running daemon reload its rules file'"} {
		if !strings.Contains(out, w) {
			t.Errorf("zsh completion lacks %q", w)
		}
	}
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh: syntax not checked")
	}
	script := filepath.Join(t.TempDir(), "_statewall")
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := exec.Command("zsh", "-f", "-c", `autoload -U compinit && compinit -u -D && source "$1" && print -r -- $_comps[statewall]`, "zsh", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(o)) != "_statewall" {
		t.Errorf("zsh: %v, %q", err, o)
	}
}

func TestCompletionUsage(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"completion", "bash", "zsh"}} {
		if code, out, _ := statewall(t, args...); code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %.40q; want 2 and nothing", args, code, out)
		}
	}
}
