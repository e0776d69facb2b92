package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/hasync"
	"github.com/statewall/statewall/pkg/links"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/reject"
	"github.com/statewall/statewall/pkg/rules"
)

// Daemon is one running statewall. Create it with New, run it with Run;
// Reload, Status and Conntrack may be called from any goroutine while it
// runs.
type Daemon struct {
	cfg Config
	log *slog.Logger

	stateless *engine.Stateless
	stateful  *engine.Stateful
	table     *conntrack.Table

	// reloadMu serialises reloads and interface changes: both bind a
	// ruleset to the interfaces and swap it in.
	reloadMu sync.Mutex
	loaded   atomic.Pointer[loadInfo]
	raw      *rules.Ruleset         // the ruleset as parsed, before Bind; under reloadMu
	tables   map[string]*tableEntry // raw's run-time tables; replaced whole under reloadMu
	ifaces   []rules.Iface          // the host's interfaces (nil before the watcher starts); under reloadMu

	// limit and timeouts are the connection table's, fixed by the first
	// ruleset: a reload cannot resize the table or change its timeouts.
	limit    int
	timeouts conntrack.Timeouts
	srcLimit int           // set limit src-nodes, fixed by the first ruleset as limit is
	srcTrack time.Duration // set timeout src.track, likewise

	rej         *reject.Sender                // answers `block return`; nil until Run opens it
	rejReady    atomic.Pointer[reject.Sender] // rej, for the control socket and metrics
	plog        *pflog.Logger                 // nil until Run starts it; the packet path reads it
	plogReady   atomic.Pointer[pflog.Logger]  // plog, for the control socket and metrics
	lastLogLine atomic.Int64                  // LogLines: the last line's time

	off     atomic.Pointer[offloader] // offload.go; nil without Config.Offload
	workers []worker                  // one per queue, indexed by queue - cfg.Queues[0]
	m       *metrics
	reader  atomic.Pointer[nfq.Reader]
	started time.Time
	lastLog [2]atomic.Int64 // shadow logging: last log time per disagreement kind

	// kernelDefrag: the kernel reassembles before the queues (EnableDefrag
	// succeeded), so a fragment that is queued was passed on unreassembled.
	kernelDefrag atomic.Bool

	// keepDivert: the coming stop is for a restart (StopForRestart).
	keepDivert atomic.Bool

	// sync is the state-sync node (sync.go); nil until Run starts it, or
	// without Config.Sync. deferSync: Config.Sync.Defer is on.
	sync      atomic.Pointer[hasync.Node]
	deferSync bool

	// sysClock: cfg.Clock is SystemClock, so a packet's read time (on
	// Go's monotonic clock, CLOCK_MONOTONIC) is conntrack's time for it.
	sysClock bool

	life lifecycle // what Config.Notify was told; under reloadMu
	live liveness  // Alive's memory
}

type loadInfo struct {
	File   string
	Rules  int
	Loaded time.Time
}

// worker is the per-queue scratch state of the packet path. Only the
// queue's reader goroutine touches it.
type worker struct {
	pkt   packet.Packet
	reply [reject.MaxLen]byte // answers to `block return` (reject.go)
	n     uint32              // packets handled, for sampling the decision time
	done  atomic.Uint64       // packets decided, for the watchdog (Alive)
	_     [64]byte            // keep workers' hot fields on separate cache lines
}

// latencySample: one packet in latencySample has its decision timed for
// statewall_decision_seconds. Two clock reads per packet cost about as
// much as a stateless decision (the vDSO clock was 2% of the daemon's CPU
// under a flood, the decision 5%).
const latencySample = 16

// New parses the ruleset and prepares the engines; nothing is installed
// yet.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, log: log}
	rs, tabs, err := d.parseRules()
	if err != nil && cfg.OnBadRules == Block {
		d.log.Error("rules file rejected: BLOCKING ALL TRAFFIC until a reload brings a good file", "err", err)
		d.life.badRules = err
		rs, err = d.fallback()
	}
	if err != nil {
		return nil, err
	}
	d.limit, d.timeouts, d.raw, d.tables = rs.LimitStates, rs.Timeouts, rs, tabs
	d.srcLimit, d.srcTrack = rs.LimitSrcNodes, rs.SrcTrack
	if d.limit <= 0 {
		d.limit = conntrack.DefaultLimit
	}
	// The kernel verifies transport checksums only for packets arriving
	// from the wire whose checksum the NIC did not check; by the time a
	// packet reaches NFQUEUE its checksum may be legitimately partial
	// (offload on the output path, veth, GSO). So the daemon leaves
	// checksums to the kernel.
	d.stateful = engine.NewStatefulTable(rs, conntrack.Config{
		Timeouts:   rs.Timeouts,
		Limit:      rs.LimitStates,
		NoChecksum: true,
	})
	d.table = d.stateful.CT
	d.stateless = engine.NewStateless(rs)
	d.loaded.Store(&loadInfo{File: cfg.RulesFile, Rules: len(rs.Rules), Loaded: cfg.Clock.Wall()})
	d.workers = make([]worker, int(cfg.Queues[1]-cfg.Queues[0])+1)
	d.m = newMetrics(d)
	_, d.sysClock = cfg.Clock.(SystemClock)
	return d, nil
}

