//go:build linux

package nfq_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/statewall/statewall/pkg/nfq"
)

// inNetnsErr runs f on a thread that entered the named namespace; the
// thread is discarded afterwards (never unlocked). Sockets f opens stay
// in that namespace.
func inNetnsErr(ns string, f func() error) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			res <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			res <- err
			return
		}
		res <- f()
	}()
	return <-res
}

// flowOf is a packet's flow, the same for both directions: protocol and
// the two address:port ends, in order.
func flowOf(b []byte) (flow string, fromClient bool, ok bool) {
	if len(b) < 24 || b[0]>>4 != 4 || b[9] != 6 {
		return "", false, false
	}
	ihl := int(b[0]&15) * 4
	if len(b) < ihl+4 {
		return "", false, false
	}
	src := fmt.Sprintf("%d.%d.%d.%d:%d", b[12], b[13], b[14], b[15], binary.BigEndian.Uint16(b[ihl:]))
	dst := fmt.Sprintf("%d.%d.%d.%d:%d", b[16], b[17], b[18], b[19], binary.BigEndian.Uint16(b[ihl+2:]))
	fromClient = strings.HasPrefix(src, clientV4+":")
	if fromClient {
		return src + "-" + dst, true, true
	}
	return dst + "-" + src, false, true
}

// TestSpreadFlows: with two queues spread by flow (HMARK), eight TCP
// connections between one client address and one server address (the
// case --queue-balance puts on one queue: it hashes addresses) land
// within 60/40 on the two queues, and both directions of each (input and
// output hooks) on one queue. The packets leave statewall's table with
// the mark they had before the hash (0): rules after it (filter INPUT,
// mangle POSTROUTING) see no flow mark. With a random key the split of
// eight flows varies from one Install to the next (4/4 in 70 of 256
// cases); the key is fixed here so that the test says the same every
// run (key 3 splits these eight 4/4), and the placement of both
// directions is checked with a random key as well.
func TestSpreadFlows(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint32{3, 0} {
		t.Run(fmt.Sprintf("seed=%#x", seed), func(t *testing.T) { testSpreadFlows(t, seed) })
	}
}

func testSpreadFlows(t *testing.T, seed uint32) {
	n := newTestNet(t)
	cfg := nfq.DivertConfig{Hooks: []nfq.Hook{nfq.HookInput, nfq.HookOutput}, Queues: [2]uint16{0, 1}, IPv4: true}
	if seed != 0 {
		nfq.SetFlowSeed(&cfg, seed)
	}
	d := n.install(t, cfg)
	if got := d.Config().Spread; got != nfq.SpreadFlow {
		t.Fatalf("installed spread %v, want flow (HMARK missing?)", got)
	}
	// Count what later rules see of the flow marks.
	const flowMarks = "-m mark --mark 0x53560000/0xffffffc0"
	mustSh(t, "", "ip", "netns", "exec", n.server, "iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "-m", "mark", "--mark", "0x53560000/0xffffffc0", "-j", "ACCEPT")
	mustSh(t, "", "ip", "netns", "exec", n.server, "iptables", "-t", "mangle", "-A", "POSTROUTING", "-p", "tcp", "-m", "mark", "--mark", "0x53560000/0xffffffc0", "-j", "ACCEPT")

	var mu sync.Mutex
	queues := map[string]map[uint16]int{} // flow -> queue -> packets
	dirs := map[string][2]int{}           // flow -> packets from the client, from the server
	n.open(t, raw, nfq.QueueConfig{Queues: [2]uint16{0, 1}}, func(p *nfq.Packet) nfq.Verdict {
		if f, fromClient, ok := flowOf(p.Payload); ok {
			mu.Lock()
			if queues[f] == nil {
				queues[f] = map[uint16]int{}
			}
			queues[f][p.Queue]++
			d := dirs[f]
			if fromClient {
				d[0]++
			} else {
				d[1]++
			}
			dirs[f] = d
			mu.Unlock()
		}
		return nfq.Accept
	})

	// An echo server in the server namespace, and eight connections from
	// fixed client ports, each sending 20 messages and reading them back.
	var ln net.Listener
	if err := inNetnsErr(n.server, func() (err error) {
		ln, err = net.Listen("tcp4", serverV4+":7")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	const flows, msgs = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, flows)
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- inNetnsErr(n.client, func() error {
				dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientV4), Port: 41000 + i}}
				c, err := dl.Dial("tcp4", serverV4+":7")
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 64)
				for range msgs {
					if _, err := c.Write(buf); err != nil {
						return err
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the FINs

	mu.Lock()
	defer mu.Unlock()
	if len(queues) != flows {
		t.Fatalf("the handler saw %d flows, want %d: %v", len(queues), flows, queues)
	}
	perQueue := map[uint16]int{}
	for f, qs := range queues {
		if len(qs) != 1 {
			t.Errorf("flow %s met %d queues: %v", f, len(qs), qs)
		}
		if d := dirs[f]; d[0] < msgs || d[1] < msgs {
			t.Errorf("flow %s: %d packets from the client, %d from the server, want at least %d each", f, d[0], d[1], msgs)
		}
		for q := range qs {
			perQueue[q]++
		}
	}
	t.Logf("flows per queue: %v", perQueue)
	if seed != 0 {
		for q := range uint16(2) {
			if share := float64(perQueue[q]) / flows; share < 0.4 || share > 0.6 {
				t.Errorf("queue %d has %d of %d flows, outside 60/40: %v", q, perQueue[q], flows, perQueue)
			}
		}
	}
	for _, c := range []struct{ table, chain string }{{"filter", "INPUT"}, {"mangle", "POSTROUTING"}} {
		out := mustSh(t, "", "ip", "netns", "exec", n.server, "iptables", "-t", c.table, "-L", c.chain, "-v", "-x", "-n")
		found := false
		for line := range strings.Lines(out) {
			if !strings.Contains(line, "mark match 0x53560000/0xffffffc0") {
				continue
			}
			found = true
			if f := strings.Fields(line); len(f) > 0 && f[0] != "0" {
				pk, _ := strconv.Atoi(f[0])
				t.Errorf("%s %s saw %d packets with a flow mark (%s): the reader did not give them their mark back", c.table, c.chain, pk, flowMarks)
			}
		}
		if !found {
			t.Errorf("no counting rule in %s %s:\n%s", c.table, c.chain, out)
		}
	}
}
