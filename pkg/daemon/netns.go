package daemon

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vishvananda/netns"
)

// listenTCP listens on addr inside the named network namespace (the
// caller's when name is empty). A socket belongs to the namespace of the
// thread that creates it and stays there, so only the creation needs the
// locked thread.
func listenTCP(name, addr string) (net.Listener, error) {
	if name == "" {
		return net.Listen("tcp", addr)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", name, err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return nil, fmt.Errorf("entering network namespace %q: %w", name, err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the other namespace: keep it locked so
		// the runtime discards it instead of reusing it.
		runtime.LockOSThread()
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("leaving network namespace %q: %w", name, err)
	}
	return ln, lerr
}

// dialTCP connects to addr from inside the named network namespace (the
// caller's when name is empty), as listenTCP listens: the socket is made
// on a thread locked in the namespace, and stays there for the connect
// that follows.
func dialTCP(ctx context.Context, name, addr string) (net.Conn, error) {
	var d net.Dialer
	if name == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", name, err)
	}
	defer ns.Close()
	// An address literal is dialled on the calling goroutine, which
	// stays on this thread while it waits for the connect.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return nil, fmt.Errorf("entering network namespace %q: %w", name, err)
	}
	c, cerr := d.DialContext(ctx, "tcp", addr)
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // stuck in the other namespace: never reuse the thread
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leaving network namespace %q: %w", name, err)
	}
	return c, cerr
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return uint64(m.Counter.GetValue())
}
