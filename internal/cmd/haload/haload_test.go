package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// The tests run the client against the server's handler over net.Pipe:
// the protocol and the verdicts, without a network (the demo's namespaces
// are where haload meets TCP).

// pipeDialer is a dialer whose every connection is served by serveFn on
// the other end of a net.Pipe.
func pipeDialer(t *testing.T, serveFn func(net.Conn)) dialer {
	return func(context.Context) (net.Conn, error) {
		c, s := net.Pipe()
		go serveFn(s)
		return c, nil
	}
}

// handler serves a pipe as the real server does.
func handler(t *testing.T) func(net.Conn) {
	return func(s net.Conn) {
		if _, err := handle(t.Context(), s); err != nil {
			t.Errorf("server: %v", err)
		}
	}
}

func quick() clientConfig {
	return clientConfig{Server: "pipe", N: 5, Interval: 10 * time.Millisecond, Duration: 150 * time.Millisecond,
		Timeout: 2 * time.Second, BulkBytes: 300_000, BulkRate: 0, Seed: 7}
}

func TestClientAndServerAgree(t *testing.T) {
	c := quick()
	var out bytes.Buffer
	rep := runClient(t.Context(), c, pipeDialer(t, handler(t)), &out)
	rep.print(&out)
	if !rep.ok() {
		t.Fatalf("want every connection healthy and the bulk complete:\n%s", out.String())
	}
	for _, cr := range rep.Conns {
		if cr.Lines < 5 {
			t.Errorf("conn %d: only %d lines in %v at one per %v", cr.ID, cr.Lines, c.Duration, c.Interval)
		}
	}
	for _, want := range []string{"ready: 5/5 echo connections open, bulk transfer: started\n", "result: n=5 healthy=5 ", " bulk=yes bulk_bytes=300000 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// A connection whose echoes stop (a router that drops it) is unhealthy:
// its line times out.
func TestSilentConnectionIsUnhealthy(t *testing.T) {
	c := quick()
	c.BulkBytes, c.Timeout = 0, 100*time.Millisecond
	n := 0
	dial := func(ctx context.Context) (net.Conn, error) {
		n++
		if n != 3 {
			return pipeDialer(t, handler(t))(ctx)
		}
		cl, s := net.Pipe()
		go func() { // echoes two lines, then reads and drops
			defer s.Close()
			r := bufio.NewReader(s)
			r.ReadString('\n') // the header
			for i := 0; ; i++ {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if i < 2 {
					s.Write([]byte(line))
				}
			}
		}()
		return cl, nil
	}
	// One dial at a time: make n deterministic.
	c.N = 4
	var out bytes.Buffer
	rep := runClient(t.Context(), c, serialDialer(dial), &out)
	rep.print(&out)
	if rep.ok() || rep.healthy() != 3 {
		t.Fatalf("want 3 of 4 healthy:\n%s", out.String())
	}
	var bad *connResult
	for i := range rep.Conns {
		if rep.Conns[i].Err != nil {
			bad = &rep.Conns[i]
		}
	}
	if bad.Lines != 2 || !errors.Is(bad.Err, os.ErrDeadlineExceeded) || !strings.Contains(bad.Err.Error(), "echo of line 2") {
		t.Errorf("the silent connection: %d lines, %v; want 2 lines, a timeout on line 2", bad.Lines, bad.Err)
	}
	if !strings.Contains(out.String(), "result: n=4 healthy=3 ") {
		t.Errorf("result line:\n%s", out.String())
	}
}

// serialDialer makes dial's calls one at a time.
func serialDialer(dial dialer) dialer {
	ch := make(chan struct{}, 1)
	return func(ctx context.Context) (net.Conn, error) {
		ch <- struct{}{}
		defer func() { <-ch }()
		return dial(ctx)
	}
}

// A byte changed on the way, or a stream cut short, is an incomplete
// transfer.
func TestBulkChecksEveryByte(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		want string
	}{
		{"flipped", func(b []byte) []byte { b[123_456] ^= 1; return b }, "byte 123456 differs"},
		{"short", func(b []byte) []byte { return b[:200_000] }, "after 200000 of 300000 bytes: unexpected EOF"},
		{"long", func(b []byte) []byte { return append(b, 'x') }, "want the server's close, got 1 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := quick()
			c.N = 0
			dial := pipeDialer(t, func(s net.Conn) {
				defer s.Close()
				bufio.NewReader(s).ReadString('\n')
				b := make([]byte, c.BulkBytes)
				newStream(c.Seed).Read(b)
				s.Write(tc.mod(b))
			})
			var out bytes.Buffer
			rep := runClient(t.Context(), c, dial, &out)
			rep.print(&out)
			if rep.ok() || rep.Bulk.Err == nil || !strings.Contains(rep.Bulk.Err.Error(), tc.want) {
				t.Fatalf("want an incomplete transfer (%s):\n%s", tc.want, out.String())
			}
			if !strings.Contains(out.String(), "complete: no\n") || !strings.Contains(out.String(), " bulk=no ") {
				t.Errorf("report:\n%s", out.String())
			}
		})
	}
}

// The server paces the bulk transfer: 200 kB at 1 MB/s takes about 0.2 s.
func TestBulkIsPaced(t *testing.T) {
	c := quick()
	c.N, c.BulkBytes, c.BulkRate = 0, 200_000, 1_000_000
	var out bytes.Buffer
	start := time.Now()
	rep := runClient(t.Context(), c, pipeDialer(t, handler(t)), &out)
	if !rep.ok() {
		rep.print(&out)
		t.Fatal(out.String())
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("200 kB at 1 MB/s took %v", d)
	}
}

func TestBadHeader(t *testing.T) {
	for _, h := range []string{"HELLO\n", "BULK 1 2\n", "BULK -1 0 0\n", "BULK 1 2 x\n", "\n"} {
		c, s := net.Pipe()
		go c.Write([]byte(h))
		if _, err := handle(t.Context(), s); err == nil || !strings.Contains(err.Error(), "header") {
			t.Errorf("%q: %v, want a header error", h, err)
		}
		c.Close()
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"serve"},
		{"client"},
		{"client", "-server", "x:1", "-n", "-1"},
		{"client", "-server", "x:1", "-timeout", "0s"},
		{"client", "-server", "x:1", "-bulk", "-5"},
	} {
		var out, errOut bytes.Buffer
		if rc := run(args, &out, &errOut); rc != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, rc, errOut.String())
		}
	}
}
