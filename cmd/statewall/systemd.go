package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/daemon"
	"github.com/statewall/statewall/pkg/sdnotify"
)

// This file is `statewall run` under systemd (scripts/statewall.service,
// Type=notify): READY=1 once the divert rules and the ruleset are in place,
// RELOADING=1 and READY=1 around a reload, STOPPING=1, STATUS= lines, the
// watchdog, and journald priorities on stderr. Outside systemd (no
// $NOTIFY_SOCKET, no $WATCHDOG_USEC, no $JOURNAL_STREAM) none of it does
// anything.

// newLogger is the daemon's logger on stderr: text or JSON lines, each
// prefixed with its journald priority when stderr is the journal.
func newLogger(stderr io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	mk := func(w io.Writer) slog.Handler {
		if json {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	if f, ok := stderr.(*os.File); ok && sdnotify.IsJournal(os.Getenv("JOURNAL_STREAM"), f) {
		return slog.New(sdnotify.PriorityHandler(stderr, mk))
	}
	return slog.New(mk(stderr))
}

// notifier returns the service manager's notifier (nil outside systemd)
// and the daemon's Notify hook that drives it.
func notifier(log *slog.Logger) (*sdnotify.Notifier, func(daemon.State, string)) {
	n, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		log.Warn("not notifying the service manager", "err", err)
	}
	if n == nil {
		return nil, nil
	}
	return n, func(s daemon.State, status string) {
		var state string
		switch s {
		case daemon.Ready:
			state = sdnotify.Ready
		case daemon.Reloading:
			var ts unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
			state = sdnotify.Reloading + "\n" + sdnotify.MonotonicUsec(ts.Nano()/1000)
		case daemon.Stopping:
			state = sdnotify.Stopping
		}
		if err := n.Send(state, sdnotify.Status(status)); err != nil {
			log.Warn("notifying the service manager", "state", s.String(), "err", err)
		}
	}
}

// watchdog sends WATCHDOG=1 every interval (half of $WATCHDOG_USEC) while
// the daemon's queues are read (daemon.Alive), until ctx is done. When a
// reader is stuck it stops sending and says why: systemd then kills the
// daemon (SIGABRT, WatchdogSignal=) and Restart= starts a new one. One
// wake-up per interval, nothing else: an idle daemon stays idle.
func watchdog(ctx context.Context, n *sdnotify.Notifier, d *daemon.Daemon, log *slog.Logger) {
	every, err := sdnotify.WatchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	if err != nil {
		log.Warn("watchdog off", "err", err)
	}
	if every <= 0 || n == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.Alive(); err != nil {
			log.Error("watchdog: not alive, no more keep-alives: systemd will restart statewall", "err", err)
			n.Send(sdnotify.Status("stuck: " + err.Error()))
			return
		}
		if err := n.Send(sdnotify.Watchdog); err != nil {
			log.Warn("watchdog", "err", err)
		}
	}
}