// Reload reads the rules file again and swaps the new ruleset in
// atomically. A file that does not parse is rejected with its error and the
// old ruleset keeps running. Connection state is kept; the table's size and
// timeouts stay those of the first ruleset. It returns the new ruleset's
// warnings (rules that can never match here), which do not stop it.
func (d *Daemon) Reload() ([]rules.Warning, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.reloading() {
		defer d.reloaded()
	}
	rs, tabs, err := d.parseRules()
	if err != nil {
		d.m.reloads.WithLabelValues("error").Inc()
		d.log.Error("reload rejected, old ruleset still enforced", "err", err)
		d.life.reloadErr = err
		return nil, err
	}
	if what := fixedSettings(rs, d); what != "" {
		if d.life.badRules == nil {
			// Not applied silently: the table's size and timeouts are
			// fixed at its start, and a reload that seemed to change them
			// would leave the operator believing they had.
			err := fmt.Errorf("%s changes %s, which take effect only when statewall starts (the connection table keeps its size and timeouts): restart it to apply them, or put the old values back to reload the rest", d.cfg.RulesFile, what)
			d.m.reloads.WithLabelValues("error").Inc()
			d.log.Error("reload rejected, old ruleset still enforced", "err", err)
			d.life.reloadErr = err
			return nil, err
		}
		d.log.Warn("reload after a start with a bad rules file: "+what+" take effect at the next start", "file", d.cfg.RulesFile)
	}
	d.life.badRules, d.life.reloadErr = nil, nil
	ws := d.lint(rs)
	d.raw, d.tables = rs, tabs
	d.bindLocked()
	if o := d.off.Load(); o != nil {
		o.request(true) // hand offloaded connections back: the new rules decide which go again
	}
	d.loaded.Store(&loadInfo{File: d.cfg.RulesFile, Rules: len(rs.Rules), Loaded: d.cfg.Clock.Wall()})
	d.m.reloads.WithLabelValues("ok").Inc()
	d.log.Info("ruleset reloaded", "file", d.cfg.RulesFile, "rules", len(rs.Rules))
	return ws, nil
}

// fixedSettings names the settings of rs that differ from those the
// daemon started with and that a reload cannot change: "" when none.
func fixedSettings(rs *rules.Ruleset, d *Daemon) string {
	var what []string
	if rs.LimitStates != d.limit {
		what = append(what, fmt.Sprintf("set limit states (%d, running %d)", rs.LimitStates, d.limit))
	}
	if rs.LimitSrcNodes != d.srcLimit {
		what = append(what, fmt.Sprintf("set limit src-nodes (%d, running %d)", rs.LimitSrcNodes, d.srcLimit))
	}
	if rs.Timeouts != d.timeouts || rs.SrcTrack != d.srcTrack {
		what = append(what, "set timeout")
	}
	return strings.Join(what, " and ")
}

// lint logs and returns rs's warnings for the daemon's hooks and the
// interfaces it knows. Precondition: reloadMu is held.
func (d *Daemon) lint(rs *rules.Ruleset) []rules.Warning {
	ws := rs.Lint(LintConfig(d.cfg.Hooks, d.ifaces))
	for _, w := range ws {
		d.log.Warn("rules: "+w.Msg, "at", fmt.Sprintf("%s:%d:%d", w.File, w.Line, w.Col))
	}
	return ws
}

// bindLocked binds the parsed ruleset to the host's interfaces as they
// are now and swaps it into both engines. Precondition: reloadMu is held.
func (d *Daemon) bindLocked() {
	rs := d.raw
	if d.ifaces != nil {
		rs = rs.Bind(d.ifaces)
	}
	d.countRules(rs) // before the engines: see rulecounters.go
	d.stateless.SetRules(rs)
	d.stateful.SetRules(rs)
}

