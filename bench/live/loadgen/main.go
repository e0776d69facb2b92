// Command loadgen makes the traffic of the live benchmark (bench/live/run.sh)
// and measures it. Every mode is bounded in count and in time.
//
//	loadgen serve -addr 198.18.2.2 -max 15m      UDP sink :7000, TCP close-at-once :7001, TCP echo :7002
//	loadgen udpblast -to 198.18.2.2:7000 -from 198.18.1.2,198.18.1.3 -size 64 -t 3s -n 20000000
//	loadgen udpblast -to 198.18.2.2:7000 -from 198.18.1.2,198.18.1.3 -size 64 -rate 50000 -t 4s -n 200000
//	loadgen connrate -to 198.18.2.2:7001 -from 198.18.1.2,198.18.1.3 -n 3000 -c 4 -t 3s
//	loadgen rr -to 198.18.2.2:7002 -size 64 -n 20000 -t 3s
//
// The client modes print one line of key=value pairs on standard output.
// -from spreads udpblast's datagrams and connrate's connections over
// several source addresses, round robin: NFQUEUE's --queue-balance hashes
// the addresses and the protocol only, not the ports, so flows between one
// pair of addresses all land on one queue.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen serve|udpblast|connrate|rr [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "198.18.2.2", "serve: the address to listen on")
	to := fs.String("to", "", "host:port to send to")
	size := fs.Int("size", 64, "payload bytes (udpblast, rr)")
	dur := fs.Duration("t", 3*time.Second, "run at most this long")
	n := fs.Int("n", 1000, "at most this many packets, connections or round trips")
	conc := fs.Int("c", 4, "connrate: concurrent connectors")
	maxTime := fs.Duration("max", 15*time.Minute, "serve: stop after this long")
	from := fs.String("from", "", "comma-separated source addresses to use in turn (udpblast, connrate)")
	rate := fs.Float64("rate", 0, "udpblast: send at most this many datagrams per second (0: as fast as possible)")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(*addr, *maxTime)
	case "udpblast":
		err = udpBlast(*to, sources(*from), *size, *n, *rate, *dur)
	case "connrate":
		err = connRate(*to, sources(*from), *n, *conc, *dur)
	case "rr":
		err = rr(*to, *size, *n, *dur)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// sources parses -from; nil means "let the kernel choose".
func sources(list string) []net.IP {
	var ips []net.IP
	for _, s := range strings.Split(list, ",") {
		if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil {
			ips = append(ips, ip)
		}
	}
	return ips
}

// serve runs the three servers until maxTime has passed (the harness kills
// it long before).
func serve(addr string, maxTime time.Duration) error {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(addr), Port: 7000})
	if err != nil {
		return err
	}
	uc.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := uc.ReadFromUDP(buf); err != nil && errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	closer, err := net.Listen("tcp", net.JoinHostPort(addr, "7001"))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := closer.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			c.Close() // the server closes first, as an HTTP/1.0 server does
		}
	}()
	echo, err := net.Listen("tcp", net.JoinHostPort(addr, "7002"))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				io.Copy(c, c)
			}()
		}
	}()
	fmt.Println("ready")
	time.Sleep(maxTime)
	return nil
}

// udpBlast sends size-byte datagrams as fast as one goroutine can, or, with
// rate > 0, paced to rate per second on average (in bursts that catch up
// after each sleep of about 200 µs: about rate/5000 datagrams when the
// sleep is on time, more after a longer stall), until n are sent or d has
// passed. Send errors (ENOBUFS, ECONNREFUSED from an
// ICMP error) are counted, not fatal.
func udpBlast(to string, from []net.IP, size, n int, rate float64, d time.Duration) error {
	if len(from) == 0 {
		from = []net.IP{nil}
	}
	var conns []net.Conn
	for _, ip := range from {
		dl := net.Dialer{}
		if ip != nil {
			dl.LocalAddr = &net.UDPAddr{IP: ip}
		}
		c, err := dl.Dial("udp", to)
		if err != nil {
			return err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	buf := make([]byte, size)
	sent, errs := 0, 0
	start := time.Now()
	deadline := start.Add(d)
	for sent < n {
		if rate > 0 {
			el := time.Since(start)
			if el >= d {
				break
			}
			if sent >= int(rate*el.Seconds()) {
				time.Sleep(200 * time.Microsecond)
				continue
			}
		} else if sent&1023 == 0 && time.Now().After(deadline) {
			break
		}
		if _, err := conns[(sent+errs)%len(conns)].Write(buf); err != nil {
			errs++
			if errs > n {
				break
			}
			continue
		}
		sent++
	}
	el := time.Since(start).Seconds()
	fmt.Printf("sent=%d errors=%d seconds=%.6f sent_pps=%.0f\n", sent, errs, el, float64(sent)/el)
	return nil
}

// connRate opens and closes TCP connections from conc goroutines, at most
// n in all, until d has passed: dial, read until the server's close, close.
func connRate(to string, from []net.IP, n, conc int, d time.Duration) error {
	var next, ok, failed atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			buf := make([]byte, 16)
			for {
				i := next.Add(1)
				if i > int64(n) || time.Now().After(deadline) {
					break
				}
				dl := net.Dialer{Timeout: time.Second}
				if len(from) > 0 {
					dl.LocalAddr = &net.TCPAddr{IP: from[int(i)%len(from)]}
				}
				c, err := dl.Dial("tcp", to)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(time.Second))
				_, err = c.Read(buf)
				c.Close()
				if err == io.EOF {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("conns=%d failed=%d seconds=%.6f conns_per_s=%.0f\n", ok.Load(), failed.Load(), el, float64(ok.Load())/el)
	return nil
}

// rr sends size bytes and reads them back over one TCP connection, n times
// or until d has passed, after 100 round trips of warm-up, and prints
// percentiles of the round-trip time.
func rr(to string, size, n int, d time.Duration) error {
	c, err := net.DialTimeout("tcp", to, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	c.SetDeadline(time.Now().Add(d + 5*time.Second))
	buf, back := make([]byte, size), make([]byte, size)
	one := func() (time.Duration, error) {
		t := time.Now()
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return 0, err
		}
		return time.Since(t), nil
	}
	for range 100 {
		if _, err := one(); err != nil {
			return err
		}
	}
	rtts := make([]time.Duration, 0, n)
	deadline := time.Now().Add(d)
	for len(rtts) < n && time.Now().Before(deadline) {
		r, err := one()
		if err != nil {
			return err
		}
		rtts = append(rtts, r)
	}
	slices.Sort(rtts)
	pct := func(p float64) float64 {
		return float64(rtts[int(p*float64(len(rtts)-1))].Nanoseconds()) / 1e3
	}
	fmt.Printf("rtts=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n", len(rtts), pct(0.5), pct(0.9), pct(0.99), pct(1))
	return nil
}
