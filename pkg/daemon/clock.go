package daemon

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock is where the daemon reads the time. Connection tracking counts on
// Monotonic alone, which never steps: a wall clock stepped forward (NTP
// correcting a bad RTC at boot, a VM resumed, an operator's `date -s`)
// would expire every entry whose timeout is shorter than the step, killing
// established sessions mid-stream, and one stepped back would keep entries
// past their timeouts. The wall clock is only for people: log lines and
// the times status shows. Config.Clock injects one in tests.
type Clock interface {
	// Monotonic returns nanoseconds since an arbitrary point, on a clock
	// that never steps.
	Monotonic() int64
	// Wall returns the time of day.
	Wall() time.Time
}

// SystemClock is the daemon's clock unless Config.Clock says otherwise.
//
// Monotonic is CLOCK_MONOTONIC, not CLOCK_BOOTTIME: the kernel's conntrack
// counts its timeouts in jiffies, which stand still while the machine is
// suspended, and so does CLOCK_MONOTONIC. A connection idle for 10 minutes
// before a suspend of a day has, after the resume, the rest of its timeout
// left, in the kernel and here alike. (CLOCK_BOOTTIME counts the suspend,
// and would expire it.)
type SystemClock struct{}

// Monotonic reads CLOCK_MONOTONIC, through Go's own monotonic clock
// (the vDSO, not a system call): the offset between the two is read once.
func (SystemClock) Monotonic() int64 { return monotonicAt(time.Now()) }

// Wall reads the time of day.
func (SystemClock) Wall() time.Time { return time.Now() }

// monotonicAt converts a time.Time carrying Go's monotonic reading (from
// time.Now) to CLOCK_MONOTONIC nanoseconds.
func monotonicAt(t time.Time) int64 { return monoBaseNS + int64(t.Sub(monoBase)) }

// monoBase and monoBaseNS are one moment on both clocks: Go's (whose
// readings only differences reveal) and CLOCK_MONOTONIC. Go reads
// CLOCK_MONOTONIC itself on Linux, so the offset never drifts.
var monoBase, monoBaseNS = func() (time.Time, int64) {
	var ts unix.Timespec
	t := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return t, 0 // cannot happen on Linux; any origin will do
	}
	return t, ts.Nano()
}()
