//go:build linux

package nfq

import (
	"context"
	"errors"
	"fmt"
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
// with the same Tag left behind, both in one transaction per family. Both
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

// readStates reads what both families' filter tables hold of ours. An
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
	dump, err := r.run("", tool(backend, v6, "save"), "-t", "filter")
	if err != nil {
		return saved{}, err
	}
	return parseSave(dump, tag)
}

// installFamily replaces s, what the family's table held of ours, by what
// cfg asks for. If the transaction fails (the table may have changed since
// it was read), it is tried once more on a fresh reading.
func installFamily(r runner, cfg DivertConfig, v6 bool, s saved) error {
	_, err := r.run(installScript(cfg, s), tool(cfg.Backend, v6, "restore"), "--noflush", lockWait)
	if err == nil {
		return nil
	}
	if s, err = readState(r, cfg.Tag, cfg.Backend, v6); err != nil {
		return err
	}
	_, err = r.run(installScript(cfg, s), tool(cfg.Backend, v6, "restore"), "--noflush", lockWait)
	return err
}

// removeFamily removes our jumps and chains, s, from one family's table;
// with s empty it reads the table first. A failed transaction is tried once
// more on a fresh reading.
func removeFamily(r runner, tag, backend string, v6 bool, s saved) error {
	var err error
	if s.empty() {
		if s, err = readState(r, tag, backend, v6); err != nil {
			return err
		}
	}
	for try := 0; ; try++ {
		script := removeScript(s)
		if script == "" {
			return nil
		}
		_, err = r.run(script, tool(backend, v6, "restore"), "--noflush", lockWait)
		if err == nil || try == 1 {
			return err
		}
		if s, err = readState(r, tag, backend, v6); err != nil {
			return err
		}
	}
}

// Remove deletes the jumps, then the chains, one transaction per family,
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
