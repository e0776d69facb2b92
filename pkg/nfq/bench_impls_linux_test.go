//go:build linux

package nfq_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/nfq"
)

// BenchmarkReaderImpls runs the implementations side by side on one pair
// of namespaces, in turn (with -count, round after round), and a run
// without rules or reader as the baseline:
//
//   - paced: b.N UDP datagrams of 100 bytes, a 1 ms pause every 20 (below
//     what any reader handles), FailOpen as in BenchmarkDivertUDP. Metrics:
//     process CPU and allocations per packet (the sender's share included:
//     subtract the nodivert run), pkts/s handled, and "unseen".
//   - flood: b.N UDP datagrams of 64 bytes as fast as one sender goes,
//     fail-closed, so what the reader cannot keep up with is dropped.
//     pkts/s counts the datagrams the server's UDP stack received (until
//     the count stops growing), "delivered" is their share of b.N, and
//     cpu-µs/pkt is per datagram delivered.
//   - tcp: one TCP connection, b.N writes of 64 KiB; MB/s until the server
//     read the last byte, cpu-µs per 64 KiB.
//
// The sender (a zero-allocation loop on one socket) and the server side run
// in this process, so everything competes for the same CPUs, as the daemon
// would with the host's own traffic.
func BenchmarkReaderImpls(b *testing.B) {
	n := newTestNet(b)
	n.ping(b, serverV4, 1) // resolve the neighbour first
	delivered := n.udpDelivered(b)
	// nil is "nodivert".
	modes := []*impl{nil, &goNFQueue, &goNFQueueBatch, &raw}
	for _, load := range []string{"paced", "flood", "backlog", "tcp"} {
		for _, mode := range modes {
			if load == "backlog" && mode == nil {
				continue // nothing to compare with
			}
			name := "nodivert"
			if mode != nil {
				name = mode.name
			}
			b.Run(load+"/"+name, func(b *testing.B) {
				if load == "backlog" {
					benchBacklog(b, n, *mode)
					return
				}
				var r reader
				if mode != nil {
					failOpen := load == "paced"
					d, err := nfq.Install(nfq.DivertConfig{NetnsName: n.server, Hooks: []nfq.Hook{nfq.HookInput}, IPv4: true, FailOpen: failOpen})
					if err != nil {
						b.Fatal(err)
					}
					defer d.Remove()
					r, err = mode.open(nfq.QueueConfig{NetnsName: n.server, FailOpen: failOpen}, func(p *nfq.Packet) nfq.Verdict { return nfq.Accept }, nil)
					if err != nil {
						b.Fatal(err)
					}
					go r.Run(context.Background())
					defer r.Close()
				}
				handled := func() uint64 {
					if r == nil {
						return 0
					}
					return r.Stats()[0].Packets
				}
				switch load {
				case "paced":
					benchPaced(b, n, handled, r != nil)
				case "flood":
					benchFlood(b, n, delivered)
				case "tcp":
					benchTCP(b, n)
				}
				if r != nil {
					r.Close()
					reportWrites(b, *mode, r)
					if st := r.Stats()[0]; st.Errors != 0 || st.Accepted != st.Packets {
						b.Errorf("stats %+v", st)
					}
				}
			})
		}
	}
}

// reportWrites reports, for a closed reader of nfq's, the packets per
// verdict write and per verdict message.
func reportWrites(b *testing.B, impl impl, r reader) {
	if impl.writes == nil {
		return
	}
	writes, msgs := impl.writes(r)
	if writes == 0 {
		return
	}
	pkts := float64(r.Stats()[0].Packets)
	b.ReportMetric(pkts/float64(writes), "pkts/write")
	b.ReportMetric(pkts/float64(msgs), "pkts/msg")
}

type benchMeter struct {
	ms0 runtime.MemStats
	cpu time.Duration
}

func startMeter(b *testing.B) *benchMeter {
	m := &benchMeter{}
	runtime.GC()
	runtime.ReadMemStats(&m.ms0)
	m.cpu = cpuTime()
	b.ResetTimer()
	return m
}

// stop reports CPU and allocations per unit.
func (m *benchMeter) stop(b *testing.B, units float64, unit string) {
	b.StopTimer()
	cpu := cpuTime() - m.cpu
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/units, "cpu-µs/"+unit)
	b.ReportMetric(float64(ms1.Mallocs-m.ms0.Mallocs)/units, "allocs/"+unit)
}

