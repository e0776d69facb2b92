package reject

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sender sends crafted answers through raw sockets: one AF_INET socket of
// protocol IPPROTO_RAW with IP_HDRINCL, and one AF_INET6 socket of
// protocol IPPROTO_RAW, which on Linux implies the header is included
// too (inet6_create sets HDRINCL for it): the kernel sends the bytes as
// they are, routing them by their destination, apart from filling in, for
// IPv4, the header checksum, the total length and an id when it is 0
// (raw_send_hdrinc). The answers go through the output hook and the
// routing of the namespace the sockets were made in, like any packet
// this host sends.
//
// A Sender is safe for concurrent use, except Close, which must not run
// concurrently with Send.
type Sender struct {
	fd4, fd6 int // -1 when the family is not available
	lim      *limiter
	start    time.Time

	sent, limited, dropped, errs atomic.Uint64
}

// Open opens the raw sockets in cfg.NetnsName. It needs CAP_NET_RAW, and
// CAP_NET_ADMIN for cfg.Mark. A system without IPv6 gets a Sender that
// counts IPv6 answers as errors.
func Open(cfg Config) (*Sender, error) {
	cfg = cfg.normalize()
	s := &Sender{fd4: -1, fd6: -1, lim: newLimiter(cfg.Rate, cfg.Burst), start: time.Now()}
	err := inNetns(cfg.NetnsName, func() error {
		var err error
		if s.fd4, err = rawSocket(unix.AF_INET, cfg.Mark); err != nil {
			return err
		}
		s.fd6, err = rawSocket(unix.AF_INET6, cfg.Mark)
		if errors.Is(err, unix.EAFNOSUPPORT) {
			s.fd6, err = -1, nil
		}
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func rawSocket(family int, mark uint32) (int, error) {
	name := "IPv4"
	if family == unix.AF_INET6 {
		name = "IPv6"
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_RAW)
	if err != nil {
		return -1, fmt.Errorf("reject: %s raw socket: %w", name, err)
	}
	if family == unix.AF_INET {
		// Implied by IPPROTO_RAW; said anyway.
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
	}
	if err == nil && mark != 0 {
		if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			err = fmt.Errorf("SO_MARK: %w", err)
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("reject: %s raw socket: %w", name, err)
	}
	return fd, nil
}

// inNetns runs fn on a thread in the named network namespace (the
// caller's when name is empty). A socket belongs to the namespace of the
// thread that creates it and stays there, so only the creation needs it.
func inNetns(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("reject: current network namespace: %w", err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("reject: network namespace %q: %w", name, err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("reject: entering network namespace %q: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the other namespace: keep it locked so
		// the runtime discards it rather than reusing it.
		runtime.LockOSThread()
		return errors.Join(ferr, fmt.Errorf("reject: leaving network namespace %q: %w", name, err))
	}
	return ferr
}

// Send sends b, an answer AppendRST or AppendICMP made (any IPv4 or IPv6
// packet with its full header), and reports whether the kernel took it.
// It never waits: an answer over the rate limit, or one the socket has no
// room for, is counted and dropped. It allocates nothing.
func (s *Sender) Send(b []byte) bool { return s.SendIf(b, 0) }

// SendIf is Send with the interface the blocked packet came in on
// (nfq.Packet.InDev, 0 if unknown). It matters only for an IPv6
// destination that needs a zone, a link-local one (fe80::/10): the kernel
// cannot route to it without the interface, and Send counts an error.
func (s *Sender) SendIf(b []byte, ifindex uint32) bool {
	if !s.lim.allow(int64(time.Since(s.start))) {
		s.limited.Add(1)
		return false
	}
	var err error
	switch {
	case len(b) >= 20 && b[0]>>4 == 4 && s.fd4 >= 0:
		var sa unix.RawSockaddrInet4
		sa.Family = unix.AF_INET
		copy(sa.Addr[:], b[16:20])
		err = sendto(s.fd4, b, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4)
	case len(b) >= 40 && b[0]>>4 == 6 && s.fd6 >= 0:
		var sa unix.RawSockaddrInet6
		sa.Family = unix.AF_INET6
		copy(sa.Addr[:], b[24:40])
		if sa.Addr[0] == 0xfe && sa.Addr[1]&0xc0 == 0x80 {
			sa.Scope_id = ifindex
		}
		err = sendto(s.fd6, b, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6)
	default:
		err = unix.EINVAL
	}
	switch err {
	case nil:
		s.sent.Add(1)
		return true
	case unix.EAGAIN, unix.ENOBUFS:
		s.dropped.Add(1)
	default:
		s.errs.Add(1)
	}
	return false
}

// sendto is sendto(2) with MSG_DONTWAIT, the address given as a pointer
// to a raw sockaddr on the caller's stack: unix.Sendto would take it as an
// interface, which costs an allocation per call. It retries on EINTR.
func sendto(fd int, b []byte, sa unsafe.Pointer, salen uintptr) error {
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT, uintptr(sa), salen)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	return Stats{
		Sent:        s.sent.Load(),
		RateLimited: s.limited.Load(),
		Dropped:     s.dropped.Load(),
		Errors:      s.errs.Load(),
	}
}

// Close closes the sockets. Precondition: no Send is running or will run.
func (s *Sender) Close() error {
	var errs []error
	for _, fd := range []*int{&s.fd4, &s.fd6} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}
