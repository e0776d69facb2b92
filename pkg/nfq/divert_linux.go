//go:build linux

package nfq

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/statewall/statewall/internal/command"
)

// cmdTimeout bounds every iptables command; restore also waits at most
// lockWait for the xtables lock (legacy backend) before giving up.
const (
	cmdTimeout = 30 * time.Second
	lockWait   = "--wait=10"
)

// runner runs commands, inside a named network namespace if netns is set.
type runner struct{ netns string }

// run returns the command's standard output, or an error that names the
// command and carries what it printed.
func (r runner) run(stdin, name string, args ...string) (string, error) {
	c := command.Cmd{Netns: r.netns, Stdin: stdin, Timeout: cmdTimeout}
	out, err := command.Run(context.Background(), c, name, args...)
	if err != nil {
		return "", fmt.Errorf("nfq: %w", err)
	}
	return out, nil
}

// Divert is a set of installed divert rules. It is safe for concurrent use.
type Divert struct {
	cfg     DivertConfig
	mu      sync.Mutex
	removed bool
}

// Config returns the configuration the rules were installed with, defaults
// filled in and the backend resolved.
func (d *Divert) Config() DivertConfig {
	c := d.cfg
	c.Hooks = append([]Hook(nil), d.cfg.Hooks...)
	return c
}

// Install diverts packets as cfg says, after removing what an earlier run
// with the same Tag left behind, in the same transaction per table (see
// doc.go, "Diversion"). Both
// families are read and checked before either is changed; if the second
// transaction fails, the first is rolled back. Leftovers in a family cfg
// does not ask for are removed too, on a best-effort basis.
func Install(cfg DivertConfig) (*Divert, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	r := runner{cfg.NetnsName}
	if cfg.Backend == "" {
		if cfg.Backend, err = detectBackend(r, cfg.Tag); err != nil {
			return nil, err
		}
	}
	if n := int(cfg.Queues[1]) - int(cfg.Queues[0]) + 1; n > 1 && n <= MaxFlowQueues && cfg.Spread == SpreadFlow {
		if !probe(r, cfg, true, false) {
			cfg.Spread = SpreadAddr
		}
		if cfg.seed == 0 { // a test may have fixed it (SetFlowSeed)
			var seed [4]byte
			rand.Read(seed[:])
			cfg.seed = binary.LittleEndian.Uint32(seed[:])
		}
	}
	if cfg.OffloadMark != 0 && !probe(r, cfg, false, true) {
		cfg.OffloadMark = 0
	}
	states, err := readStates(r, cfg, true)
	if err != nil {
		return nil, err
	}
	var done []bool
	for _, v6 := range []bool{false, true} {
		s, ok := states[v6]
		if !ok {
			continue
		}
		if !wanted(cfg, v6) {
			if !s.empty() {
				removeFamily(r, cfg.Tag, cfg.Backend, v6, s) // best effort
			}
			continue
		}
		if err := installFamily(r, cfg, v6, s); err != nil {
			for _, v6 := range done {
				if rerr := removeFamily(r, cfg.Tag, cfg.Backend, v6, saved{}); rerr != nil {
					err = errors.Join(err, fmt.Errorf("nfq: rolling back: %w", rerr))
				}
			}
			return nil, err
		}
		done = append(done, v6)
	}
	return &Divert{cfg: cfg}, nil
}

func wanted(cfg DivertConfig, v6 bool) bool {
	if v6 {
		return cfg.IPv6
	}
	return cfg.IPv4
}

// readStates reads what both families' tables hold of ours. An
// error in a family cfg asks for is returned; the other family is left out
// of the result on error, or always unless all is set.
func readStates(r runner, cfg DivertConfig, all bool) (map[bool]saved, error) {
	states := map[bool]saved{}
	var errs []error
	for _, v6 := range []bool{false, true} {
		if !all && !wanted(cfg, v6) {
			continue
		}
		s, err := readState(r, cfg.Tag, cfg.Backend, v6)
		switch {
		case err == nil:
			states[v6] = s
		case wanted(cfg, v6):
			errs = append(errs, err)
		}
	}
	return states, errors.Join(errs...)
}

func readState(r runner, tag, backend string, v6 bool) (saved, error) {
	dump, err := r.run("", tool(backend, v6, "save"))
	if err != nil {
		return saved{}, err
	}
	return parseSave(dump, tag)
}

// installFamily replaces s, what the family's tables held of ours, by what
// cfg asks for. If the script fails (a table may have changed since it was
// read), it is tried once more on a fresh reading: each table's
// transaction replaces whatever of ours it finds, so a script that failed
// halfway is simply completed.
func installFamily(r runner, cfg DivertConfig, v6 bool, s saved) error {
	_, err := r.run(installScript(cfg, s), tool(cfg.Backend, v6, "restore"), "--noflush", lockWait)
	if err != nil {
		if s, err = readState(r, cfg.Tag, cfg.Backend, v6); err != nil {
			return err
		}
		if _, err = r.run(installScript(cfg, s), tool(cfg.Backend, v6, "restore"), "--noflush", lockWait); err != nil {
			return err
		}
	}
	var unused []string
	for table := range s {
		if !slices.ContainsFunc(cfg.Hooks, func(h Hook) bool { return h.table() == table }) {
			unused = append(unused, table)
		}
	}
	dropEmptyTables(r, cfg.Backend, v6, unused)
	return nil
}