func benchPaced(b *testing.B, n testNet, handled func() uint64, divert bool) {
	s := n.udpSender(b, serverV4, 9, 100)
	h0 := handled()
	m := startMeter(b)
	took := s.send(b.N, 20, time.Millisecond)
	seen := uint64(b.N)
	if divert {
		seen = settle(func() uint64 { return handled() - h0 })
	}
	m.stop(b, float64(b.N), "pkt")
	b.ReportMetric(float64(seen)/took.Seconds(), "pkts/s")
	if divert {
		b.ReportMetric(float64(uint64(b.N)-seen), "unseen")
	}
}

func benchFlood(b *testing.B, n testNet, delivered udpDelivered) {
	s := n.udpSender(b, serverV4, 9, 64-28)
	d0 := delivered.count(b)
	m := startMeter(b)
	start := time.Now()
	s.send(b.N, 0, 0)
	// Until the count has not grown for 100 ms.
	last, lastAt := delivered.count(b), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && time.Since(lastAt) < 100*time.Millisecond; {
		time.Sleep(5 * time.Millisecond)
		if v := delivered.count(b); v != last {
			last, lastAt = v, time.Now()
		}
	}
	got := last - d0
	m.stop(b, float64(max(got, 1)), "pkt")
	b.ReportMetric(float64(got)/lastAt.Sub(start).Seconds(), "pkts/s")
	b.ReportMetric(float64(got)/float64(b.N), "delivered")
}

// benchBacklog measures how fast a reader works off a full queue: b.N
// datagrams of 64 bytes, in rounds of at most backlogRound, are queued
// while the Reader is open but not yet running; the clock runs from Run
// until the Handler has seen them all. Nothing else runs meanwhile, so
// pkts/s is the reader's (and the kernel's verdict path's) capacity.
func benchBacklog(b *testing.B, n testNet, impl impl) {
	const backlogRound = 20000
	d, err := nfq.Install(nfq.DivertConfig{NetnsName: n.server, Hooks: []nfq.Hook{nfq.HookInput}, IPv4: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Remove()
	s := n.udpSender(b, serverV4, 9, 64-28)
	var took, cpu time.Duration
	var mallocs uint64
	b.StopTimer()
	for done := 0; done < b.N; {
		round := min(b.N-done, backlogRound)
		var seen atomic.Int64
		all := make(chan struct{})
		r, err := impl.open(nfq.QueueConfig{NetnsName: n.server, MaxLen: 2 * backlogRound, SockBuf: 128 << 20}, func(p *nfq.Packet) nfq.Verdict {
			if seen.Add(1) == int64(round) {
				close(all)
			}
			return nfq.Accept
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.send(round, 100, time.Millisecond)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if kq, _ := n.kernelQueue(b, 0); kq.waiting+kq.userDropped+kq.dropped >= round {
				break
			}
		}
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		b.StartTimer()
		cpu0, start := cpuTime(), time.Now()
		runErr := make(chan error, 1)
		go func() { runErr <- r.Run(context.Background()) }()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			b.Errorf("round of %d: the Handler saw %d", round, seen.Load())
		}
		took += time.Since(start)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		runtime.ReadMemStats(&ms1)
		mallocs += ms1.Mallocs - ms0.Mallocs
		r.Close()
		<-runErr
		if done+round >= b.N {
			reportWrites(b, impl, r)
		}
		if st := r.Stats()[0]; st.Errors != 0 || st.ENOBUFS != 0 || st.Accepted != st.Packets {
			b.Errorf("stats %+v", st)
		}
		done += round
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/pkt")
	b.ReportMetric(float64(mallocs)/float64(b.N), "allocs/pkt")
	b.ReportMetric(float64(b.N)/took.Seconds(), "pkts/s")
}

func benchTCP(b *testing.B, n testNet) {
	const chunk = 64 << 10
	var ln net.Listener
	inNetns(b, n.server, func() error {
		var err error
		ln, err = net.Listen("tcp", serverV4+":0")
		return err
	})
	defer ln.Close()
	var c net.Conn
	inNetns(b, n.client, func() error {
		var err error
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	})
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	want := int64(b.N) * chunk
	read := make(chan error, 1)
	go func() {
		sc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		buf := make([]byte, 256<<10)
		var got int64
		for got < want {
			k, err := sc.Read(buf[:min(int64(len(buf)), want-got)])
			got += int64(k)
			if err != nil {
				read <- fmt.Errorf("read %d of %d bytes: %w", got, want, err)
				return
			}
		}
		read <- nil
	}()
	buf := make([]byte, chunk)
	m := startMeter(b)
	start := time.Now()
	c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-read; err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	m.stop(b, float64(b.N), "64KiB")
	b.ReportMetric(float64(want)/took.Seconds()/1e6, "MB/s")
}
