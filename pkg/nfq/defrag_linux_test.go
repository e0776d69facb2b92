//go:build linux

package nfq

import (
	"strings"
	"testing"
)

// TestDefragRefusesBadTag: the defragmentation table's script is never
// built from a bad tag, even if a caller skipped CheckTag. (The bad tags'
// extra commands only read, in case this ever runs unfixed as root.)
// Moved here from pkg/daemon (TestSetDefragRefusesBadTag) with the table.
func TestDefragRefusesBadTag(t *testing.T) {
	for _, tag := range badTags {
		if _, err := EnableDefrag("", tag); err == nil || !strings.Contains(err.Error(), "bad tag") {
			t.Errorf("EnableDefrag(%q) = %v; want a bad tag error, before nft runs", tag, err)
		}
		if err := DisableDefrag("", tag); err == nil || !strings.Contains(err.Error(), "bad tag") {
			t.Errorf("DisableDefrag(%q) = %v; want a bad tag error, before nft runs", tag, err)
		}
	}
}
