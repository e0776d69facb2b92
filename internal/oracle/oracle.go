//go:build linux

package oracle

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/internal/pcaprewrite"
)

// Label is the kernel's verdict on one packet of the original capture.
type Label struct {
	Index int `json:"index"`
	// CT is the nftables ct state: "new", "established", "related",
	// "invalid", "untracked", or "" when the packet was not injected or got
	// no verdict (Note says why).
	CT string `json:"ct"`
	// Dir is the ct direction, "original" or "reply", for packets attached
	// to a connection (new, established, related); "" otherwise.
	Dir  string `json:"dir,omitempty"`
	Note string `json:"note,omitempty"`
}

// Options tune Run.
type Options struct {
	// Log receives verbose diagnostics (namespace setup, sysctls, every
	// packet's events); nil for none.
	Log io.Writer
	// Timeout bounds the wait for one packet's sentinel (default 2 s). It is
	// a safety net: the kernel processes an injected packet synchronously,
	// so the sentinel normally comes back within microseconds.
	Timeout time.Duration
	// KeepAddresses injects the packets with the addresses they have
	// instead of rewriting them, for captures made inside the test ranges
	// (the conversation generator's): an ICMP error whose quote the
	// rewriter does not take for an IP header (cut short, or altered on
	// purpose) would keep its original addresses while the flow it quotes
	// got new ones, and match nothing. Every address the rewriter finds
	// must be in 198.18.0.0/15 or fd00:198:18::/64 and outside the
	// reserved ranges, and the capture must be raw IP (link type 101, 228
	// or 229); Run fails otherwise.
	KeepAddresses bool
	// Sysctls are set in the namespace before the replay, after conntrack
	// is active there: a name under /proc/sys/net/netfilter
	// ("nf_conntrack_udp_timeout") or a path under /proc/sys
	// ("net/ipv4/ipfrag_time"), and its value. Conntrack's timeouts are
	// per namespace, so lowering them here (and in the ruleset statewall
	// replays with) lets a test see entries expire within seconds.
	Sysctls map[string]string
	// GapScale, when above 0, makes the replay honour the capture's
	// gaps: packet i is injected GapScale times (its timestamp minus the
	// first packet's) after the first, so that conntrack's timeouts run
	// out between packets as they did on the capture's clock, scaled. 0
	// (the default) injects the packets back to back, and Run warns about
	// gaps longer than GapWarning. The waits are measured from the start,
	// so the time each packet takes does not add up; packets whose time
	// has passed go at once.
	GapScale float64
}

// Result is everything Run learned about one capture.
type Result struct {
	File      string
	Labels    []Label
	Warnings  []string
	Sysctls   []string // net.netfilter.* in the namespace, "name = value"
	Backend   string   // the iptables that installed the NFQUEUE rules
	Namespace string
	Elapsed   time.Duration
	// MaxLate is, with Options.GapScale, the most any packet was injected
	// after its time: a comparison of expiry is only as good as this is
	// small against its margins.
	MaxLate time.Duration
}

// Labels replays the capture at path into a fresh network namespace and
// returns the kernel's ct state for every packet, in file order.
func Labels(ctx context.Context, path string) ([]Label, error) {
	r, err := Run(ctx, path, Options{})
	if err != nil {
		return nil, err
	}
	return r.Labels, nil
}

// GapWarning is the capture gap above which Run warns: conntrack timeouts
// run on the wall clock, and the replay does not wait out capture gaps.
const GapWarning = 25 * time.Second

const (
	tunName  = "swo0"
	queueNum = 7

	hookPre = 0 // NF_INET_PRE_ROUTING
	hookIn  = 1 // NF_INET_LOCAL_IN

	markReply = 0x10
)

var stateNames = map[uint32]string{1: "new", 2: "established", 3: "related", 4: "invalid", 5: "untracked"}

// The sentinel: an untracked UDP packet between two reserved addresses,
// injected after every capture packet. Its arrival at LOCAL_IN proves that
// every event of the packet before it has been seen.
var (
	sentinelSrc = netip.MustParseAddr("198.19.255.254")
	sentinelDst = netip.MustParseAddr("198.19.255.253")
)

