// Package sdnotify speaks the two small protocols a daemon shares with
// systemd, without a dependency on libsystemd: service notifications
// (sd_notify(3): READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1 as
// datagrams to $NOTIFY_SOCKET) and the log priority prefixes journald reads
// on a service's stderr (sd-daemon(3): "<3>" error ... "<7>" debug).
//
// It reads no environment itself: cmd/statewall passes $NOTIFY_SOCKET,
// $WATCHDOG_USEC, $WATCHDOG_PID and $JOURNAL_STREAM in.
package sdnotify

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// The states a Notifier sends; see sd_notify(3).
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// Status is the STATUS= line systemctl status shows.
func Status(s string) string { return "STATUS=" + oneLine(s) }

// MonotonicUsec is the MONOTONIC_USEC= field systemd wants with
// RELOADING=1 (Type=notify-reload requires it; Type=notify accepts it):
// CLOCK_MONOTONIC in microseconds, read by the caller.
func MonotonicUsec(usec int64) string { return "MONOTONIC_USEC=" + strconv.FormatInt(usec, 10) }

// oneLine keeps a value on its line: a newline in it would start a new
// assignment.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// A Notifier sends notifications to the service manager's socket. The nil
// *Notifier, what New returns when there is no socket (not started by
// systemd, or a unit that is not Type=notify), sends nothing. Safe for
// concurrent use.
type Notifier struct {
	addr *net.UnixAddr
}

// ErrUnsupported means the socket address is not a Unix socket path or an
// abstract name (systemd 254's vsock: addresses, for VMs, are not spoken).
var ErrUnsupported = errors.New("sdnotify: unsupported socket address")

// New returns a Notifier for the socket named by $NOTIFY_SOCKET: a path,
// or an abstract socket name written with a leading '@'. An empty socket
// gives the nil Notifier.
func New(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return nil, nil
	case socket[0] == '/':
	case socket[0] == '@':
		// The kernel's abstract namespace: the name starts with a NUL
		// byte, which Go writes as '@' in a UnixAddr.
		if len(socket) == 1 {
			return nil, fmt.Errorf("%w: %q", ErrUnsupported, socket)
		}
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupported, socket)
	}
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// Send sends the states as one datagram, one per line. A socket per
// datagram, as libsystemd does: notifications are rare (start, reload,
// stop, a watchdog ping every few seconds), and nothing stays open for
// the service manager to see closed. Nothing waits for an answer.
func (n *Notifier) Send(states ...string) error {
	if n == nil || len(states) == 0 {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// WatchdogInterval is how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC (usec), as sd_watchdog_enabled(3) advises, if the
// watchdog is on and meant for this process ($WATCHDOG_PID, pid, unset or
// equal to self). Zero means no watchdog; an unparsable value is an error.
func WatchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("sdnotify: bad WATCHDOG_USEC %q", usec)
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("sdnotify: bad WATCHDOG_PID %q", pid)
		}
		if p != self {
			return 0, nil
		}
	}
	if u > math.MaxInt64/uint64(time.Microsecond) {
		u = math.MaxInt64 / uint64(time.Microsecond)
	}
	return time.Duration(u) * time.Microsecond / 2, nil
}
