//go:build linux

package nfq_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/nfq/nfqref"
)

// reader is what the tests use of a reader: nfq's or a reference's.
type reader interface {
	Run(ctx context.Context) error
	Close() error
	Stats() []nfq.Stats
}

// impl is an implementation of the receive and verdict path: nfq's own
// reader, "raw", or one of the go-nfqueue references it is tested and
// measured against (pkg/nfq/nfqref).
type impl struct {
	name string
	open func(cfg nfq.QueueConfig, h nfq.Handler, log *slog.Logger) (reader, error)
	// setAfterDrain sets a hook that runs after every queue is drained
	// and before the sockets are closed.
	setAfterDrain func(r reader, f func())
	// writes returns the verdict writes and messages of a closed reader's
	// first queue; nil for the references, which do not count them.
	writes func(r reader) (writes, msgs uint64)
}

// raw is nfq's reader.
var raw = impl{
	name: "raw",
	open: func(cfg nfq.QueueConfig, h nfq.Handler, log *slog.Logger) (reader, error) {
		r, err := nfq.Open(cfg, h, log)
		if err != nil {
			return nil, err
		}
		return r, nil
	},
	setAfterDrain: func(r reader, f func()) { nfq.SetAfterDrain(r.(*nfq.Reader), f) },
	writes:        func(r reader) (uint64, uint64) { return nfq.VerdictWrites(r.(*nfq.Reader)) },
}