// watchLinks follows the host's interfaces (in the daemon's namespace):
// each change binds the ruleset again, so `on NAME` and antispoof follow
// renames, re-creations and address changes. The first binding is made
// before it returns, so before the first packet is queued.
func (d *Daemon) watchLinks() (*links.Watcher, error) {
	first := true
	return links.Start(context.Background(), links.Config{NetnsName: d.cfg.Netns}, func(s links.Snapshot) {
		ifs := ifacesOf(s)
		d.reloadMu.Lock()
		defer d.reloadMu.Unlock()
		d.ifaces = ifs
		d.bindLocked()
		if first {
			first = false
			d.lint(d.raw)
			return
		}
		d.log.Info("interfaces changed: rules bound again", "interfaces", ifaceNames(ifs))
	})
}

func ifacesOf(s links.Snapshot) []rules.Iface {
	ls := s.Links()
	ifs := make([]rules.Iface, 0, len(ls))
	for _, l := range ls {
		ifs = append(ifs, rules.Iface{Index: uint32(l.Index), Name: l.Name, Addrs: l.Addrs})
	}
	return ifs
}

func ifaceNames(ifs []rules.Iface) string {
	var b strings.Builder
	for i, f := range ifs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.Name)
	}
	return b.String()
}

// StopForRestart makes the next stop (cancelling Run's context) leave the
// divert rules in place: until the next statewall binds the queues, the
// kernel drops diverted packets (or passes them, with FailOpen) instead of
// passing them unseen. A TCP peer then retransmits what was dropped, so a
// connection restored from the state file finds its windows where it left
// them. The next start replaces the rules in one transaction. Call it
// before cancelling.
func (d *Daemon) StopForRestart() { d.keepDivert.Store(true) }

