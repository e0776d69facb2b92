package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHAKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out, errb bytes.Buffer
	if code := run([]string{"ha", "keygen", "--dir", dir, "--nodes", "a,b"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, f := range []string{"ca.crt", "ca.key", "a.crt", "a.key", "b.crt", "b.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(out.String(), "a.crt, a.key, b.crt, b.key") {
		t.Errorf("output: %q", out.String())
	}
	// Again: the node files exist, nothing is overwritten.
	errb.Reset()
	if code := run([]string{"ha", "keygen", "--dir", dir, "--nodes", "a"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "already exists") {
		t.Errorf("second keygen of a: exit %d, %q", code, errb.String())
	}
	for _, args := range [][]string{{"ha"}, {"ha", "keygen", "--dir", dir}, {"ha", "keygen", "--nodes", "c"}, {"ha", "genkey", "--dir", dir, "--nodes", "c"}} {
		errb.Reset()
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage): %s", args, code, errb.String())
		}
	}
}
