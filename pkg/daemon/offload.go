package daemon

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// Offload (Config.Offload, `statewall run --offload`) hands established
// connections to the kernel, as Suricata's bypass and OpenSnitch do: once
// statewall passes a packet of an assured TCP connection in state
// ESTABLISHED, or of an assured UDP stream, the verdict sets the offload
// bit in the packet's mark; after the host's filter table a rule saves it
// into the connection's kernel conntrack mark (nfq's <Tag>-OFFLOAD
// chains), and from then on the divert chains return that connection's
// packets before the queue: the kernel carries them, statewall's reader
// never sees them.
//
// statewall's table keeps the connection meanwhile, so that `statewall
// conntrack` and the counts stay true:
//
//   - the kernel's DESTROY event for a connection with the bit (ctnetlink)
//     removes statewall's entry (Table.Forget; counted as deleted);
//   - every offloadSyncEvery, a dump of the kernel's connections with the
//     bit sets each entry's time left to the kernel's, plus a period
//     (Table.Refresh), so an offloaded entry outlives no kernel entry by
//     more than that and never expires while the kernel carries it;
//     an entry statewall no longer has (deleted by `statewall conntrack
//     --delete`, an overload flush) gets its bit cleared in the kernel,
//     so its packets come back to the queue and meet the table as it is;
//     an offloaded connection the dump misses, and the kernel has no
//     entry for at all, ended while its DESTROY event was lost (the
//     events socket overran): its entry is removed then;
//   - a reload hands every connection back (the bit cleared in the
//     kernel): each is offloaded again at its next packet only if the
//     new rules would pass its first packet and do not log all its
//     packets, so a connection the new rules would not pass stays where
//     statewall sees it (and, as any connection, passes by state). A TCP
//     connection handed back has gone on without statewall: its entry
//     learns the windows again from its next packets (Table.PickUp, as
//     for a connection taken over from a state-sync peer);
//   - at start, connections a previous run offloaded are handed back.
//
// What statewall does not see while a connection is offloaded: its
// packets (the per-packet, per-rule and shadow counters do not count
// them; Status.Offload counts the connections), its TCP state changes
// (the kernel's conntrack checks the windows and ends it: statewall's
// entry keeps the state it had, ESTABLISHED, with the kernel's time
// left). Shadow mode compares nothing of an offloaded connection:
// Status.Offload.Active says how many it is not seeing.
//
// Not offloaded: connections of `log (all)` rules, ICMP, SCTP, GRE and
// other protocols, and anything in stateless mode (there is no state to
// hand over).

// offloadSyncEvery is how often the offloaded connections are compared
// with the kernel's (see above).
const offloadSyncEvery = 10 * time.Second

// offloader is the daemon's side of offload.
type offloader struct {
	d   *Daemon
	bit uint32

	mu    sync.Mutex
	conns map[conntrack.Key]int64 // offloaded connections (original tuple) -> when (d.now)

	syncReq chan bool // true: hand every connection back (reload)
	stop    chan struct{}
	done    chan struct{}
	ev      *nfq.CTEvents
	ct      *nfq.CT // the sync's requests; the sync loop's own (newOffloader's before it starts)

	offloaded, ended, returned, lost, errs atomic.Uint64
}

// OffloadStatus is offload's part of Status.
type OffloadStatus struct {
	Mark uint32 `json:"mark"`
	// Active is how many connections the kernel carries now: statewall
	// sees none of their packets.
	Active int `json:"active"`
	// Offloaded counts connections handed to the kernel (again after a
	// reload: once more), Ended those the kernel ended (their entries
	// removed), Returned those handed back to the queue (reload, start,
	// deleted by statewall), Lost those whose end was learnt without an
	// event (lost in a socket overrun).
	Offloaded uint64 `json:"offloaded"`
	Ended     uint64 `json:"ended"`
	Returned  uint64 `json:"returned"`
	Lost      uint64 `json:"lost"`
	Errors    uint64 `json:"errors"`
}

func (o *offloader) status() *OffloadStatus {
	o.mu.Lock()
	n := len(o.conns)
	o.mu.Unlock()
	return &OffloadStatus{Mark: o.bit, Active: n, Offloaded: o.offloaded.Load(), Ended: o.ended.Load(),
		Returned: o.returned.Load(), Lost: o.lost.Load(), Errors: o.errs.Load()}
}

// startOffload starts offload if Config asks for it and the mode has
// state, and returns the mark bit for the divert rules (0: no offload).
func (d *Daemon) startOffload() uint32 {
	if !d.cfg.Offload || d.cfg.Mode == Stateless {
		return 0
	}
	bit := d.cfg.OffloadMark
	if bit == 0 {
		bit = nfq.DefaultOffloadMark
	}
	o, err := newOffloader(d, bit)
	if err != nil {
		d.log.Warn("offload off: cannot follow the kernel's conntrack", "err", err)
		return 0
	}
	d.off.Store(o)
	return bit
}

