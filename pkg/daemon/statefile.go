package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The state file (Config.StateFile) carries the connection table across a
// restart: a clean stop saves the table (conntrack snapshot format: magic,
// version, CRC32C) and the next start loads it, so that established
// connections survive an upgrade even where the rules would not pick them
// up mid-stream.
//
// The file is consumed at start: a good one is loaded and removed, a bad
// one (corrupt, truncated, another version, not a snapshot) is logged,
// renamed to PATH.bad for inspection, and the daemon starts with an empty
// table. So a state file is loaded at most once: a daemon that crashes
// (no clean stop, no new save) does not make the next start resurrect
// the state of two runs ago. Timeouts are saved as the time left at the
// stop, never as deadlines on some clock: the next run's clock is another
// clock (CLOCK_MONOTONIC starts again at a reboot), and a wall clock
// stepped in between changes nothing. The downtime is not subtracted.
// Loading caps every timeout by the one this run's ruleset gives the
// entry's state (conntrack.Table.Load).
//
// Whoever can write the state file decides which connections pass after
// the next start, so the file is trusted no more than the directory it is
// in and the file itself:
//
//   - The directory must pass checkRootDir, as the control socket's does:
//     owned by root, not writable by group or others. It is opened once,
//     checked through that descriptor, and every later step names the file
//     relative to it (openat, renameat, unlinkat), so that the directory
//     checked is the directory used even if the path changes meanwhile.
//     A directory that fails is a configuration error: Run refuses to
//     start with it, before it installs anything. (Should the directory
//     change after the start, loadState and saveState check again: the
//     state file is then disabled, nothing there is read, renamed or
//     removed, and the stop returns the error, so the exit status says
//     the table was not saved.)
//   - Load opens the file with O_NOFOLLOW (and O_NONBLOCK, so that a FIFO
//     cannot hang the start), and refuses anything but a regular file
//     owned by root (or by the daemon's effective uid) with no group or
//     other permission bits (0600 or stricter), saying which. A refused
//     file is handled as a corrupt one: logged, renamed PATH.bad, empty
//     table. The rename is safe: it happens in the checked directory,
//     through its descriptor, and rename never follows a symbolic link in
//     either name (a link at PATH is renamed as the link; one at PATH.bad
//     is replaced, not followed). The one case where renaming would not be
//     safe, a directory others can write, never gets that far.
//   - Save writes a new file created exclusively (O_CREAT|O_EXCL|
//     O_NOFOLLOW) under a random name in the directory, mode 0600, synced,
//     renamed over PATH, and syncs the directory. Nothing planted in the
//     directory is opened or followed: a link at PATH is replaced as a
//     link. Temporary files a crash left behind are removed at the next
//     start.
//
// Limitation: a clean stop removes the divert rules, so between the two
// runs traffic passes unseen. A TCP connection that exchanges data then
// comes back with window state that is behind: its next packets acknowledge
// data the table never saw, are invalid, and are blocked. The state file
// helps where the gap is closed (the e2e test drops forwarding meanwhile)
// or quiet; keeping the divert rules over a restart would close it.

// loadState fills the empty table from the state file, if there is one.
// It never fails the start: whatever goes wrong, the daemon runs with an
// empty table rather than a wrong one.
func (d *Daemon) loadState() (restored bool) {
	path := d.cfg.StateFile
	if path == "" {
		return false
	}
	sd, err := openStateDir(path)
	if err != nil {
		d.log.Error(fmt.Sprintf("state file %s disabled: %v; starting with an empty table, and the table will not be saved", path, err),
			"file", path)
		return false
	}
	defer sd.close()
	sd.removeTemps(d.log)

	f, err := sd.open()
	if errors.Is(err, fs.ErrNotExist) {
		d.log.Info("no state file, starting with an empty connection table", "file", path)
		return false
	}
	n := 0
	if err == nil {
		n, err = d.table.Load(f, d.cfg.Clock.Monotonic())
		f.Close()
	} else if !errors.Is(err, errStateFileRefused) {
		// Not the file's fault (an I/O error): leave it for the next start.
		d.log.Error(fmt.Sprintf("state file %s unreadable: %v; starting with an empty table", path, err), "file", path)
		return false
	}
	if err != nil {
		bad := path + ".bad"
		if rerr := unix.Renameat(sd.fd, sd.base, sd.fd, sd.base+".bad"); rerr != nil {
			d.log.Error("cannot move the rejected state file aside", "file", path, "err", rerr)
			bad = ""
		}
		d.log.Error(fmt.Sprintf("state file %s rejected: %v; starting with an empty table", path, err),
			"file", path, "moved_to", bad)
		return false
	}
	if err := unix.Unlinkat(sd.fd, sd.base, 0); err != nil {
		d.log.Warn("cannot remove the loaded state file", "file", path, "err", err)
	}
	d.log.Info("connection table loaded from the state file", "file", path, "entries", n)
	return true
}

// saveState writes the table to the state file atomically (see
// writeStateFile). A crash at any point leaves either the old file or the
// new one, never a mix.
func (d *Daemon) saveState() error { return d.saveStateAt(slog.LevelInfo) }

