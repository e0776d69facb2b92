// Package hademo holds the end-to-end test of the failover demo (issue
// #20): scripts/ha-demo.sh, which `make ha-demo` runs at full size, run
// smaller in `make test`. It has no code of its own.
package hademo
