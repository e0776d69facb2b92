//go:build !linux

package nfq

import (
	"context"
	"log/slog"
)

// Divert is a set of installed divert rules (Linux only).
type Divert struct{ cfg DivertConfig }

// Install is Linux-only; it returns ErrNotSupported here.
func Install(cfg DivertConfig) (*Divert, error) { return nil, ErrNotSupported }

// Config returns the configuration the rules were installed with.
func (d *Divert) Config() DivertConfig { return d.cfg }

// Remove is Linux-only; it returns ErrNotSupported here.
func (d *Divert) Remove() error { return ErrNotSupported }

// Cleanup is Linux-only; it returns ErrNotSupported here.
func Cleanup(cfg DivertConfig) error { return ErrNotSupported }

// EnableDefrag is Linux-only; it returns ErrNotSupported here.
func EnableDefrag(netns, tag string) (string, error) { return "", ErrNotSupported }

// DisableDefrag is Linux-only; it returns ErrNotSupported here.
func DisableDefrag(netns, tag string) error { return ErrNotSupported }

// DetectBackend is Linux-only; it returns ErrNotSupported here.
func DetectBackend() (string, error) { return "", ErrNotSupported }

// Reader reads NFQUEUE queues (Linux only).
type Reader struct{}

// Open is Linux-only; it returns ErrNotSupported here.
func Open(cfg QueueConfig, h Handler, log *slog.Logger) (*Reader, error) {
	return nil, ErrNotSupported
}

// Run is Linux-only; it returns ErrNotSupported here.
func (r *Reader) Run(ctx context.Context) error { return ErrNotSupported }

// Stats returns nothing here.
func (r *Reader) Stats() []Stats { return nil }

// Release is Linux-only; it returns ErrNotSupported here.
func (r *Reader) Release(queue uint16, id uint32, v Verdict) error { return ErrNotSupported }

// Close is Linux-only; it returns ErrNotSupported here.
func (r *Reader) Close() error { return ErrNotSupported }