// Run installs the divert rules, reads the queues and enforces verdicts
// until ctx is done, then removes the divert rules and gives every packet
// still queued its verdict. Leftovers of a crashed earlier run (same tag)
// are replaced by Install in the same transaction that installs the new
// rules, so a restart leaves no moment in which packets go undiverted.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = d.cfg.Clock.Wall()

	// A state file in a directory others could write is a configuration
	// error, refused before anything is installed (as the control
	// socket's is): whoever writes there decides what passes after the
	// next start.
	if d.cfg.StateFile != "" {
		sd, err := openStateDir(d.cfg.StateFile)
		if err != nil {
			return fmt.Errorf("state file: %w", err)
		}
		sd.close()
	}

	// The control socket first: it is also the guard against a second
	// daemon on the same socket, which must be refused before it touches
	// the first one's divert rules.
	if d.cfg.ControlSocket == DefaultControlSocket {
		// Made as root, so it passes listenControl's check; a failure
		// shows there.
		os.Mkdir(filepath.Dir(DefaultControlSocket), 0o755)
	}
	ctl, err := listenControl(d.cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	defer stopCtl()
	go d.serveControl(ctlCtx, ctl)

	if d.cfg.MetricsAddr != "" {
		ln, err := listenTCP(d.cfg.Netns, d.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		srv := d.m.newServer()
		go srv.Serve(ln)
		defer srv.Close()
		d.log.Info("metrics", "addr", ln.Addr().String())
	}

	// Before any packet: the table must hold the saved connections when
	// the first of their packets is decided, and the rules must know the
	// interfaces.
	d.afterLoad(d.loadState())
	lw, err := d.watchLinks()
	if err != nil {
		return errors.Join(fmt.Errorf("watching the interfaces: %w", err), d.saveState())
	}
	defer lw.Close()
	plog, err := pflog.New(pflog.Config{Path: d.cfg.LogFile})
	if err != nil {
		return errors.Join(fmt.Errorf("packet log: %w", err), d.saveState())
	}
	d.plog = plog
	d.plogReady.Store(plog)
	defer plog.Close()
	rej, err := reject.Open(reject.Config{NetnsName: d.cfg.Netns, Mark: replyMark})
	if err != nil {
		return errors.Join(fmt.Errorf("opening the sockets for block return: %w", err), d.saveState())
	}
	d.rej = rej
	d.rejReady.Store(rej)
	defer rej.Close()

	// State sync before the queues: a peer's bulk may fill the table
	// before the first packet; it stops after they are drained.
	if d.cfg.Sync != nil {
		stopSync, err := d.startSync()
		if err != nil {
			return errors.Join(fmt.Errorf("state sync: %w", err), d.saveState())
		}
		defer stopSync()
		d.deferSync = d.cfg.Sync.Defer > 0 && d.cfg.Mode != Stateless
	}

	// Bind the queues before diverting, so that no packet waits on a queue
	// nobody reads. The reader runs on a context of its own, not ctx: at
	// shutdown the divert rules go first and the reader drains after, so
	// that no packet meets a queue that no longer takes packets (dropped
	// without FailOpen) while the rules still divert.
	reader, err := nfq.Open(nfq.QueueConfig{
		Queues:    d.cfg.Queues,
		FailOpen:  d.cfg.FailOpen,
		NetnsName: d.cfg.Netns,
		CopyRange: d.cfg.CopyRange,
		Spin:      d.cfg.Spin,
		Spread:    d.cfg.Spread,
	}, d.handle, d.log)
	if err != nil {
		return errors.Join(fmt.Errorf("opening queues: %w", err), d.saveState())
	}
	d.reader.Store(reader)
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	runErr := make(chan error, 1)
	go func() { runErr <- reader.Run(readCtx) }()

	tag := d.cfg.Tag
	if tag == "" {
		tag = "STATEWALL"
	}
	defrag := true
	if rule, err := nfq.EnableDefrag(d.cfg.Netns, tag); err != nil {
		defrag = false
		d.log.Warn("cannot switch on the kernel's defragmentation: fragments reach the engines one by one, and stateful mode drops them", "err", err)
	} else {
		d.log.Debug("kernel defragmentation on", "table", "inet "+nfq.DefragTable(tag), "rule", rule)
		d.kernelDefrag.Store(true)
	}
	undoDefrag := func() {
		if !defrag {
			return
		}
		if err := nfq.DisableDefrag(d.cfg.Netns, tag); err != nil {
			d.log.Error("removing the defragmentation table", "err", err)
		}
	}

	offloadMark := d.startOffload()
	defer d.stopOffload()
	divert, err := nfq.Install(nfq.DivertConfig{
		SkipMark:  replyMark,
		Hooks:     d.cfg.Hooks,
		Queues:    d.cfg.Queues,
		FailOpen:  d.cfg.FailOpen,
		Loopback:  d.cfg.Loopback,
		Backend:   d.cfg.Backend,
		Tag:       d.cfg.Tag,
		NetnsName: d.cfg.Netns,
		Spread:    d.cfg.Spread,

		OffloadMark: offloadMark,
	})
	if err == nil && offloadMark != 0 && divert.Config().OffloadMark == 0 {
		d.log.Warn("offload off: the kernel lacks the connmark match or the CONNMARK or MARK target")
		d.stopOffload()
	}
	if err == nil && d.cfg.Queues[1] > d.cfg.Queues[0] && divert.Config().Spread != d.cfg.Spread {
		d.log.Warn("the kernel cannot spread the queues by flow (no HMARK target): spreading by address, all flows between two hosts on one queue",
			"spread", divert.Config().Spread.String())
	}
	if err != nil {
		reader.Close()
		<-runErr
		undoDefrag()
		// Keep what was loaded for the next attempt.
		return errors.Join(fmt.Errorf("installing divert rules: %w", err), d.saveState())
	}
	d.log.Info("statewall running", "mode", d.cfg.Mode.String(), "rules", d.cfg.RulesFile,
		"hooks", hookNames(d.cfg.Hooks), "queues", fmt.Sprintf("%d-%d", d.cfg.Queues[0], d.cfg.Queues[1]),
		"fail_open", d.cfg.FailOpen, "netns", d.cfg.Netns)
	d.reloadMu.Lock()
	d.setState(Ready)
	d.reloadMu.Unlock()

	// Periodic saves, stopped (and waited for) before the final one.
	saveCtx, stopSaving := context.WithCancel(context.Background())
	saveDone := make(chan struct{})
	go func() { d.saveEvery(saveCtx, d.cfg.StateSaveEvery); close(saveDone) }()

	var err2 error
	select {
	case <-ctx.Done():
	case err2 = <-runErr:
		runErr = nil
	}
	d.reloadMu.Lock()
	d.setState(Stopping)
	d.reloadMu.Unlock()
	// Stop diverting first, then drain: packets already queued still get
	// their verdicts from the engines. For a restart the rules stay, and
	// what arrives meanwhile waits for nobody: dropped, or passed with
	// fail-open.
	restart := d.keepDivert.Load()
	if restart {
		d.log.Info("stopping for a restart: divert rules kept", "fail_open", d.cfg.FailOpen)
	} else if err := divert.Remove(); err != nil {
		d.log.Error("removing divert rules", "err", err)
		err2 = errors.Join(err2, err)
	}
	stopReading()
	if err := reader.Close(); err != nil && !errors.Is(err, nfq.ErrClosed) {
		d.log.Error("closing queues", "err", err)
	}
	if runErr != nil {
		if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, nfq.ErrClosed) {
			err2 = errors.Join(err2, err)
		}
	}
	if !restart {
		undoDefrag()
	}
	stopSaving()
	<-saveDone
	// No packet reaches the engines any more: the table is final.
	if err := d.saveState(); err != nil {
		err2 = errors.Join(err2, err)
	}
	d.log.Info("statewall stopped")
	return err2
}

