//go:build !linux

package links

import (
	"context"
	"errors"
)

// errUnsupported is what Start and Current return where there is no
// rtnetlink.
var errUnsupported = errors.New("links: watching interfaces needs Linux rtnetlink")

// Start needs Linux rtnetlink; elsewhere it returns an error.
func Start(ctx context.Context, cfg Config, fn func(Snapshot)) (*Watcher, error) {
	return nil, errUnsupported
}

// Current needs Linux rtnetlink; elsewhere it returns an error.
func Current(cfg Config) (Snapshot, error) {
	return Snapshot{}, errUnsupported
}
