// Package kerneldiff compares statewall's connection tracking with the
// running Linux kernel's, packet by packet, on captures and on the random
// conversations of package convgen: the kernel labels a capture through
// the oracle (internal/oracle: a fresh network namespace, ct state read
// back per packet), statewall labels it by a stateful replay with the same
// checksum setting, and every packet the kernel labels must get the same
// ct state and direction. A disagreement in generated traffic is shrunk by
// Minimize to the fewest packets that still disagree.
//
// It is Linux-only and needs root; its tests run with testenv.NeedRoot.
package kerneldiff