func refImpl(ref nfqref.Impl) impl {
	return impl{
		name: string(ref),
		open: func(cfg nfq.QueueConfig, h nfq.Handler, log *slog.Logger) (reader, error) {
			r, err := nfqref.Open(ref, cfg, h, log)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		setAfterDrain: func(r reader, f func()) { r.(*nfqref.Reader).SetAfterDrain(f) },
	}
}

// The references.
var (
	goNFQueue      = refImpl(nfqref.GoNFQueue)
	goNFQueueBatch = refImpl(nfqref.GoNFQueueBatch)
)

// implsUnderTest are the implementations every reader test runs against.
var implsUnderTest = []impl{raw, goNFQueue, goNFQueueBatch}

// forEachImpl runs f as a subtest per implementation, one after the other
// (the tests are timing-sensitive on two cores: the parent decides about
// parallelism, as before the implementations were parametrized).
func forEachImpl(t *testing.T, f func(t *testing.T, impl impl)) {
	t.Helper()
	for _, impl := range implsUnderTest {
		t.Run(impl.name, func(t *testing.T) { f(t, impl) })
	}
}

// inNetns runs f on a thread that entered the named namespace; sockets f
// opens stay there. The thread is discarded afterwards (never unlocked).
func inNetns(tb testing.TB, ns string, f func() error) {
	tb.Helper()
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
	if err := <-res; err != nil {
		tb.Fatalf("in namespace %s: %v", ns, err)
	}
}

// udpSender sends UDP datagrams from the client without allocating: a
// socket of its own, unconnected (a connected one would fail sends after
// the server's port unreachable), and a reused buffer whose first four
// bytes number the datagrams.
type udpSender struct {
	fd  int
	to  unix.Sockaddr
	buf []byte
	seq uint32
}

func (n testNet) udpSender(tb testing.TB, dst string, port, size int) *udpSender {
	tb.Helper()
	s := &udpSender{buf: make([]byte, size)}
	ip := net.ParseIP(dst)
	family := unix.AF_INET
	if ip4 := ip.To4(); ip4 != nil {
		s.to = &unix.SockaddrInet4{Port: port, Addr: [4]byte(ip4)}
	} else {
		family = unix.AF_INET6
		s.to = &unix.SockaddrInet6{Port: port, Addr: [16]byte(ip)}
	}
	inNetns(tb, n.client, func() error {
		var err error
		s.fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	tb.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// send sends count datagrams, pausing for pause after every burst of them
// if pause > 0, and returns the time it took. Errors (a full device queue)
// are not retried.
func (s *udpSender) send(count, burst int, pause time.Duration) time.Duration {
	start := time.Now()
	for i := range count {
		binary.BigEndian.PutUint32(s.buf, s.seq)
		s.seq++
		unix.Sendto(s.fd, s.buf, 0, s.to)
		if pause > 0 && i%burst == burst-1 {
			time.Sleep(pause)
		}
	}
	return time.Since(start)
}

// udpDelivered reads the server's count of UDP datagrams delivered
// (InDatagrams + NoPorts in /proc/net/snmp), from a file opened in the
// server's namespace.
type udpDelivered struct{ f *os.File }

func (n testNet) udpDelivered(tb testing.TB) udpDelivered {
	tb.Helper()
	var d udpDelivered
	inNetns(tb, n.server, func() error {
		var err error
		d.f, err = os.Open("/proc/thread-self/net/snmp")
		return err
	})
	tb.Cleanup(func() { d.f.Close() })
	return d
}

func (d udpDelivered) count(tb testing.TB) uint64 {
	tb.Helper()
	b := make([]byte, 8192)
	n, err := d.f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		tb.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(string(b[:n])) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		var sum uint64
		for i, name := range names {
			if (name == "InDatagrams" || name == "NoPorts") && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				sum += v
			}
		}
		return sum
	}
	tb.Fatalf("no Udp: lines in\n%s", b[:n])
	return 0
}

// TestRawNoAllocsUnderTraffic: the raw reader allocates nothing per packet
// on the real path (netlink socket, kernel, verdicts), measured over the
// whole process while 20000 datagrams pass (the sender allocates nothing
// either). Not parallel: other tests' allocations would count.
func TestRawNoAllocsUnderTraffic(t *testing.T) {
	n := newTestNet(t)
	n.install(t, nfq.DivertConfig{Hooks: []nfq.Hook{nfq.HookInput}, IPv4: true})
	r := n.open(t, raw, nfq.QueueConfig{}, func(p *nfq.Packet) nfq.Verdict { return nfq.Accept })
	s := n.udpSender(t, serverV4, 9, 100)
	s.send(1000, 50, time.Millisecond) // warm up
	settle(func() uint64 { return r.Stats()[0].Packets })
	p0 := r.Stats()[0].Packets
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	s.send(20000, 50, time.Millisecond)
	p1 := settle(func() uint64 { return r.Stats()[0].Packets })
	runtime.ReadMemStats(&ms1)
	pkts := p1 - p0
	allocs := ms1.Mallocs - ms0.Mallocs
	t.Logf("%d allocations in the process for %d packets", allocs, pkts)
	if pkts < 19000 {
		t.Fatalf("only %d of 20000 packets reached the handler", pkts)
	}
	if per := float64(allocs) / float64(pkts); per > 0.01 {
		t.Errorf("%.3f allocations per packet", per)
	}
}

// TestMixedVerdicts: 3000 datagrams in bursts, runs of accepted and
// dropped ones of many lengths: exactly the accepted ones arrive, each
// packet got one verdict, none is left waiting.
func TestMixedVerdicts(t *testing.T) {
	t.Parallel()
	forEachImpl(t, func(t *testing.T, impl impl) {
		const count, port = 3000, 7777
		n := newTestNet(t)
		n.install(t, nfq.DivertConfig{Hooks: []nfq.Hook{nfq.HookInput}, IPv4: true})
		var ln *net.UDPConn
		inNetns(t, n.server, func() error {
			var err error
			ln, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(serverV4), Port: port})
			return err
		})
		defer ln.Close()
		if err := ln.SetReadBuffer(8 << 20); err != nil {
			t.Fatal(err)
		}
		verdict := func(seq uint32) nfq.Verdict {
			if seq%7 == 3 || seq/100%3 == 2 || seq/10%5 == 4 {
				return nfq.Drop
			}
			return nfq.Accept
		}
		var ours, accepted, dropped atomic.Int64
		r := n.open(t, impl, nfq.QueueConfig{}, func(p *nfq.Packet) nfq.Verdict {
			b := p.Payload
			if len(b) < 32 || b[9] != 17 || binary.BigEndian.Uint16(b[22:]) != port {
				return nfq.Accept
			}
			ours.Add(1)
			v := verdict(binary.BigEndian.Uint32(b[28:]))
			if v == nfq.Accept {
				accepted.Add(1)
			} else {
				dropped.Add(1)
			}
			return v
		})
		got := make(chan map[uint32]int, 1)
		go func() {
			seen := map[uint32]int{}
			buf := make([]byte, 2048)
			for {
				ln.SetReadDeadline(time.Now().Add(time.Second))
				k, err := ln.Read(buf)
				if err != nil {
					got <- seen
					return
				}
				if k >= 4 {
					seen[binary.BigEndian.Uint32(buf)]++
				}
			}
		}()
		n.udpSender(t, serverV4, port, 64).send(count, 100, 2*time.Millisecond)
		seen := <-got
		var wrong []uint32
		want := 0
		for seq := range uint32(count) {
			if verdict(seq) == nfq.Accept {
				want++
			}
			if c := seen[seq]; (verdict(seq) == nfq.Accept) != (c == 1) || c > 1 {
				wrong = append(wrong, seq)
			}
		}
		st := r.Stats()[0]
		kq, _ := n.kernelQueue(t, 0)
		t.Logf("%d of %d arrived, %d expected; stats %+v; kernel %+v", len(seen), count, want, st, kq)
		if ours.Load() != count || kq.dropped != 0 || kq.userDropped != 0 || st.ENOBUFS != 0 {
			t.Fatalf("the handler saw %d of %d: the test did not test", ours.Load(), count)
		}
		if len(wrong) > 0 {
			t.Errorf("%d datagrams arrived against their verdict (or twice), first %v", len(wrong), wrong[:min(len(wrong), 10)])
		}
		if st.Errors != 0 || st.Accepted+st.Dropped != st.Packets || st.Dropped != uint64(dropped.Load()) || kq.waiting != 0 {
			t.Errorf("stats %+v, kernel %+v, handler dropped %d", st, kq, dropped.Load())
		}
		if impl.writes != nil {
			r.Close()
			writes, msgs := impl.writes(r)
			t.Logf("%d verdict messages in %d writes", msgs, writes)
			if writes >= msgs || msgs >= st.Packets {
				t.Errorf("no batch verdict or no write of several: the test did not test batching")
			}
		}
	})
}

