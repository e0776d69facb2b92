//go:build !amd64

package packet

const hasAVX2 = false

func sumAVX2(b []byte) uint64 { panic("no AVX2") }