// nftRules: label every packet just after conntrack (priority -200) with its
// ct state and direction in the mark; never track the sentinel; drop
// everything the namespace itself sends before conntrack sees it (raw is
// -300, conntrack -200, so -500 runs first).
var nftRules = fmt.Sprintf(`
table inet sworacle {
	chain notrack_sentinel {
		type filter hook prerouting priority raw; policy accept;
		ip saddr %s ip daddr %s notrack
	}
	chain label {
		type filter hook prerouting priority -175; policy accept;
		meta mark set ct state map { new : 1, established : 2, related : 3, invalid : 4, untracked : 5 }
		ct direction reply meta mark set meta mark | %#x
	}
	chain silence {
		type filter hook output priority -500; policy drop;
	}
}
`, sentinelSrc, sentinelDst, markReply)

// iptablesRules queue every packet twice: in mangle PREROUTING (priority
// -150, after the label chain) for the label, and in mangle INPUT to learn
// that the packet reached local delivery, i.e. that its conntrack entry was
// confirmed.
var iptablesRules = fmt.Sprintf(`*mangle
-A PREROUTING -j NFQUEUE --queue-num %d
-A INPUT -j NFQUEUE --queue-num %d
COMMIT
`, queueNum, queueNum)

// Sysctls set in the namespace before the tun device exists (default.*
// applies to it). IPv4: accept packets whose source is a local address
// (every test-range address is local here) and no reverse-path filter.
// IPv6: no RA/redirect processing, no DAD, no link-local address, so the
// namespace never acts on injected ND/RA and sends nothing of its own.
var setupSysctls = [][2]string{
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	{"net/ipv4/conf/all/accept_local", "1"},
	{"net/ipv4/conf/default/accept_local", "1"},
	{"net/ipv4/conf/all/accept_redirects", "0"},
	{"net/ipv4/conf/default/accept_redirects", "0"},
	{"net/ipv6/conf/all/accept_ra", "0"},
	{"net/ipv6/conf/default/accept_ra", "0"},
	{"net/ipv6/conf/all/accept_redirects", "0"},
	{"net/ipv6/conf/default/accept_redirects", "0"},
	{"net/ipv6/conf/all/accept_dad", "0"},
	{"net/ipv6/conf/default/accept_dad", "0"},
	{"net/ipv6/conf/default/addr_gen_mode", "1"},
	{"net/ipv6/conf/default/router_solicitations", "0"},
}

// iptables backends, in order of preference; the first whose restore works
// is used for the rest of the process.
var (
	backendMu sync.Mutex
	backend   [2]string // iptables-restore, ip6tables-restore
)

var backends = [][2]string{
	{"iptables-restore", "ip6tables-restore"}, // iptables-nft on these machines
	{"iptables-nft-restore", "ip6tables-nft-restore"},
	{"iptables-legacy-restore", "ip6tables-legacy-restore"},
}

func (n *namespace) installIptables(ctx context.Context) (string, error) {
	backendMu.Lock()
	defer backendMu.Unlock()
	try := backends
	if backend[0] != "" {
		try = [][2]string{backend}
	}
	var errs []string
	for _, b := range try {
		err := n.exec(ctx, iptablesRules, b[0])
		if err == nil {
			err = n.exec(ctx, iptablesRules, b[1])
		}
		if err == nil {
			backend = b
			return b[0], nil
		}
		errs = append(errs, err.Error())
		n.exec(ctx, "", strings.Replace(b[0], "-restore", "", 1), "-t", "mangle", "-F")
		n.exec(ctx, "", strings.Replace(b[1], "-restore", "", 1), "-t", "mangle", "-F")
	}
	return "", fmt.Errorf("oracle: no iptables backend could install the NFQUEUE rules: %s", strings.Join(errs, "; "))
}

// event is one packet the queue handed over.
type event struct {
	hook     uint8
	mark     uint32
	payload  []byte
	sentinel bool
	seq      uint64
}

