package sdnotify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen is the service manager's end: a datagram socket at addr.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestSendPathAndAbstract(t *testing.T) {
	for _, addr := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@statewall-sdnotify-test-%d", os.Getpid()),
	} {
		c := listen(t, addr)
		n, err := New(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Send(Ready, Status("enforcing 3 rules\nfrom x")); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if got, want := recv(t, c), "READY=1\nSTATUS=enforcing 3 rules from x"; got != want {
			t.Errorf("%s: got %q, want %q", addr, got, want)
		}
		if err := n.Send(Reloading, MonotonicUsec(42)); err != nil {
			t.Fatal(err)
		}
		if got, want := recv(t, c), "RELOADING=1\nMONOTONIC_USEC=42"; got != want {
			t.Errorf("%s: got %q, want %q", addr, got, want)
		}
	}
}

// TestNilNotifier: no $NOTIFY_SOCKET, nothing sent and no error.
func TestNilNotifier(t *testing.T) {
	n, err := New("")
	if n != nil || err != nil {
		t.Fatalf("New(\"\") = %v, %v", n, err)
	}
	if err := n.Send(Ready); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, s := range []string{"@", "vsock:2:1234", "relative/path"} {
		if _, err := New(s); !errors.Is(err, ErrUnsupported) {
			t.Errorf("New(%q) = %v, want ErrUnsupported", s, err)
		}
	}
}

func TestSendNoListener(t *testing.T) {
	n, _ := New(filepath.Join(t.TempDir(), "nobody"))
	if err := n.Send(Ready); err == nil {
		t.Fatal("Send to a socket nobody listens on succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, false},
		{"30000000", "100", 15 * time.Second, false},
		{"30000000", "101", 0, false}, // meant for another process
		{"0", "", 0, true},
		{"x", "", 0, true},
		{"1000000", "x", 0, true},
		{"18446744073709551616", "", 0, true}, // beyond 63 bits
		// Beyond what a Duration holds in nanoseconds: clamped.
		{"9223372036854775807", "", time.Duration(1<<63-1) / 1000 * 1000 / 2, false},
	} {
		got, err := WatchdogInterval(tc.usec, tc.pid, 100)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("WatchdogInterval(%q, %q) = %v, %v; want %v (error %v)", tc.usec, tc.pid, got, err, tc.want, tc.err)
		}
	}
}

func TestPriorityHandler(t *testing.T) {
	var b bytes.Buffer
	h := PriorityHandler(&b, func(w io.Writer) slog.Handler {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime})
	})
	log := slog.New(h)
	log.Debug("d")
	log.Info("i", "k", "multi\nline")
	log.With("a", 1).Warn("w")
	log.WithGroup("g").Error("e", "x", 2)
	log.Log(context.Background(), slog.LevelError+4, "beyond error")
	want := `<7>level=DEBUG msg=d
<6>level=INFO msg=i k="multi\nline"
<4>level=WARN msg=w a=1
<3>level=ERROR msg=e g.x=2
<3>level=ERROR+4 msg="beyond error"
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestIsJournal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	if !IsJournal(stream, f) {
		t.Errorf("IsJournal(%q) = false for the file itself", stream)
	}
	for _, s := range []string{"", "x", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), stream + "x", ":" + stream} {
		if IsJournal(s, f) {
			t.Errorf("IsJournal(%q) = true", s)
		}
	}
}
