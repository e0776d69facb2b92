package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxLine bounds a line of the protocol, header or echo.
	maxLine = 512
	// headerTimeout bounds the wait for a connection's first line.
	headerTimeout = 30 * time.Second
	// bulkChunk is the size of one write of the bulk transfer.
	bulkChunk = 32 << 10
	// maxBulk bounds a bulk transfer (1 GiB).
	maxBulk = 1 << 30
)

// serve accepts connections on addr until ctx is done, then closes them
// all. It prints "listening on ADDR" once it accepts, and a count of what
// it served at the end.
func serve(ctx context.Context, addr string, stdout, stderr io.Writer) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var (
		wg                 sync.WaitGroup
		echo, bulk, failed atomic.Int64
		logged             atomic.Int64
	)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wg.Wait()
			return err
		}
		wg.Go(func() {
			kind, err := handle(ctx, c)
			switch kind {
			case "ECHO":
				echo.Add(1)
			case "BULK":
				bulk.Add(1)
			}
			if err != nil && ctx.Err() == nil {
				failed.Add(1)
				// The control run breaks every connection: a few
				// of them say how, the count says the rest.
				if logged.Add(1) <= 5 {
					fmt.Fprintf(stderr, "haload serve: %s: %v\n", c.RemoteAddr(), err)
				}
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(stdout, "served %d echo and %d bulk connections, %d ended in an error\n", echo.Load(), bulk.Load(), failed.Load())
	return nil
}

// handle serves one connection until its client closes it, it fails, or
// ctx is done; it returns the connection's kind (ECHO, BULK or "").
func handle(ctx context.Context, c net.Conn) (string, error) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReaderSize(c, maxLine)
	c.SetReadDeadline(time.Now().Add(headerTimeout))
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", fmt.Errorf("reading the header: %w", err)
	}
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return "", errors.New("empty header")
	}
	switch {
	case f[0] == "ECHO" && len(f) == 1:
		return "ECHO", echoLines(c, r)
	case f[0] == "BULK" && len(f) == 4:
		n, err1 := strconv.ParseInt(f[1], 10, 64)
		rate, err2 := strconv.ParseInt(f[2], 10, 64)
		seed, err3 := strconv.ParseUint(f[3], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil || n < 0 || n > maxBulk || rate < 0 {
			return "BULK", fmt.Errorf("bad header %q", strings.TrimSpace(string(line)))
		}
		return "BULK", sendBulk(c, n, rate, seed)
	}
	return "", fmt.Errorf("bad header %q", strings.TrimSpace(string(line)))
}

// echoLines writes back every line it reads until the client closes its
// side; then it closes the connection. The client paces the lines; the
// server waits for each at most an hour (the caller's ctx bounds the run).
func echoLines(c net.Conn, r *bufio.Reader) error {
	for {
		c.SetReadDeadline(time.Now().Add(time.Hour))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(time.Hour))
		if _, err := c.Write(line); err != nil {
			return err
		}
	}
}

// sendBulk writes n bytes of the stream for seed, at most rate bytes a
// second on average since the start (0: as fast as it can): a stall is
// made up for afterwards, so the transfer ends about on time if the path
// comes back. Then it closes the connection.
func sendBulk(c net.Conn, n, rate int64, seed uint64) error {
	s := newStream(seed)
	buf := make([]byte, bulkChunk)
	start := time.Now()
	for sent := int64(0); sent < n; {
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		b := buf[:min(int64(len(buf)), n-sent)]
		s.Read(b)
		c.SetWriteDeadline(time.Now().Add(time.Hour))
		if _, err := c.Write(b); err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", sent, n, err)
		}
		sent += int64(len(b))
	}
	return nil
}