func hookNames(hs []nfq.Hook) []string {
	var s []string
	for _, h := range hs {
		s = append(s, h.String())
	}
	return s
}

// now is conntrack's time for everything but the packet path: cfg.Clock's
// monotonic clock, never the wall clock (see Clock).
func (d *Daemon) now() int64 { return d.cfg.Clock.Monotonic() }

// nowFor is conntrack's time for a packet: the time its queue read it
// (one clock read per read of up to 16 packets, by the reader), on the
// system's monotonic clock; an injected clock is read itself. There is no
// ticker: a daemon with nothing queued reads no clock at all.
func (d *Daemon) nowFor(p *nfq.Packet) int64 {
	if d.sysClock && !p.Read.IsZero() {
		return monotonicAt(p.Read)
	}
	return d.cfg.Clock.Monotonic()
}

// handle is the packet path. It runs on the reader goroutine of p's queue.
func (d *Daemon) handle(p *nfq.Packet) nfq.Verdict {
	qi := int(p.Queue) - int(d.cfg.Queues[0])
	if qi < 0 || qi >= len(d.workers) {
		qi = 0 // not ours; decide it anyway rather than leave it hanging
	}
	w := &d.workers[qi]
	w.n++
	timed := w.n%latencySample == 0
	var start time.Time
	if timed {
		start = time.Now()
	}
	pk := &w.pkt
	if d.kernelDefrag.Load() {
		// A fragment that reaches the queue is one the kernel's
		// defragmentation passed on unreassembled: conntrack sees an
		// IPv6 first fragment of it as a whole packet.
		pk.DecodeUnreassembled(p.Payload, packet.LinkIP)
	} else {
		pk.Decode(p.Payload, packet.LinkIP)
	}
	if pk.Kind != packet.KindOK {
		d.m.decodeErrors.Inc()
	}
	at := where(p)
	var dec engine.Decision
	switch d.cfg.Mode {
	case Stateless:
		d.stateless.DecideAt(&dec, pk, at)
	case Stateful:
		d.stateful.DecideAt(&dec, pk, at, d.nowFor(p))
	case Shadow:
		d.stateful.DecideAt(&dec, pk, at, d.nowFor(p))
		var shadow engine.Decision
		d.stateless.DecideAt(&shadow, pk, at)
		if a := engine.Compare(shadow, dec); a != engine.Agree {
			d.disagree(a, shadow, dec, pk)
		}
	}
	if o := d.off.Load(); o != nil && dec.Verdict == engine.Pass && dec.Cause == engine.CauseState {
		o.consider(p, pk, &dec, at, d.nowFor(p))
	}
	d.m.count(dec, int(p.Length))
	d.countDecision(qi, &dec, at.Dir, int(p.Length))
	if dec.Verdict == engine.Block && dec.Rule != nil && dec.Rule.Return != rules.ReturnNone {
		d.reply(w, &dec, pk, p)
	}
	if d.plog != nil && (dec.Rule != nil && dec.Rule.Log || dec.Other != nil && dec.Other.Log || dec.CT.Mark != 0) {
		d.logDecision(&dec, p, at)
	}
	if timed {
		d.m.latency.Observe(time.Since(start).Seconds())
	}
	w.done.Add(1)
	if dec.Verdict == engine.Pass {
		if d.deferSync && firstOfConnection(&dec) {
			return d.deferFirst(p, conntrack.KeyOf(pk))
		}
		return nfq.Accept
	}
	return nfq.Drop
}

// disagree counts a shadow-mode disagreement and logs it, at most once per
// DisagreementLogEvery for each kind, with what the two engines said.
func (d *Daemon) disagree(a engine.Agreement, stateless, stateful engine.Decision, p *packet.Packet) {
	d.m.disagreement(a, stateful)
	k := 0
	if a == engine.OnlyStatelessPasses {
		k = 1
	}
	now := d.now()
	last := d.lastLog[k].Load()
	if now-last < int64(d.cfg.DisagreementLogEvery) || !d.lastLog[k].CompareAndSwap(last, now) {
		return
	}
	d.log.Warn("shadow disagreement", "kind", a.String(), "cause", engine.Explain(stateless, stateful),
		"src", p.Src.String(), "dst", p.Dst.String(), "proto", p.Proto,
		"sport", p.SrcPort, "dport", p.DstPort, "flags", packet.TCPFlagsString(p.TCPFlags))
}
