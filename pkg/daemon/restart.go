package daemon

import (
	"context"
	"log/slog"
	"time"
)

// Restarts keep connections. Three things together:
//   - the state file: saved at a stop (SIGTERM, SIGINT, SIGUSR2) and every
//     Config.StateSaveEvery while running, so that a crash loses at most
//     that much; loaded at the next start;
//   - restored TCP entries are tracked with liberal windows (pkg/conntrack
//     insertLoaded), as conntrackd-restored entries are in the kernel: the
//     connection went on unseen while no statewall ran, and its window
//     edges are stale;
//   - for Config.PickupGrace after a start that restored a table, TCP
//     connections the table does not know (made after the last save) are
//     picked up mid-stream by the rules that would pass their SYN
//     (engine.Stateful.SetPickup), as the kernel's loose tracking does.
// The counts: conntrack's Restored and Liberal, the engine's Pickups, in
// status and the metrics.

// afterLoad starts the pickup grace after a start that restored a table.
func (d *Daemon) afterLoad(restored bool) {
	if !restored || d.cfg.PickupGrace <= 0 {
		return
	}
	until := d.now() + int64(d.cfg.PickupGrace)
	d.stateful.SetPickup(until)
	d.log.Info("restored: connections the table does not know are picked up mid-stream for a while",
		"grace", d.cfg.PickupGrace.String())
}

// saveEvery saves the table to the state file every interval until ctx
// ends: what a crash would lose. It wakes only at the interval.
func (d *Daemon) saveEvery(ctx context.Context, every time.Duration) {
	if d.cfg.StateFile == "" || every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.saveStateAt(slog.LevelDebug)
		}
	}
}
