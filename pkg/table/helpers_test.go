package table

import (
	"net/netip"
	"testing"
)

// pfx parses space-separated entries in the table file syntax.
func pfx(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	ps, err := ParseAddrs(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustNew(t testing.TB, cfg Config, s ...string) *Table {
	t.Helper()
	tb, err := New(cfg, pfx(t, s...))
	if err != nil {
		t.Fatal(err)
	}
	return tb
}
