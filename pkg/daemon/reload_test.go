package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadRefusesFixedSettings: set limit and set timeout cannot change
// at a reload (the table keeps its size and timeouts), so a reload that
// changes them is refused with a message saying so, and the old ruleset
// stays; the same file with the old values reloads.
func TestReloadRefusesFixedSettings(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "r.rules")
	write := func(s string) {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("set limit states 1000\npass\n")
	d, err := New(Config{RulesFile: f, ControlSocket: filepath.Join(dir, "s")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ src, want string }{
		{"set limit states 2000\npass\nblock\n", "changes set limit states (2000, running 1000), which take effect only when statewall starts"},
		{"set limit states 1000\nset timeout udp 5s\npass\nblock\n", "changes set timeout, which take effect only when statewall starts"},
		{"set limit states 1000\nset limit src-nodes 5\npass\nblock\n", "changes set limit src-nodes (5, running 10000)"},
	} {
		write(tt.src)
		if _, err := d.Reload(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("reload of %q: %v, want %q", tt.src, err, tt.want)
		}
		if n := len(d.stateful.Rules().Rules); n != 1 {
			t.Errorf("after a refused reload the ruleset has %d rules, want the old 1", n)
		}
	}
	write("set limit states 1000\npass\nblock\n")
	if _, err := d.Reload(); err != nil || len(d.stateful.Rules().Rules) != 2 {
		t.Errorf("reload with the same settings: %v, %d rules", err, len(d.stateful.Rules().Rules))
	}
}