// Run replays one capture and labels every packet. See the package
// documentation for how.
func Run(ctx context.Context, path string, opt Options) (*Result, error) {
	start := time.Now()
	if os.Geteuid() != 0 {
		return nil, errors.New("oracle: must run as root (network namespaces, tun, nftables, NFQUEUE)")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Second
	}
	logf := func(format string, a ...any) {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "[%8.3fms] "+format+"\n", append([]any{float64(time.Since(start).Microseconds()) / 1000}, a...)...)
		}
	}
	pkts, table, err := pcaprewrite.RewriteFile(path)
	if err != nil {
		return nil, err
	}
	if opt.KeepAddresses {
		if err := keepAddresses(path, pkts, table); err != nil {
			return nil, err
		}
	}
	res := &Result{File: path, Labels: make([]Label, len(pkts))}
	var gaps []string
	for i, p := range pkts {
		res.Labels[i].Index = i
		if i > 0 && opt.GapScale <= 0 {
			if d := p.Timestamp.Sub(pkts[i-1].Timestamp); d > GapWarning {
				gaps = append(gaps, fmt.Sprintf("gap of %v before packet %d", d.Round(time.Millisecond), i))
			}
		}
	}
	if len(gaps) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: capture gaps longer than %v are not replayed (the kernel's conntrack timeouts run on the wall clock, and packets are injected back to back), so labels after them may differ from a real-time replay: %s",
			filepath.Base(path), GapWarning, strings.Join(gaps, ", ")))
	}

	ns, err := newNamespace(ctx)
	if err != nil {
		return nil, err
	}
	defer ns.remove()
	res.Namespace = ns.name
	logf("oracle: %s: namespace %s, %d packets", filepath.Base(path), ns.name, len(pkts))

	err = ns.inNamespace(func(h netns.NsHandle) error {
		for _, s := range setupSysctls {
			if err := os.WriteFile("/proc/sys/"+s[0], []byte(s[1]), 0); err != nil {
				return fmt.Errorf("oracle: sysctl %s: %w", s[0], err)
			}
		}
		tun, err := openTun(tunName)
		if err != nil {
			return err
		}
		defer unix.Close(tun)
		if err := run(ctx, strings.Join([]string{
			"link set lo up",
			"link set " + tunName + " mtu 65535 up",
			"route add local " + pcaprewrite.IPv4Range.String() + " dev lo",
			"route add local " + pcaprewrite.IPv6Range.String() + " dev lo",
		}, "\n")+"\n", "ip", "-n", ns.name, "-batch", "-"); err != nil {
			return err
		}
		if err := ns.exec(ctx, nftRules, "nft", "-f", "-"); err != nil {
			return err
		}
		if res.Backend, err = ns.installIptables(ctx); err != nil {
			return err
		}
		for _, name := range sortedKeys(opt.Sysctls) {
			path := name
			if !strings.Contains(name, "/") {
				path = "net/netfilter/" + name
			}
			if strings.Contains(path, "..") || strings.HasPrefix(path, "/") {
				return fmt.Errorf("oracle: sysctl %q: not a name under /proc/sys", name)
			}
			if err := os.WriteFile("/proc/sys/"+path, []byte(opt.Sysctls[name]), 0); err != nil {
				return fmt.Errorf("oracle: sysctl %s = %s: %w", name, opt.Sysctls[name], err)
			}
		}
		res.Sysctls = readSysctls("/proc/sys/net/netfilter")
		if opt.Log != nil {
			logf("oracle: iptables backend %s; namespace sysctls:", res.Backend)
			for _, s := range res.Sysctls {
				logf("  net.netfilter.%s", s)
			}
		}
		logf("oracle: namespace ready")
		err = replay(ctx, h, tun, pkts, res, opt, logf)
		if err == nil && opt.Log != nil {
			// The conntrack table the replay left behind, for reviewers.
			var out strings.Builder
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.name, "conntrack", "-L")
			cmd.Stdout, cmd.Stderr = &out, &out
			if cerr := cmd.Run(); cerr != nil {
				logf("oracle: conntrack -L: %v", cerr)
			}
			logf("oracle: conntrack table after the replay:\n%s", strings.TrimRight(out.String(), "\n"))
		}
		return err
	})
	logf("oracle: replay done")
	if rmErr := ns.remove(); err == nil && rmErr != nil {
		err = rmErr
	}
	res.Elapsed = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("oracle: %s: %w", filepath.Base(path), err)
	}
	return res, nil
}

