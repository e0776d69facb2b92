package rules

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestInclude: included statements count as if written in place; paths
// are relative to the including file; includes nest; defines cross files.
func TestInclude(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.rules":            "define web = { 80, 443 }\ninclude \"lists/blocklist.rules\"\npass proto tcp to any port $web\n",
		"lists/blocklist.rules": "define bad = { 198.18.9.0/24 }\ninclude \"more.rules\"\nblock from $bad\n",
		"lists/more.rules":      "block from 198.18.8.1\n",
	})
	rs, err := ParseFile(filepath.Join(dir, "main.rules"))
	if err != nil {
		t.Fatal(err)
	}
	want := "block from 198.18.8.1\nblock from 198.18.9.0/24\npass proto tcp to any port { 80, 443 }\n"
	if got := rs.String(); got != want {
		t.Errorf("String()\n got %q\nwant %q", got, want)
	}
	if f := rs.Rules[0].File; f != filepath.Join(dir, "lists/more.rules") || rs.Rules[0].Line != 1 {
		t.Errorf("rule 1 from %q line %d", f, rs.Rules[0].Line)
	}
	if rs.Rules[2].File != "" || rs.Rules[2].Line != 3 {
		t.Errorf("rule 3 from %q line %d, want the main file, line 3", rs.Rules[2].File, rs.Rules[2].Line)
	}
}

func TestIncludeErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"bad.rules":        "include \"sub/broken.rules\"\n",
		"sub/broken.rules": "block from 198.18.0.1\nblock from 198.18.0.300 port 1\n",
		"loop.rules":       "include \"loop2.rules\"\n",
		"loop2.rules":      "pass\ninclude \"loop.rules\"\n",
		"missing.rules":    "pass\n  include \"nothere.rules\"\n",
		"noquote.rules":    "include nothere.rules\n",
	})
	for _, tt := range []struct{ file, want string }{
		{"bad.rules", filepath.Join(dir, "sub/broken.rules") + `:2:12: expected address or '{' after 'from', got "198.18.0.300"`},
		{"loop.rules", filepath.Join(dir, "loop2.rules") + ":2:9: include loop: " + filepath.Join(dir, "loop.rules") + " includes " + filepath.Join(dir, "loop2.rules") + " includes " + filepath.Join(dir, "loop.rules")},
		{"missing.rules", filepath.Join(dir, "missing.rules") + `:2:11: cannot include "nothere.rules": open ` + filepath.Join(dir, "nothere.rules") + ": no such file or directory"},
		{"noquote.rules", filepath.Join(dir, "noquote.rules") + `:1:9: expected a quoted file name after 'include', got "nothere.rules"`},
	} {
		_, err := ParseFile(filepath.Join(dir, tt.file))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s:\n got %v\nwant %s", tt.file, err, tt.want)
		}
		if _, ok := err.(*Error); !ok {
			t.Errorf("%s: error %T, want *Error", tt.file, err)
		}
	}
}
