package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/statewall/statewall/pkg/daemon"
	"github.com/statewall/statewall/pkg/nfq"
)

func runRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "--rules FILE [flags]", `Run the firewall: divert traffic to NFQUEUE with iptables rules of statewall's
own (installed at start, removed at stop; leftovers of a crashed run are
removed first), decide every packet, enforce the verdicts. Needs root.

Signals: SIGHUP reloads the rules file (a file with errors is rejected and
the old ruleset keeps running; connection state is kept); SIGINT and SIGTERM
stop cleanly and remove the divert rules; SIGUSR2 stops for a restart: the
divert rules stay, so until the next statewall runs the kernel drops (or,
with --fail-open, passes) what would have been diverted, and with
--state-file connections resume without losing their window state.
'statewall status', 'statewall conntrack' and 'statewall reload' talk to the
running daemon over its control socket.

Modes:
  stateful   enforce the stateful engine's verdicts (default)
  stateless  enforce the stateless engine's verdicts
  shadow     enforce stateful, compute stateless for every packet too and
             count and log (rate-limited) where they differ

--fail-open: when statewall is not reading (crashed, restarting) or a queue
is full, the kernel passes packets instead of dropping them. Traffic keeps
flowing, unfiltered: choose it only where availability matters more than
the filter.

--on-bad-rules: a rules file that does not parse at start is refused
(exit 1, nothing installed: the host stays open, or as a run stopped for a
restart left it) or, with block, enforced as "block all" (the host is
closed, connections restored from --state-file excepted) until a reload
brings a good file.

State sync (--sync-*): two statewall routers that keepalived (or any
failover) moves addresses between send each other their connection tables
over TLS 1.3 with mutual certificates ('statewall ha keygen' makes a CA
and a certificate per node), so that the one that takes over carries every
connection on. Each node listens for its peers' changes (--sync-listen) and
sends its own to every --sync-peer; a peer that (re)connects first gets the
whole table. With two active routers and asymmetric paths, --sync-defer
holds a connection's first packet until the peers have its entry. See the
README's "Running a pair".

Under systemd (Type=notify) statewall reports READY=1 once the divert
rules and the ruleset are in place, RELOADING=1 and READY=1 around a
reload, STOPPING=1, and a STATUS= line; with WatchdogSec= it sends
WATCHDOG=1 while its queues are read; on the journal, each log line has its
priority.`, stdout)
	rulesFile := fs.String("rules", "", "the ruleset `FILE` (required)")
	modeFlag := fs.String("mode", "stateful", "`MODE`: stateful, stateless or shadow")
	hooks := fs.String("hooks", "input,output,forward", "netfilter `HOOKS` to divert, comma-separated")
	queues := fs.String("queues", "0", "NFQUEUE `RANGE` to use: N or FIRST-LAST (several queues: one reader each, spread as --spread says)")
	offload := fs.Bool("offload", false, "hand established connections to the kernel: once statewall passed a packet of an assured TCP connection (or UDP stream), its later packets bypass the queues, marked in the kernel's conntrack (connmark bit --offload-mark), until the kernel ends it; statewall's table follows the kernel's conntrack events. Faster; statewall then does not see, count or log those packets (not for 'log (all)' rules)")
	offloadMark := fs.Uint("offload-mark", 0x1000, "with --offload, the connmark `BIT` of offloaded connections (one of 0x40-0x8000, not used by anything else on the host)")
	spread := fs.String("spread", "flow", "how several queues share packets, `HOW`: flow (a symmetric hash of addresses, ports and protocol: both directions of a flow on one queue; needs the kernel's HMARK target, else addr), addr (--queue-balance: by addresses only) or cpu (--queue-cpu-fanout: the queue of the CPU that handles the packet)")
	failOpen := fs.Bool("fail-open", false, "pass packets when statewall is not reading or a queue is full (default: drop)")
	loopback := fs.Bool("loopback", false, "divert traffic on lo too")
	netnsName := fs.String("netns", "", "run inside the network namespace `NAME` (ip netns)")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on `ADDR` (host:port), path /metrics")
	socket := fs.String("socket", daemon.DefaultControlSocket, "control socket `PATH`")
	backend := fs.String("backend", "", "force iptables `BACKEND`: iptables-nft or iptables-legacy (default: detect)")
	copyRange := fs.Uint("copy-range", daemon.DefaultCopyRange, "bytes of each packet the kernel copies to statewall (the headers are enough; at least 128, at most 65535)")
	spin := fs.Duration("spin", nfq.DefaultSpin, "after sparse traffic, how long a reader polls its empty queue (yielding the CPU) before it sleeps: less latency, up to this much CPU per sparse burst, a core's worth at ~50k sparse bursts/s (0: never)")
	tag := fs.String("tag", "", "chain name `PREFIX` of the divert rules (default STATEWALL)")
	stateFile := fs.String("state-file", defaultStateFile(), "keep the connection table across restarts in `PATH`: saved at a clean stop (SIGTERM, SIGINT), loaded and removed at start; a corrupt or foreign file is renamed PATH.bad and statewall starts with an empty table")
	saveEvery := fs.Duration("state-save-interval", 30*time.Second, "with --state-file, also save the table this often while running, so that a crash loses at most this much (0: only at a stop)")
	pickup := fs.Duration("pickup-grace", time.Minute, "after a start that restored a table, pick up TCP connections the table does not know mid-stream for this long (connections made after the last save; 0: never)")
	logFile := fs.String("log-file", daemon.DefaultLogFile, "write packets decided by 'log' rules to `FILE`, a PFLOG capture (tcpdump -n -e -r FILE), rotated at 16 MiB keeping 4 (\"\": no file; 'statewall log' still shows them)")
	logLines := fs.Bool("log-lines", false, "also write a line per logged packet to the daemon's log (at most 10 a second)")
	logLevel := fs.String("log-level", "info", "`LEVEL`: debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	syncName := fs.String("sync-name", "", "state sync: this node's `NAME`, the CN of its --sync-cert (default: the certificate's)")
	syncListen := fs.String("sync-listen", "", "state sync: take peers' connection tables on `ADDR` (host:port, TLS 1.3 with mutual certificates)")
	var syncPeers listFlag
	fs.Var(&syncPeers, "sync-peer", "state sync: send this node's connection table to the peer at `ADDR` (host:port); repeat for more peers")
	syncCert := fs.String("sync-cert", "", "state sync: this node's certificate `FILE` (PEM), signed by --sync-ca ('statewall ha keygen' makes a set)")
	syncKey := fs.String("sync-key", "", "state sync: the private key `FILE` of --sync-cert (PEM)")
	syncCA := fs.String("sync-ca", "", "state sync: the CA certificate `FILE` (PEM) that signs every node's certificate: only its nodes are peers")
	syncDefer := fs.Duration("sync-defer", 0, "state sync: hold a new connection's first packet until every connected peer has its entry, at most this long (pfsync's defer, for two active routers and asymmetric paths; 0: never)")
	onBadRules := fs.String("on-bad-rules", "refuse", "`WHAT`: refuse or block: when the rules file does not parse at start, refuse exits 1 and installs nothing; block starts and blocks every packet until a reload brings a good file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *rulesFile == "" {
		return usagef("--rules FILE is required")
	}
	mode, err := daemon.ParseMode(*modeFlag)
	if err != nil {
		return usagef("%v", err)
	}
	hs, err := nfq.ParseHooks(*hooks)
	if err != nil {
		return usagef("%v", err)
	}
	qs, err := parseQueues(*queues)
	if err != nil {
		return usagef("--queues: %v", err)
	}
	sp, err := nfq.ParseSpread(*spread)
	if err != nil {
		return usagef("--spread: %v", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log-level: %v", err)
	}
	onBad, err := daemon.ParseBadRules(*onBadRules)
	if err != nil {
		return usagef("--on-bad-rules: %v", err)
	}
	syncCfg, err := syncConfig(*syncName, *syncListen, syncPeers, *syncCert, *syncKey, *syncCA, *syncDefer)
	if err != nil {
		return usagef("%v", err)
	}
	log := newLogger(stderr, level, *logJSON)
	sd, notify := notifier(log)
	if os.Geteuid() != 0 {
		return errors.New("run needs root (iptables, NFQUEUE)")
	}
	d, err := daemon.New(daemon.Config{
		RulesFile: *rulesFile, Mode: mode, Hooks: hs, Queues: qs, Spread: sp, FailOpen: *failOpen,
		Offload: *offload, OffloadMark: uint32(*offloadMark),
		Loopback: *loopback, Netns: *netnsName, MetricsAddr: *metrics, ControlSocket: *socket,
		Backend: *backend, Tag: *tag, CopyRange: uint32(min(*copyRange, 0xffff)), StateFile: *stateFile,
		Spin: spinOf(*spin), LogFile: *logFile, LogLines: *logLines,
		OnBadRules: onBad, Notify: notify,
		StateSaveEvery: *saveEvery, PickupGrace: *pickup, Sync: syncCfg,
	}, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.Reload() // logs its own result and warnings
			case <-usr2:
				d.StopForRestart()
				stop()
				return
			}
		}
	}()
	go watchdog(ctx, sd, d, log)
	return d.Run(ctx)
}

