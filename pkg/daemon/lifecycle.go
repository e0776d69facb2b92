package daemon

import (
	"fmt"
	"strings"
	"sync"

	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/rules"
)

// State is a step of the daemon's life that a service manager wants to
// know of (Config.Notify): cmd/statewall turns them into systemd's
// READY=1, RELOADING=1 and STOPPING=1.
type State uint8

const (
	// Ready: the divert rules are installed and a ruleset is enforced, so
	// every diverted packet is decided. Sent once by Run, and again after
	// each reload (the ruleset in force then, new or old).
	Ready State = iota + 1
	// Reloading: a reload has begun (only after the first Ready).
	Reloading
	// Stopping: Run is stopping; no Ready follows.
	Stopping
)

func (s State) String() string {
	switch s {
	case Ready:
		return "ready"
	case Reloading:
		return "reloading"
	case Stopping:
		return "stopping"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// BadRules is what New does with a rules file that does not parse.
type BadRules uint8

const (
	// Refuse: New returns the file's error and nothing is installed.
	// Traffic flows unfiltered (open) unless divert rules of an earlier
	// run are still in place (a run stopped for a restart, or killed):
	// those stay, and with nobody reading their queues the kernel drops
	// what they divert (or passes it, if that run had FailOpen).
	Refuse BadRules = iota
	// Block: New logs the file's error and starts with FallbackRules,
	// which block every packet: the host is closed (fail-closed) and the
	// daemon stays up, so a reload with a repaired file is all it takes.
	// Connections restored from the state file keep passing (they were
	// allowed by the last good ruleset; a remote administrator keeps the
	// session that repairs the file); the connection table's size and
	// timeouts are FallbackRules' (the defaults) until the next start.
	Block
)

func (b BadRules) String() string {
	if b == Block {
		return "block"
	}
	return "refuse"
}

// ParseBadRules parses an --on-bad-rules value.
func ParseBadRules(s string) (BadRules, error) {
	switch s {
	case "refuse", "":
		return Refuse, nil
	case "block":
		return Block, nil
	}
	return 0, fmt.Errorf("unknown value %q (want refuse or block)", s)
}

// FallbackRules is the ruleset a daemon with OnBadRules Block enforces
// while its rules file does not parse.
const FallbackRules = "# statewall: the rules file did not parse; blocking everything\nset default block\nset invalid block\nblock all\n"

// fallback parses FallbackRules, standing for the rules file in status.
func (d *Daemon) fallback() (*rules.Ruleset, error) {
	return rules.Parse(d.cfg.RulesFile+" (fallback: block all)", []byte(FallbackRules))
}

// lifecycle holds what the service manager was last told. Transitions
// happen under reloadMu, so a reload's Ready never follows Stopping and
// never comes before the first Ready.
type lifecycle struct {
	ready, stopping bool
	badRules        error // the start's error when FallbackRules are enforced; nil after a good (re)load
	reloadErr       error // the last reload's error; nil after a good one
}

// setState notifies Config.Notify of s with a status line. Precondition:
// reloadMu is held.
func (d *Daemon) setState(s State) {
	switch s {
	case Ready:
		if d.life.stopping {
			return
		}
		d.life.ready = true
	case Reloading:
		if !d.life.ready || d.life.stopping {
			return
		}
	case Stopping:
		d.life.stopping = true
	}
	if d.cfg.Notify != nil {
		d.cfg.Notify(s, d.statusLine(s))
	}
}

// reloading and reloaded bracket a reload for the service manager:
// reloading reports whether it told it (the daemon is ready and not
// stopping), and then reloaded must follow. Precondition: reloadMu is
// held.
func (d *Daemon) reloading() bool {
	if !d.life.ready || d.life.stopping {
		return false
	}
	d.setState(Reloading)
	return true
}

func (d *Daemon) reloaded() { d.setState(Ready) }

// statusLine is the line `systemctl status` shows.
func (d *Daemon) statusLine(s State) string {
	if s == Stopping {
		return "stopping"
	}
	if s == Reloading {
		return "reloading " + d.cfg.RulesFile
	}
	if d.life.badRules != nil {
		return fmt.Sprintf("BLOCKING ALL TRAFFIC: %v; repair the file and reload", d.life.badRules)
	}
	li := d.loaded.Load()
	line := fmt.Sprintf("%s: %d rules from %s, hooks %s, queues %d-%d", d.cfg.Mode, li.Rules, li.File,
		strings.Join(hookNames(d.cfg.Hooks), ","), d.cfg.Queues[0], d.cfg.Queues[1])
	if d.life.reloadErr != nil {
		line += fmt.Sprintf("; last reload rejected (%v), the ruleset loaded before is enforced", d.life.reloadErr)
	}
	return line
}

// liveness is the watchdog's memory between two calls of Alive.
type liveness struct {
	mu   sync.Mutex
	prev []sample
}

type sample struct {
	handed, done uint64
	valid        bool
}

// Alive reports an error if a queue's reader has been stuck in the packet
// path since the previous call: a packet was handed to the engines before
// then and has not come back since. A reader waiting for packets is
// alive, so an idle daemon is never reported. Call it at a fixed interval
// (the watchdog's); the first call only takes the baseline.
//
// The cost on the packet path is one atomic store per packet (worker.done).
func (d *Daemon) Alive() error {
	r := d.reader.Load()
	if r == nil {
		return nil
	}
	return d.alive(r.Stats())
}

// alive is Alive on the queues' counters.
func (d *Daemon) alive(stats []nfq.Stats) error {
	d.live.mu.Lock()
	defer d.live.mu.Unlock()
	if d.live.prev == nil {
		d.live.prev = make([]sample, len(d.workers))
	}
	var err error
	// done is read before handed: a packet handed after the read of done
	// only makes handed larger, which never hides a stuck one.
	dones := make([]uint64, len(d.workers))
	for i := range d.workers {
		dones[i] = d.workers[i].done.Load()
	}
	for _, st := range stats {
		i := int(st.Queue) - int(d.cfg.Queues[0])
		if i < 0 || i >= len(d.workers) {
			continue
		}
		cur := sample{handed: st.Packets, done: dones[i], valid: true}
		p := d.live.prev[i]
		if p.valid && p.done < p.handed && cur.done == p.done && err == nil {
			err = fmt.Errorf("queue %d: the packet path has not returned for a whole watchdog interval (%d packets handed, %d decided)",
				st.Queue, cur.handed, cur.done)
		}
		d.live.prev[i] = cur
	}
	return err
}