// saveStateAt is saveState logging success at level (periodic saves log
// at debug).
func (d *Daemon) saveStateAt(level slog.Level) error {
	path := d.cfg.StateFile
	if path == "" {
		return nil
	}
	n := d.table.Len()
	if err := writeStateFile(path, func(w *bufio.Writer) error {
		return d.table.Save(w, d.cfg.Clock.Monotonic())
	}); err != nil {
		d.log.Error("saving the connection table", "file", path, "err", err)
		return fmt.Errorf("saving state to %s: %w", path, err)
	}
	d.log.Log(context.Background(), level, "connection table saved to the state file", "file", path, "entries", n)
	return nil
}

// errStateFileRefused is wrapped by the errors of stateDir.open about the
// file itself (its type, owner or mode).
var errStateFileRefused = errors.New("refused")

// stateDir is the state file's directory, open and checked. Every
// operation on the state file names it relative to fd.
type stateDir struct {
	fd   int
	dir  string // for messages
	base string // the state file's name in the directory
}

// openStateDir opens the directory of the state file at path and checks
// it (checkRootDir) through the descriptor it returns.
func openStateDir(path string) (*stateDir, error) {
	sd := &stateDir{dir: filepath.Dir(path), base: filepath.Base(path)}
	fd, err := unix.Open(sd.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: sd.dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: sd.dir, Err: err}
	}
	if err := checkRootDirStat(sd.dir, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	sd.fd = fd
	return sd, nil
}

func (sd *stateDir) close() { unix.Close(sd.fd) }

// open opens the state file for reading, if it is one the daemon may
// trust; an error about the file wraps errStateFileRefused, a missing
// file is fs.ErrNotExist. The file is looked at before it is opened, so
// that a FIFO or a device is never opened, and checked again once open.
func (sd *stateDir) open() (*os.File, error) {
	path := filepath.Join(sd.dir, sd.base)
	var st unix.Stat_t
	if err := unix.Fstatat(sd.fd, sd.base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := checkStateFile(&st); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(sd.fd, sd.base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: it became a symbolic link", errStateFileRefused)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := checkStateFile(&st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// checkStateFile refuses a state file that is not a regular file owned by
// root or the daemon's effective uid with mode 0600 or stricter.
func checkStateFile(st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return fmt.Errorf("%w: a symbolic link, not a regular file", errStateFileRefused)
	case unix.S_IFDIR:
		return fmt.Errorf("%w: a directory, not a regular file", errStateFileRefused)
	default:
		return fmt.Errorf("%w: not a regular file (type %#o)", errStateFileRefused, st.Mode&unix.S_IFMT)
	}
	if euid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != euid {
		return fmt.Errorf("%w: owned by uid %d, not by root or statewall's uid %d", errStateFileRefused, st.Uid, euid)
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("%w: mode %04o lets group or others at it (0600 or stricter wanted)", errStateFileRefused, st.Mode&0o7777)
	}
	return nil
}

// tempMark follows the state file's name in the name of its temporary
// files, then 16 hex digits.
const tempMark = ".tmp-"

// createTemp creates a new file for writing in the directory, exclusively
// (never an existing file, never through a symbolic link), mode 0600,
// under a random name.
func (sd *stateDir) createTemp() (*os.File, string, error) {
	for range 100 {
		name := fmt.Sprintf("%s%s%016x", sd.base, tempMark, rand.Uint64())
		fd, err := unix.Openat(sd.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, "", &fs.PathError{Op: "create", Path: filepath.Join(sd.dir, name), Err: err}
		}
		// The umask may have taken bits away; it cannot have added any.
		if err := unix.Fchmod(fd, 0o600); err != nil {
			unix.Close(fd)
			unix.Unlinkat(sd.fd, name, 0)
			return nil, "", &fs.PathError{Op: "chmod", Path: filepath.Join(sd.dir, name), Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(sd.dir, name)), name, nil
	}
	return nil, "", fmt.Errorf("no unused temporary name in %s", sd.dir)
}

// removeTemps removes the temporary files of saves that a crash
// interrupted: regular files named after the state file, tempMark and 16
// hex digits.
func (sd *stateDir) removeTemps(log *slog.Logger) {
	fd, err := unix.Openat(sd.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), sd.dir)
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, name := range names {
		hex, ok := strings.CutPrefix(name, sd.base+tempMark)
		if !ok || len(hex) != 16 || strings.Trim(hex, "0123456789abcdef") != "" {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(sd.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if err := unix.Unlinkat(sd.fd, name, 0); err != nil {
			log.Warn("cannot remove the temporary file of an interrupted save", "file", filepath.Join(sd.dir, name), "err", err)
		} else {
			log.Info("removed the temporary file of an interrupted save", "file", filepath.Join(sd.dir, name))
		}
	}
}

// writeStateFile writes the state file at path atomically: a new
// temporary file in its directory (createTemp), written, synced, renamed
// over path, and the directory synced.
func writeStateFile(path string, write func(w *bufio.Writer) error) (err error) {
	sd, err := openStateDir(path)
	if err != nil {
		return err
	}
	defer sd.close()
	f, tmp, err := sd.createTemp()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(sd.fd, tmp, 0)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<16)
	if err := write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := unix.Renameat(sd.fd, tmp, sd.fd, sd.base); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(sd.dir, tmp), New: path, Err: err}
	}
	if err := unix.Fsync(sd.fd); err != nil {
		return &fs.PathError{Op: "sync", Path: sd.dir, Err: err}
	}
	return nil
}
