// Command haload is the traffic of the failover demo (scripts/ha-demo.sh,
// `make ha-demo`): long-lived TCP connections that exchange a line every
// interval, and one paced bulk transfer, across a pair of statewall routers
// while the active one dies. It says, per connection, whether the
// connection came through: no error, every line echoed intact within a
// timeout, and a clean close at the end; and whether the bulk transfer
// arrived whole (its length and every byte of a deterministic stream).
// Every mode is bounded in count and in time.
//
//	haload serve  -listen 198.18.20.10:7100 -max 5m
//	haload client -server 198.18.20.10:7100 -n 200 -interval 500ms -duration 20s \
//	              -timeout 15s -bulk 30000000 -bulk-rate 2000000
//
// serve echoes lines on connections that begin with "ECHO", and streams
// on connections that begin with "BULK <bytes> <bytes/s> <seed>"; it stops
// after -max. client opens its -n echo connections (and the bulk one),
// prints "ready: ..." once they are all open, runs them for -duration,
// prints what failed and a summary, and ends with one line of key=value
// pairs for scripts:
//
//	result: n=200 healthy=200 lines=7800 max_wait=6.213 bulk=yes bulk_bytes=30000000 bulk_stall=6.305
//
// It exits 0 when every connection stayed healthy and the bulk transfer
// (if any) is complete, 1 otherwise, 2 for bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: haload serve -listen HOST:PORT [-max DURATION]")
	fmt.Fprintln(w, "       haload client -server HOST:PORT [-n N] [-interval D] [-duration D] [-timeout D] [-bulk BYTES -bulk-rate BYTES/S]")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("haload "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "serve":
		listen := fs.String("listen", "", "HOST:PORT to listen on (required)")
		maxTime := fs.Duration("max", 5*time.Minute, "stop after this long")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *listen == "" || *maxTime <= 0 {
			fmt.Fprintln(stderr, "haload serve: -listen is required and -max must be positive")
			return 2
		}
		ctx, cancel := context.WithTimeout(ctx, *maxTime)
		defer cancel()
		if err := serve(ctx, *listen, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "haload serve:", err)
			return 1
		}
		return 0
	case "client":
		var c clientConfig
		fs.StringVar(&c.Server, "server", "", "HOST:PORT of the haload server (required)")
		fs.IntVar(&c.N, "n", 200, "echo connections to open")
		fs.DurationVar(&c.Interval, "interval", 500*time.Millisecond, "one line per connection this often")
		fs.DurationVar(&c.Duration, "duration", 20*time.Second, "run the echo connections this long once all are open")
		fs.DurationVar(&c.Timeout, "timeout", 15*time.Second, "longest wait for a connection, an echo, the bulk's next bytes or a close")
		fs.Int64Var(&c.BulkBytes, "bulk", 0, "bytes of the bulk transfer, server to client (0: none)")
		fs.Int64Var(&c.BulkRate, "bulk-rate", 2_000_000, "pace of the bulk transfer, bytes/s (0: as fast as possible)")
		fs.Uint64Var(&c.Seed, "seed", 1, "seed of the bulk transfer's byte stream")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if err := c.check(); err != nil {
			fmt.Fprintln(stderr, "haload client:", err)
			return 2
		}
		r := runClient(ctx, c, dialTCP(c.Server, c.Timeout), stdout)
		r.print(stdout)
		if !r.ok() {
			return 1
		}
		return 0
	default:
		usage(stderr)
		return 2
	}
}