// stopOffload stops offload, if on. The kernel's connections keep their
// bit; the next start hands them back.
func (d *Daemon) stopOffload() {
	if o := d.off.Swap(nil); o != nil {
		o.close()
	}
}

// offloadDeleted hands the connections statewall deleted back to the
// queues, if any was offloaded: their packets must meet the table again.
func (d *Daemon) offloadDeleted() {
	if o := d.off.Load(); o != nil {
		o.request(false)
	}
}

// newOffloader subscribes to the kernel's DESTROY events, hands back what
// a previous run offloaded, and starts the sync loop. Called before the
// divert rules are installed.
func newOffloader(d *Daemon, bit uint32) (*offloader, error) {
	ev, err := nfq.ListenDestroy(d.cfg.Netns, 4<<20)
	if err != nil {
		return nil, err
	}
	ct, err := nfq.DialCT(d.cfg.Netns)
	if err != nil {
		ev.Close()
		return nil, err
	}
	o := &offloader{d: d, bit: bit, conns: map[conntrack.Key]int64{}, syncReq: make(chan bool, 1),
		stop: make(chan struct{}), done: make(chan struct{}), ev: ev, ct: ct}
	o.register(d.m.reg)
	o.sync(true)
	go o.events()
	go o.loop()
	return o, nil
}

func (o *offloader) register(reg *prometheus.Registry) {
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) }))
	}
	gauge("statewall_offload_active", "Connections the kernel carries for statewall now (--offload): statewall sees none of their packets.",
		func() float64 { o.mu.Lock(); defer o.mu.Unlock(); return float64(len(o.conns)) })
	counter("statewall_offload_total", "Connections handed to the kernel.", &o.offloaded)
	counter("statewall_offload_ended_total", "Offloaded connections the kernel ended (their entries removed).", &o.ended)
	counter("statewall_offload_returned_total", "Offloaded connections handed back to the queues (reload, start, deleted by statewall).", &o.returned)
	counter("statewall_offload_lost_events_total", "Offloaded connections whose end was learnt without the kernel's event.", &o.lost)
}

// close stops the loops.
func (o *offloader) close() {
	close(o.stop)
	o.ev.Close()
	<-o.done
}

// request asks the sync loop for a sync now; back hands every connection
// back first (a reload).
func (o *offloader) request(back bool) {
	for {
		select {
		case o.syncReq <- back:
			return
		default:
		}
		select {
		case b := <-o.syncReq: // merge with the pending request
			back = back || b
		default:
		}
	}
}

func (o *offloader) loop() {
	defer close(o.done)
	defer o.ct.Close()
	t := time.NewTicker(offloadSyncEvery)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.sync(false)
		case back := <-o.syncReq:
			o.sync(back)
		}
	}
}

// events applies the kernel's DESTROY events: an offloaded connection
// that ended leaves statewall's table too.
func (o *offloader) events() {
	for {
		flows, err := o.ev.Receive()
		switch {
		case errors.Is(err, nfq.ErrCTOverrun):
			o.request(false)
			continue
		case err != nil:
			return // closed
		}
		for i := range flows {
			f := &flows[i]
			if f.Mark&o.bit == 0 {
				continue
			}
			k := flowKey(f)
			o.mu.Lock()
			delete(o.conns, k)
			delete(o.conns, k.Reply())
			o.mu.Unlock()
			if o.d.table.Forget(k, o.d.now()) {
				o.ended.Add(1)
			}
		}
	}
}