// TestGSOAndCopyRange: a TCP transfer through the reader. By default the
// kernel queues segmentation-offload super-packets whole (FlagGSO, longer
// than the MTU); with NoGSO it segments them first; CopyRange truncates
// the payload but not Length. All data arrives in every case.
func TestGSOAndCopyRange(t *testing.T) {
	t.Parallel()
	forEachImpl(t, func(t *testing.T, impl impl) {
		for _, c := range []struct {
			name string
			cfg  nfq.QueueConfig
		}{
			{"default", nfq.QueueConfig{}},
			{"NoGSO", nfq.QueueConfig{NoGSO: true}},
			{"CopyRange=128", nfq.QueueConfig{CopyRange: 128}},
		} {
			t.Run(c.name, func(t *testing.T) {
				n := newTestNet(t)
				n.install(t, nfq.DivertConfig{Hooks: []nfq.Hook{nfq.HookInput}, IPv4: true})
				var gso, maxLen, maxPayload, bad atomic.Int64
				n.open(t, impl, c.cfg, func(p *nfq.Packet) nfq.Verdict {
					if p.Flags&nfq.FlagGSO != 0 {
						gso.Add(1)
					}
					if int(p.Length) < len(p.Payload) || len(p.Payload) < 20 || int(binary.BigEndian.Uint16(p.Payload[2:])) != int(p.Length) && p.Flags&nfq.FlagGSO == 0 {
						bad.Add(1)
					}
					for m := int64(p.Length); m > maxLen.Load() && !maxLen.CompareAndSwap(maxLen.Load(), m); {
					}
					for m := int64(len(p.Payload)); m > maxPayload.Load() && !maxPayload.CompareAndSwap(maxPayload.Load(), m); {
					}
					return nfq.Accept
				})
				const size = 8 << 20
				var ln net.Listener
				inNetns(t, n.server, func() error {
					var err error
					ln, err = net.Listen("tcp", serverV4+":0")
					return err
				})
				defer ln.Close()
				var conn net.Conn
				inNetns(t, n.client, func() error {
					var err error
					conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
					return err
				})
				defer conn.Close()
				sc, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer sc.Close()
				go func() {
					conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
					conn.Write(make([]byte, size))
					conn.Close()
				}()
				sc.SetReadDeadline(time.Now().Add(20 * time.Second))
				got, err := io.Copy(io.Discard, sc)
				t.Logf("%d bytes; %d GSO packets, longest %d, longest payload %d", got, gso.Load(), maxLen.Load(), maxPayload.Load())
				if got != size || err != nil {
					t.Errorf("received %d of %d bytes: %v", got, size, err)
				}
				if bad.Load() != 0 {
					t.Errorf("%d packets with inconsistent lengths", bad.Load())
				}
				switch c.name {
				case "default":
					if gso.Load() == 0 || maxLen.Load() <= 1500 {
						t.Errorf("no GSO packet queued")
					}
				case "NoGSO":
					if gso.Load() != 0 || maxLen.Load() > 1500 {
						t.Errorf("GSO packets queued with NoGSO")
					}
				case "CopyRange=128":
					if maxPayload.Load() > 128 || maxLen.Load() <= 128 {
						t.Errorf("copy range not applied")
					}
				}
			})
		}
	})
}
