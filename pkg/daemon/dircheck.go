package daemon

import (
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"
)

// checkRootDir reports an error unless dir is a directory that only root
// can change: owned by root, not writable by group or others. Whoever can
// write a directory can replace what is in it: the control socket (and so
// answer root's commands, or take them), the state file (and so restore
// connections the rules would block), or a symbolic link where the daemon
// is about to write. The control socket's directory and the state file's
// must pass it. Only the directory itself is checked, not its parents.
func checkRootDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	return checkRootDirStat(dir, &st)
}

// checkRootDirStat is checkRootDir on the status of dir, for a caller that
// holds the directory open and checks what it holds (fstat).
func checkRootDirStat(dir string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("directory %s must belong to root and not be writable by group or others (owner uid %d, mode %04o)",
			dir, st.Uid, st.Mode&0o7777)
	}
	return nil
}
