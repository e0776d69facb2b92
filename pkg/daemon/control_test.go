package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statewall/statewall/internal/testenv"
)

// TestControlSocketRefusesUnsafeDirectory: the daemon will not create its
// control socket where someone other than root could replace it (a
// directory writable by group or others), and it refuses to take over the
// socket of a running daemon. The socket it does create is mode 0600.
func TestControlSocketRefusesUnsafeDirectory(t *testing.T) {
	testenv.NeedRoot(t, "the socket directory must belong to root")
	dir := t.TempDir()
	unsafe := filepath.Join(dir, "shared")
	if err := os.Mkdir(unsafe, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(unsafe, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	if ln, err := listenControl(filepath.Join(unsafe, "statewall.sock")); err == nil {
		ln.Close()
		t.Fatal("created a control socket in a world-writable directory")
	} else if !strings.Contains(err.Error(), "must belong to root and not be writable") {
		t.Errorf("unclear error: %v", err)
	}

	safe := filepath.Join(dir, "run")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(safe, "statewall.sock")
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if ln2, err := listenControl(path); err == nil {
		ln2.Close()
		t.Fatal("took over the socket of a running daemon")
	} else if !strings.Contains(err.Error(), "another statewall is running") {
		t.Errorf("unclear error: %v", err)
	}
}
