//go:build linux

package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/testenv"
	"github.com/statewall/statewall/pkg/conntrack"
)

// The state file tests below call loadState and saveState on a daemon
// that is not running: no namespace, no queue. They need root to chown
// files to nobody (65534) and to be the root the checks want.

// craftedState is the security review's state file: one assured UDP
// entry, 198.18.1.2:5000 > 198.18.2.2:53, with 2^62 ns (146 years) left.
// Restored as is, it let that tuple pass under a `block all` ruleset.
func craftedState() []byte {
	le := binary.LittleEndian
	b := make([]byte, 16+140+4)
	copy(b, "SWCT")
	le.PutUint16(b[4:], 1)   // version
	le.PutUint16(b[6:], 140) // record size
	le.PutUint64(b[8:], 1)   // count
	r := b[16 : 16+140]
	copy(r[0:16], []byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 2})
	copy(r[16:32], []byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 2, 15: 2})
	le.PutUint16(r[32:], 5000)
	le.PutUint16(r[34:], 53)
	r[36], r[37], r[38] = 17, 4, 3 // UDP, IPv4, seen reply and assured
	le.PutUint64(r[40:], 1<<62)
	le.PutUint32(b[16+140:], crc32.Checksum(b[:16+140], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// lockedBuffer is a log destination the race detector accepts.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stateDaemon is a daemon with an empty table and the state file path,
// not running, and its log.
func stateDaemon(t *testing.T, path string) (*Daemon, *lockedBuffer) {
	t.Helper()
	testenv.NeedRoot(t, "chown, and the state file's checks want root")
	log := &lockedBuffer{}
	return &Daemon{
		cfg:   Config{StateFile: path, Clock: SystemClock{}},
		log:   slog.New(slog.NewTextHandler(log, nil)),
		table: conntrack.New(conntrack.Config{}),
	}, log
}

func mustWrite(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func fileOwner(t *testing.T, fi os.FileInfo) uint32 {
	t.Helper()
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestStateFileSaveFollowsNoLink: what others planted in the state file's
// directory is never opened or followed by a save. The review's cases:
// the old save opened PATH.tmp with O_CREAT|O_TRUNC, so a symbolic link
// there had a victim file overwritten with the snapshot (then the link
// was renamed onto PATH), and a planted 0666 file of another user was
// reused, leaving the saved table readable and writable by that user.
func TestStateFileSaveFollowsNoLink(t *testing.T) {
	testenv.NeedRoot(t, "chown, and the state file's checks want root")
	for _, c := range []struct {
		name  string
		plant func(t *testing.T, path, victim string)
	}{
		{"symbolic link at PATH.tmp", func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, path+".tmp"); err != nil {
				t.Fatal(err)
			}
		}},
		{"symbolic link at PATH", func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"0666 file of nobody at PATH.tmp", func(t *testing.T, path, victim string) {
			mustWrite(t, path+".tmp", nil, 0o666)
			if err := os.Chown(path+".tmp", 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "router.state")
			victim := filepath.Join(t.TempDir(), "victim")
			mustWrite(t, victim, []byte("the victim's own bytes\n"), 0o644)
			c.plant(t, path, victim)

			d, log := stateDaemon(t, path)
			if _, err := d.table.Load(bytes.NewReader(craftedState()), d.cfg.Clock.Monotonic()); err != nil {
				t.Fatal(err)
			}
			if err := d.saveState(); err != nil {
				t.Fatalf("saveState: %v\n%s", err, log)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "the victim's own bytes\n" {
				t.Errorf("the victim behind the link was changed: %q, %v", b, err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || fileOwner(t, fi) != uint32(os.Geteuid()) {
				t.Errorf("state file %v owned by %d, want a regular file, mode 0600, owned by %d", fi.Mode(), fileOwner(t, fi), os.Geteuid())
			}
			d2, log2 := stateDaemon(t, path)
			d2.loadState()
			if d2.table.Len() != 1 || !strings.Contains(log2.String(), "connection table loaded") {
				t.Errorf("the saved file does not load (%d entries):\n%s", d2.table.Len(), log2)
			}
		})
	}
}

// TestStateFileRefusesUnsafeFile: a state file that someone other than
// root may have written, or that is not a regular file, is refused at
// start as a corrupt one is: logged with the reason, renamed PATH.bad,
// empty table. The review's case: a file of nobody's holding one assured
// UDP entry was loaded, and that tuple passed under `block all`.
func TestStateFileRefusesUnsafeFile(t *testing.T) {
	testenv.NeedRoot(t, "chown, and the state file's checks want root")
	for _, c := range []struct {
		name, why string
		plant     func(t *testing.T, path string)
	}{
		{"owned by nobody", "owned by uid 65534", func(t *testing.T, path string) {
			mustWrite(t, path, craftedState(), 0o600)
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
		{"mode 0666", "mode 0666", func(t *testing.T, path string) {
			mustWrite(t, path, craftedState(), 0o666)
		}},
		{"mode 0640", "mode 0640", func(t *testing.T, path string) {
			mustWrite(t, path, craftedState(), 0o640)
		}},
		{"symbolic link", "symbolic link", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "elsewhere.state")
			mustWrite(t, target, craftedState(), 0o600)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if b, err := os.ReadFile(target); err != nil || !bytes.Equal(b, craftedState()) {
					t.Errorf("the link's target was changed: %v", err)
				}
			})
		}},
		{"fifo", "not a regular file", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "router.state")
			c.plant(t, path)
			d, log := stateDaemon(t, path)
			done := make(chan struct{})
			go func() { d.loadState(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("loadState hangs on the file")
			}
			if !strings.Contains(log.String(), "state file "+path+" rejected") || !strings.Contains(log.String(), c.why) ||
				!strings.Contains(log.String(), "starting with an empty table") {
				t.Errorf("the log should say the state file was rejected (%q):\n%s", c.why, log)
			}
			if n := d.table.Len(); n != 0 {
				t.Errorf("the table holds %d entries from a refused file", n)
			}
			if _, err := os.Lstat(path); err == nil {
				t.Error("the refused file is still in place")
			}
			if _, err := os.Lstat(path + ".bad"); err != nil {
				t.Errorf("the refused file should be kept as PATH.bad: %v", err)
			}
		})
	}
}

// TestStateFileRefusesUnsafeDirectory: a state file in a directory that
// others can write is not used at all, as the control socket is not
// created there: the start logs why and loads nothing, touching nothing
// in the directory, and the stop refuses to save.
func TestStateFileRefusesUnsafeDirectory(t *testing.T) {
	testenv.NeedRoot(t, "chown, and the state file's checks want root")
	for _, c := range []struct {
		name string
		mode os.FileMode
		uid  int
	}{
		{"world-writable", 0o777, 0},
		{"sticky world-writable (like /tmp)", 0o777 | os.ModeSticky, 0},
		{"group-writable", 0o775, 0},
		{"owned by nobody", 0o755, 65534},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, c.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, c.uid, 0); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "router.state")
			mustWrite(t, path, craftedState(), 0o600)

			d, log := stateDaemon(t, path)
			d.loadState()
			if n := d.table.Len(); n != 0 {
				t.Errorf("the table holds %d entries from a file in an unsafe directory", n)
			}
			if !strings.Contains(log.String(), "state file "+path+" disabled") ||
				!strings.Contains(log.String(), "must belong to root and not be writable by group or others") {
				t.Errorf("the log should say why the state file is not used:\n%s", log)
			}
			err := d.saveState()
			if err == nil || !strings.Contains(err.Error(), "must belong to root") {
				t.Errorf("saveState: %v, want a refusal", err)
			}
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, craftedState()) {
				t.Errorf("the file in the unsafe directory was changed: %v", err)
			}
			if names, _ := os.ReadDir(dir); len(names) != 1 {
				t.Errorf("the directory holds %v, want the state file alone", names)
			}
		})
	}
}

