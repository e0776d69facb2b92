// Package testenv says whether a test may run here: the tests that need
// root (network namespaces, iptables, nftables, NFQUEUE) skip without it,
// so that a newcomer can run the unit tests with `go test ./...` as any
// user, unless RootTestsEnv demands them. `make test` (and so CI, which
// runs as root) sets it: there a root-only test never skips, it fails,
// with what is missing.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RootTestsEnv is the environment variable that makes root-only tests
// mandatory: set to 1, a root-only test run without root fails instead of
// skipping.
const RootTestsEnv = "STATEWALL_ROOT_TESTS"

// NeedRoot skips t unless it runs as root (it fails instead when
// RootTestsEnv is 1), then fails it if any of tools is not on the PATH
// (scripts/install-deps.sh installs them). why says what the test needs
// root for.
func NeedRoot(t testing.TB, why string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv(RootTestsEnv) == "1" {
			t.Fatalf("this test needs root (%s), and %s=1 demands it: run it as root, as `make test` and CI do", why, RootTestsEnv)
		}
		t.Skipf("needs root (%s); `make test` runs it as root (%s=1 makes this skip a failure)", why, RootTestsEnv)
	}
	for _, c := range tools {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s is missing (scripts/install-deps.sh installs it): %v", c, err)
		}
	}
}
