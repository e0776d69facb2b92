package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version, when set at build time with -ldflags "-X main.version=...",
// overrides the module version the build recorded.
var version = "dev"

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", `Print the version of statewall: the module version (a tag, or a
pseudo-version made of the commit's time and hash, +dirty when the work
tree had changes), the VCS revision and whether the tree was modified, and
the Go toolchain that built it. 'statewall --version' says the same.`, stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(bi, version))
	return nil
}

// versionLine is the one line `statewall version` prints, from the build
// information (nil when the binary carries none) and -X main.version.
func versionLine(bi *debug.BuildInfo, ldVersion string) string {
	v := ldVersion
	if bi == nil {
		return "statewall " + v
	}
	if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	var parts []string
	if rev != "" {
		r := "revision " + rev
		if modified == "true" {
			r += ", modified"
		}
		parts = append(parts, r)
	}
	parts = append(parts, bi.GoVersion)
	return fmt.Sprintf("statewall %s (%s)", v, strings.Join(parts, ", "))
}