// removeFamily removes our jumps and chains, s, from one family's tables;
// with s empty it reads the tables first. A failed script is tried once
// more on a fresh reading.
func removeFamily(r runner, tag, backend string, v6 bool, s saved) error {
	var err error
	if s.empty() {
		if s, err = readState(r, tag, backend, v6); err != nil {
			return err
		}
	}
	var touched []string
	for try := 0; ; try++ {
		for table := range s {
			if !slices.Contains(touched, table) {
				touched = append(touched, table)
			}
		}
		script := removeScript(s)
		if script == "" {
			break
		}
		_, err = r.run(script, tool(backend, v6, "restore"), "--noflush", lockWait)
		if err == nil {
			break
		}
		if try == 1 {
			return err
		}
		if s, err = readState(r, tag, backend, v6); err != nil {
			return err
		}
	}
	dropEmptyTables(r, backend, v6, touched)
	return nil
}

// dropEmptyTables deletes, on the nf_tables backend, those of tables
// (mangle and security only) that hold nothing but empty base chains
// accepting everything: iptables-nft creates a table the first time a rule
// goes into it and leaves it behind, empty, when the last rule goes, and
// on most hosts statewall's rules are the only ones in those two tables.
// Such a table changes no packet's fate, so deleting it only puts the
// listing back as it was; a table that holds anything else is left alone
// (the deletion of a chain holding a rule fails, and the whole transaction
// with it). The legacy backend cannot delete a table: its empty built-in
// chains stay (see doc.go). Best effort: errors are ignored.
func dropEmptyTables(r runner, backend string, v6 bool, tables []string) {
	if backend != BackendNFT {
		return
	}
	family := "ip"
	if v6 {
		family = "ip6"
	}
	for _, table := range tables {
		if table != tableMangle && table != tableSecurity {
			continue
		}
		list, err := r.run("", "nft", "list", "table", family, table)
		if err != nil {
			continue // not there
		}
		if chains, ok := emptyNFTTable(list); ok {
			r.run(dropTableScript(family, table, chains), "nft", "-f", "-")
		}
	}
}

// Remove deletes the jumps, then the chains, one transaction per table,
// after reading both: if either holds a rule of somebody else's that refers
// to our chains, nothing is changed. It can be called again after an error,
// and is a no-op after success.
func (d *Divert) Remove() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed {
		return nil
	}
	err := remove(runner{d.cfg.NetnsName}, d.cfg, false)
	d.removed = err == nil
	return err
}

func remove(r runner, cfg DivertConfig, all bool) error {
	states, err := readStates(r, cfg, all)
	if err != nil {
		return err
	}
	var errs []error
	for _, v6 := range []bool{false, true} {
		if s, ok := states[v6]; ok && !s.empty() {
			if err := removeFamily(r, cfg.Tag, cfg.Backend, v6, s); err != nil && wanted(cfg, v6) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes what an Install with cfg's Tag, Backend and NetnsName
// left behind (a crashed run), in both families: the jumps from the
// built-in chains that carry our comment, and our chains. Other rules are
// not touched; if one refers to our chains, nothing is changed. Errors of a
// family cfg does not ask for (both are asked for by default) are ignored.
func Cleanup(cfg DivertConfig) error {
	cfg, err := cfg.normalize()
	if err != nil {
		return err
	}
	r := runner{cfg.NetnsName}
	if cfg.Backend == "" {
		if cfg.Backend, err = detectBackend(r, cfg.Tag); err != nil {
			return err
		}
	}
	return remove(r, cfg, true)
}

// probe reports whether the kernel and the backend take the rules of
// SpreadFlow (flow) or of offload, trying them in a chain nothing jumps
// to (see probeFlowScript).
func probe(r runner, cfg DivertConfig, flow, offload bool) bool {
	_, err := r.run(probeFlowScript(cfg.Tag, flow, offload), tool(cfg.Backend, false, "restore"), "--noflush", lockWait)
	r.run(unprobeScript(cfg.Tag), tool(cfg.Backend, false, "restore"), "--noflush", lockWait) // best effort: Install removes leftovers too
	return err == nil
}

// DetectBackend returns the iptables backend that accepts an NFQUEUE rule
// here, BackendNFT or BackendLegacy, trying first the one the system's
// "iptables" command uses. The probe is real: it adds an NFQUEUE rule in a
// chain nothing jumps to (STATEWALL-PROBE) and removes it again.
func DetectBackend() (string, error) { return detectBackend(runner{}, defaultTag) }

func detectBackend(r runner, tag string) (string, error) {
	order := []string{BackendNFT, BackendLegacy}
	if out, err := r.run("", "iptables", "-V"); err == nil && strings.Contains(out, "legacy") {
		order = []string{BackendLegacy, BackendNFT}
	}
	var errs []error
	for _, b := range order {
		_, err := r.run(probeScript(tag), tool(b, false, "restore"), "--noflush", lockWait)
		if err == nil {
			_, err = r.run(unprobeScript(tag), tool(b, false, "restore"), "--noflush", lockWait)
			if err != nil {
				err = fmt.Errorf("removing the probe chain: %w", err)
			}
		}
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("nfq: no iptables backend accepts an NFQUEUE rule: %w", errors.Join(errs...))
}