// keepAddresses puts the capture's own bytes back into pkts (the rewrite
// of a raw-IP capture changes addresses and checksums only, so each packet
// keeps its length), after checking that every address the rewriter found
// may go on an interface.
func keepAddresses(path string, pkts []pcaprewrite.Packet, table map[netip.Addr]netip.Addr) error {
	for a := range table {
		if !pcaprewrite.InRange(a) || pcaprewrite.ReservedIPv4.Contains(a) || pcaprewrite.ReservedIPv6.Contains(a) {
			return fmt.Errorf("oracle: %s: address %v is outside the test ranges (or in a reserved one): KeepAddresses refuses to inject it", filepath.Base(path), a)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return fmt.Errorf("oracle: %s: KeepAddresses reads classic pcap only: %w", filepath.Base(path), err)
	}
	switch lt := r.LinkType(); lt {
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
	default:
		return fmt.Errorf("oracle: %s: KeepAddresses needs raw IP packets, not link type %d", filepath.Base(path), lt)
	}
	for i := range pkts {
		frame, _, err := r.ReadPacketData()
		if err != nil {
			return fmt.Errorf("oracle: %s: packet %d: %w", filepath.Base(path), i, err)
		}
		if pkts[i].Data != nil {
			if len(frame) < len(pkts[i].Data) {
				return fmt.Errorf("oracle: %s: packet %d: shorter than its rewrite", filepath.Base(path), i)
			}
			pkts[i].Data = append(pkts[i].Data[:0], frame[:len(pkts[i].Data)]...)
		}
	}
	return nil
}

// replay injects every packet, one at a time, and collects its events.
func replay(ctx context.Context, h netns.NsHandle, tun int, pkts []pcaprewrite.Packet, res *Result, opt Options, logf func(string, ...any)) error {
	qr, err := openQueue(ctx, h)
	if err != nil {
		return err
	}
	defer qr.close()
	logf("oracle: nfqueue bound")

	frags := map[fragKey][]pending{}
	labels := res.Labels
	var seq uint64
	timer := time.NewTimer(opt.Timeout)
	defer timer.Stop()

	start := time.Now()
	for i, p := range pkts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opt.GapScale > 0 {
			due := start.Add(time.Duration(opt.GapScale * float64(p.Timestamp.Sub(pkts[0].Timestamp))))
			if err := sleepUntil(ctx, due); err != nil {
				return err
			}
			res.MaxLate = max(res.MaxLate, time.Since(due))
		}
		if p.Skip != "" {
			labels[i].Note = "not injected: " + p.Skip
			logf("  #%d skip: %s", i, p.Skip)
			continue
		}
		if _, err := unix.Write(tun, p.Data); err != nil {
			// e.g. EINVAL for a packet the tun driver refuses
			labels[i].Note = fmt.Sprintf("not injected: tun write failed: %v", err)
			logf("  #%d tun write: %v", i, err)
			continue
		}
		seq++
		if _, err := unix.Write(tun, sentinelPacket(seq)); err != nil {
			return fmt.Errorf("sentinel write: %w", err)
		}
		pre, in, err := qr.await(ctx, timer, opt.Timeout, seq, i)
		if err != nil {
			return err
		}

		frag := pcaprewrite.FragmentOf(p.Data)
		lab := &labels[i]
		if len(pre) == 0 {
			if frag.IsFragment {
				k := keyOf(frag)
				frags[k] = append(frags[k], pending{i, frag.Offset, frag.Offset + frag.Len})
				logf("  #%d no verdict yet: fragment held by kernel defrag", i)
				continue
			}
			lab.Note = noVerdictReason(p.Data)
			logf("  #%d no verdict (%s)", i, lab.Note)
			continue
		}
		ev := pre[0]
		lab.CT, lab.Dir = markLabel(ev.mark)
		var notes []string
		if frag.IsFragment && bytes.Equal(ev.payload, p.Data) {
			notes = passedThrough(labels, frags, frag, p.Data, i)
		} else if frag.IsFragment {
			notes = labelDatagram(labels, pkts, frags, frag, i, ev)
		} else if !bytes.Equal(ev.payload, p.Data) {
			notes = append(notes, "the queued packet differs from the injected one")
		}
		notes = append(notes, eventNotes(ev, pre, in)...)
		if len(notes) > 0 {
			if lab.Note != "" {
				notes = append([]string{lab.Note}, notes...)
			}
			lab.Note = strings.Join(notes, "; ")
		}
		logf("  #%d %s %s (mark %#x, %d/%d events)%s", i, lab.CT, lab.Dir, ev.mark, len(pre), len(in), optNote(lab.Note))
	}
	for _, group := range frags {
		for _, g := range group {
			labels[g.idx].Note = "fragment: no verdict, the kernel's defrag never completed the datagram (a fragment is missing, or overlapping fragments made it drop the whole datagram)"
		}
	}
	for i := range labels {
		if opt.GapScale > 0 {
			break
		}
		if gapNote := gapBefore(pkts, i); gapNote != "" {
			if labels[i].Note != "" {
				labels[i].Note += "; " + gapNote
			} else {
				labels[i].Note = gapNote
			}
		}
	}
	return qr.error()
}

