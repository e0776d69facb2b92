package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// clientConfig is what the client does; client's flags set it.
type clientConfig struct {
	Server    string        // HOST:PORT of the server
	N         int           // echo connections
	Interval  time.Duration // a line per connection this often
	Duration  time.Duration // how long the echo connections run once all are open
	Timeout   time.Duration // longest wait for a dial, an echo, bulk bytes or a close
	BulkBytes int64         // size of the bulk transfer (0: none)
	BulkRate  int64         // its pace, bytes/s (0: unpaced)
	Seed      uint64        // its stream's seed
}

// maxConns bounds -n: each connection is a goroutine and two sockets.
const maxConns = 10000

func (c clientConfig) check() error {
	switch {
	case c.Server == "":
		return errors.New("-server is required")
	case c.N < 0 || c.N > maxConns:
		return fmt.Errorf("-n must be 0..%d", maxConns)
	case c.Interval <= 0 || c.Duration <= 0 || c.Timeout <= 0:
		return errors.New("-interval, -duration and -timeout must be positive")
	case c.BulkBytes < 0 || c.BulkBytes > maxBulk || c.BulkRate < 0:
		return fmt.Errorf("-bulk must be 0..%d and -bulk-rate not negative", maxBulk)
	}
	return nil
}

// dialer opens one connection to the server.
type dialer func(ctx context.Context) (net.Conn, error)

// dialTCP dials server over TCP, each attempt bounded by timeout. No TCP
// keepalives: the connections' only traffic is their lines.
func dialTCP(server string, timeout time.Duration) dialer {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", server) }
}

// connResult is how one echo connection went. Times are since the client
// said "ready".
type connResult struct {
	ID      int
	Local   string        // the client's address and port, to find it in a capture or a table
	Lines   int           // lines echoed
	MaxWait time.Duration // longest wait for an echo
	MaxAt   time.Duration // when the line that waited longest was sent
	Err     error         // why it is not healthy (nil: healthy)
	ErrAt   time.Duration
}

// bulkResult is how the bulk transfer went.
type bulkResult struct {
	Want, Got int64
	Elapsed   time.Duration // from the header sent to the end of the stream
	Stall     time.Duration // longest wait between two reads that brought data (or, failed, until the failure)
	StallAt   time.Duration // when that wait ended, since "ready"
	Err       error         // nil: complete, every byte as sent, then a clean close
}

// clientReport is the client's result.
type clientReport struct {
	N     int
	Conns []connResult
	Bulk  *bulkResult // nil: no bulk transfer
}

func (r *clientReport) healthy() int {
	k := 0
	for _, c := range r.Conns {
		if c.Err == nil {
			k++
		}
	}
	return k
}

func (r *clientReport) ok() bool {
	return r.healthy() == r.N && (r.Bulk == nil || r.Bulk.Err == nil)
}