// sync compares the offloaded connections with the kernel's (see the
// comment at the top); with back, it hands every one back instead.
func (o *offloader) sync(back bool) {
	ct := o.ct
	start := o.d.now()
	flows, err := ct.Dump(o.bit, o.bit)
	if err != nil {
		o.fail("offload: reading the kernel's offloaded connections", err)
		return
	}
	seen := make(map[conntrack.Key]bool, len(flows))
	for i := range flows {
		f := &flows[i]
		k := flowKey(f)
		if !back && o.d.table.Refresh(k, start, f.Timeout+offloadSyncEvery+time.Second) {
			seen[k] = true
			o.mu.Lock()
			if _, ok := o.conns[k]; !ok {
				if _, ok := o.conns[k.Reply()]; !ok {
					// The kernel has the bit and the map lost the
					// connection (a hand-back racing its re-offload).
					o.conns[k] = start
				}
			}
			o.mu.Unlock()
			continue
		}
		// Handed back: its packets meet statewall's table again, which
		// learns the TCP windows afresh from them (the connection went
		// on without it).
		if back {
			o.d.table.PickUp(k, start)
		}
		if err := ct.SetMark(f, 0, o.bit); err == nil {
			o.returned.Add(1)
		}
		o.mu.Lock()
		delete(o.conns, k)
		delete(o.conns, k.Reply())
		o.mu.Unlock()
	}
	var missing []conntrack.Key
	o.mu.Lock()
	for k, at := range o.conns {
		switch {
		case at >= start:
			// Offloaded while this sync ran: the dump may not have
			// shown it yet.
		case back:
			delete(o.conns, k)
		case !seen[k] && !seen[k.Reply()]:
			missing = append(missing, k)
		}
	}
	o.mu.Unlock()
	if len(missing) == 0 {
		return
	}
	// Offloaded here but not marked in the kernel: the kernel ended the
	// connection and its event was lost, or the bit never reached it (the
	// host's filter dropped the packet that carried it). Which one, the
	// kernel's whole table says.
	all, err := ct.Dump(0, 0)
	if err != nil {
		o.fail("offload: reading the kernel's connections", err)
		return
	}
	have := make(map[conntrack.Key]bool, len(all))
	for i := range all {
		have[flowKey(&all[i])] = true
	}
	for _, k := range missing {
		o.mu.Lock()
		delete(o.conns, k)
		o.mu.Unlock()
		if have[k] || have[k.Reply()] {
			continue // not carried by the kernel: statewall still sees it
		}
		if o.d.table.Forget(k, o.d.now()) {
			o.ended.Add(1)
			o.lost.Add(1)
		}
	}
}

func (o *offloader) fail(what string, err error) {
	if o.errs.Add(1) == 1 {
		o.d.log.Error(what+"; counting further errors", "err", err)
	}
}

// flowKey is statewall's tuple for a kernel connection. statewall sees a
// packet after the kernel's destination NAT (prerouting, output) and
// before its source NAT (postrouting), so its original tuple runs from the
// kernel's original source to the kernel's reply source.
func flowKey(f *nfq.CTFlow) conntrack.Key {
	p := packet.Packet{IPVersion: 4, Proto: packet.Proto(f.Proto),
		Src: f.Orig.Src.Unmap(), Dst: f.Reply.Src.Unmap(), SrcPort: f.Orig.SrcPort, DstPort: f.Reply.SrcPort}
	if p.Src.Is6() {
		p.IPVersion = 6
	}
	return conntrack.KeyOf(&p)
}

// consider is called on the packet path for every packet the stateful
// engine passed by state: it sets the offload bit on the packet's verdict
// if its connection may go to the kernel (see the comment at the top).
// Precondition: dec.Verdict is Pass and dec.Cause CauseState.
func (o *offloader) consider(p *nfq.Packet, pk *packet.Packet, dec *engine.Decision, at rules.Where, now int64) {
	if dec.CT.Label != conntrack.LabelEstablished || (pk.Proto != packet.ProtoTCP && pk.Proto != packet.ProtoUDP) {
		return
	}
	k := conntrack.KeyOf(pk)
	o.mu.Lock()
	_, known := o.conns[k]
	if !known {
		_, known = o.conns[k.Reply()]
	}
	o.mu.Unlock()
	if !known {
		e, ok := o.d.table.Get(k, now)
		if !ok || !e.Assured || pk.Proto == packet.ProtoTCP && e.TCPState != tcpstate.Established {
			return
		}
		if o.d.stateful.LogAllRule(dec) != nil || !o.rulesPass(pk, at, dec.CT.Reply) {
			return
		}
		o.mu.Lock()
		if _, again := o.conns[e.Original]; !again {
			o.conns[e.Original] = now
			o.offloaded.Add(1)
		}
		o.mu.Unlock()
	}
	p.SetMark |= o.bit
}

// rulesPass reports whether the rules in force pass the first packet of
// pk's connection: pk itself, or reversed if it is a reply, as a TCP
// connection's SYN.
func (o *offloader) rulesPass(pk *packet.Packet, at rules.Where, reply bool) bool {
	first := *pk
	if reply {
		first.Src, first.Dst = pk.Dst, pk.Src
		first.SrcPort, first.DstPort = pk.DstPort, pk.SrcPort
		switch at.Dir {
		case rules.DirIn:
			at.Dir = rules.DirOut
		case rules.DirOut:
			at.Dir = rules.DirIn
		}
		at.In, at.Out = at.Out, at.In
	}
	if first.Proto == packet.ProtoTCP {
		first.TCPFlags = packet.TCPSyn
	}
	var dec engine.Decision
	o.d.stateless.DecideAt(&dec, &first, at)
	return dec.Verdict == engine.Pass
}