// defaultStateFile is --state-file's default: conntrack.state in the
// directory systemd gives the unit (StateDirectory=, $STATE_DIRECTORY),
// so that restarts under the shipped unit keep connections; none
// otherwise.
func defaultStateFile() string {
	dir := os.Getenv("STATE_DIRECTORY")
	if i := strings.IndexByte(dir, ':'); i >= 0 {
		dir = dir[:i] // several directories: the first
	}
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "conntrack.state")
}

func parseQueues(s string) ([2]uint16, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		hi = lo
	}
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return [2]uint16{}, fmt.Errorf("bad queue number %q", lo)
	}
	b, err := strconv.ParseUint(hi, 10, 16)
	if err != nil {
		return [2]uint16{}, fmt.Errorf("bad queue number %q", hi)
	}
	if a > b {
		return [2]uint16{}, fmt.Errorf("range %s is reversed", s)
	}
	return [2]uint16{uint16(a), uint16(b)}, nil
}

// spinOf maps --spin to daemon.Config.Spin, whose zero means the default:
// --spin 0 means never, a negative Spin.
func spinOf(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// listFlag is a flag that may be repeated, or given comma-separated
// values: every value, in order.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*l = append(*l, x)
		}
	}
	return nil
}

// syncConfig checks the --sync-* flags: none (no sync), or a listen
// address or peers, with the three files of the node's identity.
func syncConfig(name, listen string, peers []string, cert, key, ca string, deferral time.Duration) (*daemon.SyncConfig, error) {
	if name == "" && listen == "" && len(peers) == 0 && cert == "" && key == "" && ca == "" && deferral == 0 {
		return nil, nil
	}
	if listen == "" && len(peers) == 0 {
		return nil, errors.New("state sync needs --sync-listen, --sync-peer or both")
	}
	if cert == "" || key == "" || ca == "" {
		return nil, errors.New("state sync needs --sync-cert, --sync-key and --sync-ca (statewall ha keygen makes them)")
	}
	if deferral < 0 || deferral > time.Second {
		return nil, fmt.Errorf("--sync-defer %v: want 0 (off) to 1s (pfsync holds for 20ms)", deferral)
	}
	if deferral > 0 && len(peers) == 0 {
		return nil, errors.New("--sync-defer needs a --sync-peer: deferral waits for a peer this node sends to")
	}
	for _, a := range append([]string{listen}, peers...) {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("state sync address %q: %v (want host:port)", a, err)
		}
	}
	return &daemon.SyncConfig{Name: name, Listen: listen, Peers: peers, CertFile: cert, KeyFile: key, CAFile: ca, Defer: deferral}, nil
}