// runClient opens c.N echo connections and the bulk transfer through dial,
// prints "ready: ..." to stdout once they are all open, and runs them.
func runClient(ctx context.Context, c clientConfig, dial dialer, stdout io.Writer) *clientReport {
	rep := &clientReport{N: c.N, Conns: make([]connResult, c.N)}
	conns := make([]net.Conn, c.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // dials at a time
	for i := range c.N {
		rep.Conns[i].ID = i
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			conn, err := dial(ctx)
			if err == nil {
				conn.SetWriteDeadline(time.Now().Add(c.Timeout))
				if _, err = io.WriteString(conn, "ECHO\n"); err != nil {
					conn.Close()
				}
			}
			if err != nil {
				rep.Conns[i].Err = fmt.Errorf("opening: %w", err)
				return
			}
			rep.Conns[i].Local = conn.LocalAddr().String()
			conns[i] = conn
		})
	}
	var bulk net.Conn
	var bulkStart time.Time
	if c.BulkBytes > 0 {
		rep.Bulk = &bulkResult{Want: c.BulkBytes}
		wg.Go(func() {
			conn, err := dial(ctx)
			if err == nil {
				bulkStart = time.Now()
				conn.SetWriteDeadline(time.Now().Add(c.Timeout))
				if _, err = fmt.Fprintf(conn, "BULK %d %d %d\n", c.BulkBytes, c.BulkRate, c.Seed); err != nil {
					conn.Close()
				}
			}
			if err != nil {
				rep.Bulk.Err = fmt.Errorf("opening: %w", err)
				return
			}
			bulk = conn
		})
	}
	wg.Wait()
	open := 0
	for _, conn := range conns {
		if conn != nil {
			open++
		}
	}
	t0 := time.Now()
	bulkSays := ""
	if rep.Bulk != nil {
		bulkSays = ", bulk transfer: "
		if bulk != nil {
			bulkSays += "started"
		} else {
			bulkSays += "failed"
		}
	}
	fmt.Fprintf(stdout, "ready: %d/%d echo connections open%s\n", open, c.N, bulkSays)

	for i, conn := range conns {
		if conn == nil {
			continue
		}
		wg.Go(func() {
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			// Spread the connections' lines over the interval.
			first := t0.Add(c.Interval * time.Duration(i) / time.Duration(c.N))
			echoConn(ctx, conn, &rep.Conns[i], c, t0, first)
		})
	}
	if bulk != nil {
		wg.Go(func() {
			defer bulk.Close()
			stop := context.AfterFunc(ctx, func() { bulk.Close() })
			defer stop()
			recvBulk(bulk, rep.Bulk, c, t0, bulkStart)
		})
	}
	wg.Wait()
	return rep
}

// echoConn sends a line every c.Interval from first until t0+c.Duration,
// waiting for each echo at most c.Timeout (a line that waited long delays
// the next: no burst follows a stall), then closes its side and waits for
// the server's close. It records the first error in res.
func echoConn(ctx context.Context, conn net.Conn, res *connResult, c clientConfig, t0, first time.Time) {
	fail := func(err error) {
		res.Err, res.ErrAt = err, time.Since(t0)
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("interrupted (%w)", err)
		}
	}
	r := bufio.NewReaderSize(conn, maxLine)
	end := t0.Add(c.Duration)
	timer := time.NewTimer(0)
	<-timer.C
	for seq, next := 0, first; next.Before(end); seq++ {
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				fail(ctx.Err())
				return
			}
		}
		line := fmt.Sprintf("haload conn %d line %d\n", res.ID, seq)
		sent := time.Now()
		conn.SetDeadline(sent.Add(c.Timeout))
		if _, err := io.WriteString(conn, line); err != nil {
			fail(fmt.Errorf("sending line %d (at +%s): %w", seq, secs(sent.Sub(t0)), err))
			return
		}
		got, err := r.ReadString('\n')
		if err != nil {
			fail(fmt.Errorf("echo of line %d (sent at +%s): %w", seq, secs(sent.Sub(t0)), err))
			return
		}
		if got != line {
			fail(fmt.Errorf("echo of line %d is %q", seq, got))
			return
		}
		res.Lines++
		if w := time.Since(sent); w > res.MaxWait {
			res.MaxWait, res.MaxAt = w, sent.Sub(t0)
		}
		next = next.Add(c.Interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
	}
	// A clean close: our FIN out, the server's FIN back, nothing else.
	conn.SetDeadline(time.Now().Add(c.Timeout))
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			fail(fmt.Errorf("closing: %w", err))
			return
		}
	} else {
		// net.Pipe (the tests): no half close; the server sees EOF.
		conn.Close()
		return
	}
	if n, err := r.Read(make([]byte, 1)); n > 0 || !errors.Is(err, io.EOF) {
		fail(fmt.Errorf("closing: want the server's close, got %d bytes, %v", n, err))
	}
}

