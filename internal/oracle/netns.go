//go:build linux

package oracle

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/statewall/statewall/internal/command"
)

// Namespaces are named sw-oracle-PID-N. A registry of the live ones lets a
// signal handler remove them before the process dies; namespaces left by a
// process that was killed outright (SIGKILL, go test's timeout) are removed
// by the next run, which deletes every sw-oracle-PID-* whose PID is gone.

var (
	nsCounter atomic.Uint64

	liveMu sync.Mutex
	live   = map[string]bool{}

	sigOnce sync.Once
	staleMu sync.Once
)

const nsPrefix = "sw-oracle-"

var nsNameRE = regexp.MustCompile(`^sw-oracle-(\d+)-\d+$`)

// run executes a command (setup and teardown helpers: ip, nft, iptables);
// the error carries what the command printed.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	_, err := command.Run(ctx, command.Cmd{Stdin: stdin}, name, args...)
	return err
}

// namespace is one named network namespace created for a capture.
type namespace struct {
	name string
}

func newNamespace(ctx context.Context) (*namespace, error) {
	removeStale()
	watchSignals()
	n := &namespace{name: fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsCounter.Add(1))}
	liveMu.Lock()
	live[n.name] = true
	liveMu.Unlock()
	if err := run(ctx, "", "ip", "netns", "add", n.name); err != nil {
		n.remove()
		return nil, err
	}
	return n, nil
}

// exec runs a command (args[0] is the program) inside the namespace.
func (n *namespace) exec(ctx context.Context, stdin string, args ...string) error {
	_, err := command.Run(ctx, command.Cmd{Netns: n.name, Stdin: stdin}, args[0], args[1:]...)
	return err
}

// remove deletes the namespace (idempotent). It does not use the caller's
// context: removal must happen even when the run was cancelled.
func (n *namespace) remove() error {
	liveMu.Lock()
	was := live[n.name]
	delete(live, n.name)
	liveMu.Unlock()
	if !was {
		return nil
	}
	return deleteNamespace(n.name)
}

func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", name)); os.IsNotExist(err) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return run(ctx, "", "ip", "netns", "del", name)
}

// Cleanup removes every namespace this process created and has not removed
// yet. Run does this itself; Cleanup is for callers that must exit abruptly.
func Cleanup() {
	liveMu.Lock()
	names := make([]string, 0, len(live))
	for n := range live {
		names = append(names, n)
	}
	clear(live)
	liveMu.Unlock()
	for _, n := range names {
		deleteNamespace(n)
	}
}

// watchSignals installs, once, a handler for SIGINT, SIGTERM and SIGHUP that
// removes the live namespaces and then lets the signal take its default
// effect (it stops listening and re-raises it). Signals the process was
// started with ignored (SIGINT for a background job) stay ignored.
func watchSignals() {
	sigOnce.Do(func() {
		var sigs []os.Signal
		for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
			if !signal.Ignored(s) {
				sigs = append(sigs, s)
			}
		}
		if len(sigs) == 0 {
			return
		}
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, sigs...)
		go func() {
			sig := <-ch
			Cleanup()
			signal.Stop(ch)
			if s, ok := sig.(syscall.Signal); ok {
				syscall.Kill(os.Getpid(), s)
			}
		}()
	})
}

// removeStale deletes sw-oracle-PID-* namespaces whose process is gone.
func removeStale() {
	staleMu.Do(func() {
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			m := nsNameRE.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			pid, _ := strconv.Atoi(m[1])
			if pid == os.Getpid() {
				continue
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
				deleteNamespace(e.Name())
			}
		}
	})
}

// inNamespace runs fn on a dedicated OS thread that has entered the
// namespace. The thread is never handed back to the Go scheduler: the
// goroutine exits with the thread still locked, so the runtime discards it.
func (n *namespace) inNamespace(fn func(h netns.NsHandle) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("oracle: panic in namespace %s: %v", n.name, r)
			}
		}()
		h, err := netns.GetFromName(n.name)
		if err != nil {
			errc <- fmt.Errorf("oracle: open namespace %s: %w", n.name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("oracle: enter namespace %s: %w", n.name, err)
			return
		}
		errc <- fn(h)
	}()
	return <-errc
}