// queueReader reads the oracle's queue (go-nfqueue) in the namespace and
// hands every queued packet, accepted (a sentinel at LOCAL_IN: dropped),
// to the replay as an event.
type queueReader struct {
	q      *nfqueue.Nfqueue
	events chan event
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error // the first error of the reader goroutine; guarded by mu
}

func openQueue(ctx context.Context, h netns.NsHandle) (*queueReader, error) {
	q, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        int(h),
		NfQueue:      queueNum,
		MaxPacketLen: 0xffff,
		MaxQueueLen:  64,
		Copymode:     nfqueue.NfQnlCopyPacket,
		AfFamily:     unix.AF_UNSPEC,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("nfqueue open: %w", err)
	}
	qctx, cancel := context.WithCancel(ctx)
	r := &queueReader{q: q, events: make(chan event, 64), cancel: cancel}
	err = q.RegisterWithErrorFunc(qctx, func(a nfqueue.Attribute) int {
		if a.PacketID == nil || a.Payload == nil || a.Hook == nil {
			r.fail(errors.New("nfqueue message without id, payload or hook"))
			return 0
		}
		ev := event{hook: *a.Hook, payload: append([]byte(nil), *a.Payload...)}
		if a.Mark != nil {
			ev.mark = *a.Mark
		}
		ev.seq, ev.sentinel = sentinelSeq(ev.payload)
		verdict := nfqueue.NfAccept
		if ev.sentinel && ev.hook == hookIn {
			verdict = nfqueue.NfDrop // it has done its job; nothing needs to answer it
		}
		if err := q.SetVerdict(*a.PacketID, verdict); err != nil {
			r.fail(fmt.Errorf("nfqueue verdict: %w", err))
		}
		select {
		case r.events <- ev:
		case <-qctx.Done():
			return 1
		}
		return 0
	}, func(err error) int {
		if qctx.Err() != nil {
			return 1
		}
		var oe *netlink.OpError
		if errors.As(err, &oe) && (oe.Timeout() || oe.Temporary()) {
			return 0
		}
		r.fail(fmt.Errorf("nfqueue receive: %w", err))
		return 1
	})
	if err != nil {
		r.close()
		return nil, fmt.Errorf("nfqueue register: %w", err)
	}
	return r, nil
}

func (r *queueReader) close() {
	r.cancel()
	r.q.Close()
}

