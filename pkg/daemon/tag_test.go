package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badTags are tags that must never reach iptables or nft: each would
// break a chain name or add to the nft script the daemon runs as root.
var badTags = []string{
	"x\nlist ruleset", // a second nft command (the finding used flush ruleset)
	"x;list ruleset",
	"x }",
	"x y",
	"x.y",
	"x/y",
	"-x", // iptables would read -x-INPUT as an option
	"STATEWÄLL",
	"x\x00",
	strings.Repeat("x", 21), // x...x-FORWARD would pass iptables' 28
}

// TestConfigRefusesBadTag: New refuses a bad --tag before it does
// anything, and accepts the tags a user would write, the longest included.
func TestConfigRefusesBadTag(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "host.rules")
	if err := os.WriteFile(rules, []byte("pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tag := range badTags {
		d, err := New(Config{RulesFile: rules, Tag: tag}, nil)
		if err == nil {
			t.Errorf("New accepted tag %q", tag)
			continue
		}
		if d != nil || !strings.Contains(err.Error(), "bad tag") {
			t.Errorf("tag %q: New = %v, %v; want nil and a bad tag error", tag, d, err)
		}
	}
	for _, tag := range []string{"", "STATEWALL", "sw2", "sw_router-1", strings.Repeat("x", 20)} {
		cfg := Config{RulesFile: rules, Tag: tag}
		if err := cfg.check(); err != nil {
			t.Errorf("tag %q refused: %v", tag, err)
		}
	}
}