// recvBulk reads the bulk stream, compares every byte with the stream it
// should be, and waits for the server's close after the last byte. Each
// read waits at most c.Timeout; the whole transfer at most twice its paced
// length plus c.Timeout.
func recvBulk(conn net.Conn, res *bulkResult, c clientConfig, t0, start time.Time) {
	limit := c.Timeout + c.Duration
	if c.BulkRate > 0 {
		limit = c.Timeout + 2*time.Duration(float64(c.BulkBytes)/float64(c.BulkRate)*float64(time.Second))
	}
	end := start.Add(limit)
	want := newStream(c.Seed)
	buf, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	last := start
	defer func() {
		res.Elapsed = time.Since(start)
		// A stall that never ended is the longest of a failed transfer.
		if gap := time.Since(last); res.Err != nil && gap > res.Stall {
			res.Stall, res.StallAt = gap, time.Since(t0)
		}
	}()
	for res.Got < res.Want {
		conn.SetReadDeadline(minTime(time.Now().Add(c.Timeout), end))
		n, err := conn.Read(buf[:min(int64(len(buf)), res.Want-res.Got)])
		if n > 0 {
			now := time.Now()
			if gap := now.Sub(last); gap > res.Stall {
				res.Stall, res.StallAt = gap, now.Sub(t0)
			}
			last = now
			want.Read(exp[:n])
			if !bytes.Equal(buf[:n], exp[:n]) {
				i := 0
				for buf[i] == exp[i] {
					i++
				}
				res.Err = fmt.Errorf("byte %d differs from the stream sent", res.Got+int64(i))
				return
			}
			res.Got += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			res.Err = fmt.Errorf("after %d of %d bytes: %w", res.Got, res.Want, err)
			return
		}
	}
	conn.SetReadDeadline(minTime(time.Now().Add(c.Timeout), end))
	if n, err := conn.Read(buf[:1]); n > 0 || !errors.Is(err, io.EOF) {
		res.Err = fmt.Errorf("after the last byte: want the server's close, got %d bytes, %v", n, err)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// secs formats d in seconds with millisecond precision, as the report and
// the result line do.
func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// print writes the report: the failed connections (the first ten), a
// summary per part, and the result line.
func (r *clientReport) print(w io.Writer) {
	lines, shown := 0, 0
	var worst *connResult
	var waits []time.Duration
	for i := range r.Conns {
		c := &r.Conns[i]
		lines += c.Lines
		if c.Lines > 0 {
			waits = append(waits, c.MaxWait)
		}
		if worst == nil || c.MaxWait > worst.MaxWait {
			worst = c
		}
		if c.Err != nil {
			if shown++; shown <= 10 {
				fmt.Fprintf(w, "failed: conn %d (%s) after %d lines, at +%s: %v\n", c.ID, c.Local, c.Lines, secs(c.ErrAt), c.Err)
			}
		}
	}
	if shown > 10 {
		fmt.Fprintf(w, "failed: ... and %d more\n", shown-10)
	}
	k := r.healthy()
	fmt.Fprintf(w, "echo: %d/%d connections healthy, %d lines echoed", k, r.N, lines)
	maxWait := time.Duration(0)
	if worst != nil && worst.Lines > 0 {
		maxWait = worst.MaxWait
		slices.Sort(waits)
		fmt.Fprintf(w, "; longest wait for an echo %s (conn %d, line sent at +%s), median of the connections' longest %s",
			secs(worst.MaxWait), worst.ID, secs(worst.MaxAt), secs(waits[len(waits)/2]))
	}
	fmt.Fprintln(w)
	bulk, bulkBytes, stall := "none", int64(0), time.Duration(0)
	if b := r.Bulk; b != nil {
		bulk, bulkBytes, stall = "yes", b.Got, b.Stall
		says := "every byte as sent, then closed"
		if b.Err != nil {
			bulk, says = "no", b.Err.Error()
		}
		fmt.Fprintf(w, "bulk: %d of %d bytes in %s, longest stall %s (ended at +%s): %s; complete: %s\n",
			b.Got, b.Want, secs(b.Elapsed), secs(b.Stall), secs(b.StallAt), says, bulk)
	}
	fmt.Fprintf(w, "result: n=%d healthy=%d lines=%d max_wait=%.3f bulk=%s bulk_bytes=%d bulk_stall=%.3f\n",
		r.N, k, lines, maxWait.Seconds(), bulk, bulkBytes, stall.Seconds())
}
