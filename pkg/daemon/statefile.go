package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
func (d *Daemon) loadState() {
	path := d.cfg.StateFile
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		d.log.Info("no state file, starting with an empty connection table", "file", path)
		return
	}
	if err != nil {
		d.log.Error(fmt.Sprintf("state file %s rejected: %v; starting with an empty table", path, err), "file", path)
		return
	}
	n, err := d.table.Load(bufio.NewReaderSize(f, 1<<16), d.cfg.Clock.Monotonic())
	f.Close()
	if err != nil {
		bad := path + ".bad"
		if rerr := os.Rename(path, bad); rerr != nil {
			d.log.Error("cannot move the rejected state file aside", "file", path, "err", rerr)
			bad = ""
		}
		d.log.Error(fmt.Sprintf("state file %s rejected: %v; starting with an empty table", path, err),
			"file", path, "moved_to", bad)
		return
	}
	if err := os.Remove(path); err != nil {
		d.log.Warn("cannot remove the loaded state file", "file", path, "err", err)
	}
	d.log.Info("connection table loaded from the state file", "file", path, "entries", n)
}

// saveState writes the table to the state file atomically: a temporary
// file in the same directory (mode 0600), synced, renamed over the state
// file, and the directory synced. A crash at any point leaves either the
// old file or the new one, never a mix.
func (d *Daemon) saveState() error {
	path := d.cfg.StateFile
	if path == "" {
		return nil
	}
	n := d.table.Len()
	if err := writeFileAtomic(path, func(w *bufio.Writer) error {
		return d.table.Save(w, d.cfg.Clock.Monotonic())
	}); err != nil {
		d.log.Error("saving the connection table", "file", path, "err", err)
		return fmt.Errorf("saving state to %s: %w", path, err)
	}
	d.log.Info("connection table saved to the state file", "file", path, "entries", n)
	return nil
}

func writeFileAtomic(path string, write func(w *bufio.Writer) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
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
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
