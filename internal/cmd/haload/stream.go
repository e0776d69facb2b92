package main

import (
	"encoding/binary"
	"math/rand/v2"
)

// newStream returns the bulk transfer's content for seed: ChaCha8's output,
// which the server sends and the client generates again to compare every
// byte it receives (a checksum would say only that something differs; the
// comparison says where). ChaCha8 makes about 1 GB/s on one core, far more
// than the paced transfer needs.
func newStream(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "statewall haload bulk stream")
	return rand.NewChaCha8(s)
}