// TestStateFileCapsTimeout: a good state file (root's, 0600) whose entry
// claims 146 years left loads with at most the UDP stream timeout.
func TestStateFileCapsTimeout(t *testing.T) {
	testenv.NeedRoot(t, "chown, and the state file's checks want root")
	path := filepath.Join(t.TempDir(), "router.state")
	mustWrite(t, path, craftedState(), 0o600)
	d, log := stateDaemon(t, path)
	d.loadState()
	if d.table.Len() != 1 {
		t.Fatalf("%d entries loaded, want 1:\n%s", d.table.Len(), log)
	}
	d.table.Walk(d.table.Now(), func(e conntrack.EntryInfo) bool {
		if e.Timeout > conntrack.DefaultTimeouts.UDPStream {
			t.Errorf("entry %v restored with %v left, above the UDP stream timeout %v", e.Original, e.Timeout, conntrack.DefaultTimeouts.UDPStream)
		}
		return true
	})
	if _, err := os.Lstat(path); err == nil {
		t.Error("the loaded state file should be removed")
	}
}

// TestStateFileRemovesInterruptedSaves: a save that a crash interrupted
// leaves its temporary file (random names, so the next save does not
// reuse it); the next start removes it, and only it.
func TestStateFileRemovesInterruptedSaves(t *testing.T) {
	testenv.NeedRoot(t, "chown, and the state file's checks want root")
	dir := t.TempDir()
	path := filepath.Join(dir, "router.state")
	left := path + ".tmp-0123456789abcdef"
	mustWrite(t, left, []byte("half a snapshot"), 0o600)
	keep := []string{"router.state.tmp", "router.state.tmp-notours", "other.state.tmp-0123456789abcdef"}
	for _, n := range keep {
		mustWrite(t, filepath.Join(dir, n), nil, 0o600)
	}
	d, log := stateDaemon(t, path)
	d.loadState()
	if _, err := os.Lstat(left); err == nil {
		t.Errorf("the interrupted save's temporary file is still there:\n%s", log)
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(keep)
	if !slices.Equal(names, keep) {
		t.Errorf("the directory holds %v, want %v", names, keep)
	}
}

// TestRunRefusesUnsafeStateDirectory: a daemon given a state file in a
// directory others can write does not start: Run returns the error before
// it binds a queue or installs a rule.
func TestRunRefusesUnsafeStateDirectory(t *testing.T) {
	testenv.NeedRoot(t, "the state file's directory must belong to root")
	dir := t.TempDir()
	unsafe := filepath.Join(dir, "shared")
	if err := os.Mkdir(unsafe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(unsafe, 0o777); err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(dir, "r.rules")
	if err := os.WriteFile(rules, []byte("pass all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RulesFile: rules, StateFile: filepath.Join(unsafe, "state"), ControlSocket: filepath.Join(dir, "sock")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "state file") || !strings.Contains(err.Error(), "must belong to root") {
		t.Fatalf("Run: %v, want a refusal naming the state file's directory", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "sock")); err == nil {
		t.Error("the control socket was created before the refusal")
	}
}
