//go:build linux

// Command nfqaccept is the ceiling of the library path that statewall's
// packet path started on: a minimal NFQUEUE reader on go-nfqueue that
// accepts every packet, one SetVerdict per packet, and decodes nothing.
// (statewall's reader, pkg/nfq, has since left go-nfqueue; the full
// go-nfqueue references it is measured against are in pkg/nfq/nfqref.)
// It binds the queue with the defaults of pkg/nfq's reader (packet copy up
// to 64 KiB, GSO packets whole, 4096 packets per queue, an 8 MiB socket
// buffer, fail-closed) so that the two differ only in what happens between
// the read and the verdict; `statewall run` asks for 512 bytes of each
// packet.
//
//	nfqaccept -queue 0 -max 10m
//
// It prints "ready" once the queue is bound, and the number of packets it
// accepted when it stops (SIGINT, SIGTERM or -max).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	queue := flag.Uint("queue", 0, "NFQUEUE number")
	maxTime := flag.Duration("max", 10*time.Minute, "stop after this long at the latest")
	flag.Parse()
	if err := run(uint16(*queue), *maxTime); err != nil {
		fmt.Fprintln(os.Stderr, "nfqaccept:", err)
		os.Exit(1)
	}
}

func run(queue uint16, maxTime time.Duration) error {
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      queue,
		MaxPacketLen: 0xffff,
		MaxQueueLen:  4096,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        nfqueue.NfQaCfgFlagGSO,
		AfFamily:     unix.AF_UNSPEC,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return fmt.Errorf("open queue %d: %w", queue, err)
	}
	defer nf.Close()
	// Overflows show up as user_dropped in /proc/net/netfilter/nfnetlink_queue
	// rather than as read errors.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		return err
	}
	if rc, err := nf.Con.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
				fmt.Fprintln(os.Stderr, "nfqaccept: socket buffer:", err)
			}
		})
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	ctx, cancelMax := context.WithTimeout(ctx, maxTime)
	defer cancelMax()

	var accepted, verdictErrs atomic.Uint64
	fn := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		if err := nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
			verdictErrs.Add(1)
		} else {
			accepted.Add(1)
		}
		return 0
	}
	errfn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		fmt.Fprintln(os.Stderr, "nfqaccept: read:", err)
		return 0 // keep reading
	}
	if err := nf.RegisterWithErrorFunc(ctx, fn, errfn); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Printf("accepted %d verdict-errors %d\n", accepted.Load(), verdictErrs.Load())
	return nil
}