func (r *queueReader) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *queueReader) error() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// await collects the events of packet i until its sentinel (number seq)
// reaches LOCAL_IN, which the kernel queues after everything the packet
// caused: the packet's events at PREROUTING and at LOCAL_IN.
func (r *queueReader) await(ctx context.Context, timer *time.Timer, timeout time.Duration, seq uint64, i int) (pre, in []event, err error) {
	sentinelPre := false
	if !timer.Stop() {
		select {
		case <-timer.C:
		default:
		}
	}
	timer.Reset(timeout)
	for {
		select {
		case ev := <-r.events:
			switch {
			case ev.sentinel && ev.seq == seq && ev.hook == hookIn:
				return pre, in, nil
			case ev.sentinel:
				if ev.seq != seq {
					return nil, nil, fmt.Errorf("packet %d: sentinel %d arrived while waiting for %d", i, ev.seq, seq)
				}
				sentinelPre = true
			case ev.hook == hookPre:
				pre = append(pre, ev)
			default:
				in = append(in, ev)
			}
		case <-timer.C:
			where := "never reached PREROUTING"
			if sentinelPre {
				where = "reached PREROUTING but not LOCAL_IN (are packets from local source addresses dropped as martians? accept_local/rp_filter)"
			}
			return nil, nil, fmt.Errorf("packet %d: the sentinel %s within %v: lost synchronisation with the kernel (queue error: %v)", i, where, timeout, r.error())
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// labelDatagram labels the fragments of the datagram that fragment frag
// (packet i) completed: the kernel reassembled it before conntrack, and
// ev, the queued datagram, got the label that every fragment in it gets.
// It returns notes for packet i.
func labelDatagram(labels []Label, pkts []pcaprewrite.Packet, frags map[fragKey][]pending, frag pcaprewrite.Fragment, i int, ev event) []string {
	lab := &labels[i]
	k := keyOf(frag)
	group := append(frags[k], pending{i, frag.Offset, frag.Offset + frag.Len})
	delete(frags, k)
	// Which fragments is the queued datagram made of? A fragment whose
	// bytes differ from the datagram at its offset is not in it
	// (observed); one that repeats bytes an earlier fragment already
	// supplied is an identical duplicate, which the kernel's defrag
	// discards (IPFRAG_DUP; inferred).
	start := fragStart(ev.payload, pkts, group)
	excluded := make([]string, len(group))
	var members []string
	for gi, g := range group {
		gf := pcaprewrite.FragmentOf(pkts[g.idx].Data)
		data := pkts[g.idx].Data[gf.DataOff : gf.DataOff+gf.Len]
		lo, hi := start+g.off, start+g.end
		switch {
		case start < 0 || hi > len(ev.payload):
			// cannot compare; fall back to the rule
			if d := coveredBy(group[:gi], g.off, g.end); d >= 0 {
				excluded[gi] = fmt.Sprintf("fragment: duplicate of packet %d (same datagram bytes); kernel defrag discards such a fragment on its own (IPFRAG_DUP), so it is not part of the reassembled datagram (inferred from the kernel's rule, not observed)", group[d].idx)
			}
		case !bytes.Equal(data, ev.payload[lo:hi]):
			d := coveredBy(group[:gi], g.off, g.end)
			excluded[gi] = "fragment: not part of the reassembled datagram (its bytes differ from what the kernel reassembled at its offset)"
			if d >= 0 {
				excluded[gi] = fmt.Sprintf("fragment: not part of the reassembled datagram: it overlaps packet %d with different bytes and the kernel kept the earlier one (IPFRAG_DUP discards the later fragment)", group[d].idx)
			}
		default:
			if d := coveredBy(group[:gi], g.off, g.end); d >= 0 {
				excluded[gi] = fmt.Sprintf("fragment: identical duplicate of packet %d; kernel defrag discards such a fragment on its own (IPFRAG_DUP), so it is not part of the reassembled datagram (inferred from the kernel's rule: the bytes are the same either way)", group[d].idx)
			}
		}
		if excluded[gi] == "" {
			members = append(members, fmt.Sprint(g.idx))
		}
	}
	for gi, g := range group {
		gl := &labels[g.idx]
		if excluded[gi] != "" {
			*gl = Label{Index: g.idx, Note: excluded[gi]}
			continue
		}
		gl.CT, gl.Dir = lab.CT, lab.Dir
		gl.Note = fmt.Sprintf("fragment: label of the reassembled datagram (packets %s), reported when packet %d completed it", strings.Join(members, ", "), i)
	}
	if !reassembledMatches(ev.payload, pkts[i].Data) {
		return []string{"the queued datagram does not match this fragment's addresses"}
	}
	return nil
}

// passedThrough notes an IPv6 fragment (packet i) that conntrack saw as it
// was injected, fragment header and all: the kernel's defrag let it through
// unreassembled, and conntrack labelled the fragment itself.
// nf_ct_frag6_gather does that (returns 0, which ipv6_defrag turns into
// NF_ACCEPT) in two cases: a first fragment that does not hold the headers
// through the transport header's first bytes (ipv6frag_thdr_truncated; RFC
// 8200 says to discard it, the comment says "drop", the code accepts it),
// before the datagram's queue is looked up, so the fragments held for it
// stay; and a non-last fragment whose length is not a multiple of 8, which
// nf_ct_frag6_queue answers with -EPROTO after killing the datagram's queue,
// so the fragments held for it are gone and get no label.
func passedThrough(labels []Label, frags map[fragKey][]pending, frag pcaprewrite.Fragment, data []byte, i int) []string {
	note := "fragment: passed through the kernel's defrag unreassembled, so conntrack labelled the fragment itself"
	if frag.First && thdrTruncated(data) {
		return []string{note + " (a first fragment without the whole header chain: ipv6frag_thdr_truncated)"}
	}
	k := keyOf(frag)
	for _, g := range frags[k] {
		labels[g.idx] = Label{Index: g.idx, Note: fmt.Sprintf("fragment: no verdict: the kernel's defrag dropped its datagram when packet %d passed through it unreassembled", i)}
	}
	delete(frags, k)
	return []string{note + " (a non-last fragment whose length is not a multiple of 8: IPv6 defrag lets it through and drops the fragments held for its datagram)"}
}

// thdrTruncated is the kernel's ipv6frag_thdr_truncated on IPv6 packet b:
// from its fragment header on, the extension headers (as ipv6_skip_exthdr
// walks them) and the first bytes of the transport header (TCP 20, UDP
// and ICMPv6 8, anything else 1) do not fit in the packet, and the
// fragment is the first. A header that cannot be read at all makes it
// false, as in the kernel.
func thdrTruncated(b []byte) bool {
	if len(b) < 40 || b[0]>>4 != 6 {
		return false
	}
	next, at := b[6], 40
	seenFrag := false
	for {
		switch next {
		case 0, 43, 60, 51, 44: // hop-by-hop, routing, destination options, AH, fragment
		case 59: // no next header: ipv6_skip_exthdr fails
			return false
		default:
			if !seenFrag {
				return false
			}
			need := 1
			switch next {
			case 6:
				need = 20
			case 17, 58:
				need = 8
			}
			return at+need > len(b)
		}
		if next == 44 {
			if at+8 > len(b) {
				return false
			}
			if binary.BigEndian.Uint16(b[at+2:])&^7 != 0 {
				return false // not the first fragment
			}
			seenFrag = true
			next, at = b[at], at+8
			continue
		}
		if at+2 > len(b) {
			return false
		}
		n := (int(b[at+1]) + 1) * 8
		if next == 51 {
			n = (int(b[at+1]) + 2) * 4
		}
		next, at = b[at], at+n
	}
}

// eventNotes says what was odd about a packet's events: several at
// PREROUTING, none at LOCAL_IN (so a new entry was never confirmed), or a
// mark that changed between the two.
func eventNotes(ev event, pre, in []event) []string {
	var notes []string
	if len(pre) > 1 {
		notes = append(notes, fmt.Sprintf("%d PREROUTING events for one injected packet", len(pre)))
	}
	if len(in) == 0 {
		notes = append(notes, "labelled at PREROUTING but not delivered to LOCAL_IN (dropped by routing or input checks), so a new entry was not confirmed")
	} else if in[0].mark != ev.mark {
		notes = append(notes, fmt.Sprintf("mark changed between PREROUTING (%#x) and INPUT (%#x)", ev.mark, in[0].mark))
	}
	return notes
}

func optNote(n string) string {
	if n == "" {
		return ""
	}
	return ": " + n
}

func gapBefore(pkts []pcaprewrite.Packet, i int) string {
	if i == 0 {
		return ""
	}
	if d := pkts[i].Timestamp.Sub(pkts[i-1].Timestamp); d > GapWarning {
		return fmt.Sprintf("capture gap of %v before this packet was not replayed (timeouts may differ)", d.Round(time.Millisecond))
	}
	return ""
}

func markLabel(mark uint32) (ct, dir string) {
	ct = stateNames[mark&0x0f]
	if ct == "" {
		return "", ""
	}
	if ct == "new" || ct == "established" || ct == "related" {
		dir = "original"
		if mark&markReply != 0 {
			dir = "reply"
		}
	}
	return ct, dir
}

// noVerdictReason explains a packet that never reached mangle PREROUTING.
func noVerdictReason(b []byte) string {
	if len(b) >= 20 && b[0]>>4 == 4 {
		ihl := int(b[0]&0x0f) * 4
		if pcaprewrite.Checksum(b[:ihl], 0) != 0 {
			return "no verdict: bad IPv4 header checksum, dropped by ip_rcv before netfilter"
		}
	}
	return "no verdict: dropped before the mangle PREROUTING hook (IP input checks, defrag or conntrack)"
}

// fragKey identifies a datagram for reassembly as the kernel does:
// addresses, id, and for IPv4 the protocol.
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

func keyOf(f pcaprewrite.Fragment) fragKey {
	k := fragKey{src: f.Src, dst: f.Dst, id: f.ID}
	if f.Src.Is4() {
		k.proto = f.Proto
	}
	return k
}

// pending is a fragment the kernel is holding: packet index and the
// datagram bytes [off, end) it carries.
type pending struct {
	idx      int
	off, end int
}

// coveredBy returns the index of an earlier fragment whose byte range
// contains [off, end), or -1.
func coveredBy(earlier []pending, off, end int) int {
	for i, e := range earlier {
		if e.off <= off && end <= e.end {
			return i
		}
	}
	return -1
}

// fragStart finds where the fragmentable part (fragment offset 0) begins in
// the queued reassembled datagram q: after the IPv4 header, or for IPv6 where
// the fragment header was (nf_defrag_ipv6 removes it), as the first fragment
// of the group shows. -1 if unknown.
func fragStart(q []byte, pkts []pcaprewrite.Packet, group []pending) int {
	if len(q) < 20 {
		return -1
	}
	if q[0]>>4 == 4 {
		return int(q[0]&0x0f) * 4
	}
	for _, g := range group {
		if f := pcaprewrite.FragmentOf(pkts[g.idx].Data); f.First {
			return f.DataOff - 8
		}
	}
	return -1
}

// reassembledMatches checks that a queued reassembled datagram has the
// fragment's addresses.
func reassembledMatches(q, frag []byte) bool {
	if len(q) < 20 || len(frag) < 20 || q[0]>>4 != frag[0]>>4 {
		return false
	}
	if q[0]>>4 == 4 {
		return bytes.Equal(q[12:20], frag[12:20])
	}
	return len(q) >= 40 && len(frag) >= 40 && bytes.Equal(q[8:40], frag[8:40])
}

// sentinelPacket builds the sentinel with sequence number seq.
func sentinelPacket(seq uint64) []byte {
	b := make([]byte, 20+8+8)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := sentinelSrc.As4(), sentinelDst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], pcaprewrite.Checksum(b[:20], 0))
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:], 9)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], 16)
	binary.BigEndian.PutUint64(u[8:], seq)
	ps := uint32(s[0])<<8 | uint32(s[1])
	ps += uint32(s[2])<<8 | uint32(s[3])
	ps += uint32(d[0])<<8 | uint32(d[1])
	ps += uint32(d[2])<<8 | uint32(d[3])
	ps += 17 + 16
	c := pcaprewrite.Checksum(u, ps)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return b
}

// sentinelSeq recognises a sentinel and returns its sequence number.
func sentinelSeq(b []byte) (uint64, bool) {
	if len(b) != 36 || b[0] != 0x45 || b[9] != 17 {
		return 0, false
	}
	s, d := sentinelSrc.As4(), sentinelDst.As4()
	if !bytes.Equal(b[12:16], s[:]) || !bytes.Equal(b[16:20], d[:]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[28:]), true
}

// openTun creates a tun device (IFF_TUN, no packet-information header) in
// the calling thread's network namespace. A write to the returned fd is
// received by the namespace as an incoming packet on that device, processed
// synchronously in the write (netif_receive_skb), with CHECKSUM_NONE so
// conntrack verifies transport checksums.
func openTun(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	return fd, nil
}

// sleepUntil waits until t, or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readSysctls lists every file under dir as "name = value".
func readSysctls(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		v, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		out = append(out, e.Name()+" = "+strings.TrimSpace(string(v)))
	}
	sort.Strings(out)
	return out
}
