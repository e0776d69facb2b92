package pcaprewrite

import "encoding/binary"

// Internet checksum arithmetic (RFC 1071) and incremental update (RFC 1624).
//
// A "sum" here is the folded 16-bit one's-complement sum of big-endian words,
// not complemented. A region's checksum field is valid when the sum over the
// region (checksum field included, plus the pseudo-header if any) is 0xffff.

// sum16 adds b as big-endian 16-bit words to acc (an odd trailing byte is
// padded with zero, as RFC 1071 says) and returns the unfolded total.
func sum16(b []byte, acc uint32) uint32 {
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
		if acc >= 0x80000000 {
			acc = acc&0xffff + acc>>16
		}
	}
	if len(b)&1 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

// fold reduces a 32-bit accumulator to a 16-bit one's-complement sum.
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// onesAdd is one's-complement addition of two 16-bit values.
func onesAdd(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s&0xffff + s>>16)
}

// adjust is RFC 1624 equation 3, HC' = ~(~HC + ~m + m'), with m and m' the
// one's-complement sums of everything that changed (old and new). It keeps
// the checksum's error: a checksum that was wrong by d stays wrong by d, so
// validity is preserved both ways.
func adjust(hc, oldSum, newSum uint16) uint16 {
	return ^onesAdd(onesAdd(^hc, ^oldSum), newSum)
}

// adjustField applies adjust to the big-endian checksum at b[off:off+2].
// zeroMeansNone: the protocol uses 0 for "no checksum" (UDP), so a stored 0
// is left alone and a computed 0 is written as 0xffff (same value in one's
// complement, so validity is unchanged).
func adjustField(b []byte, off int, oldSum, newSum uint16, zeroMeansNone bool) {
	if off < 0 || off+2 > len(b) || oldSum == newSum {
		return
	}
	hc := binary.BigEndian.Uint16(b[off:])
	if zeroMeansNone && hc == 0 {
		return
	}
	n := adjust(hc, oldSum, newSum)
	if zeroMeansNone && n == 0 {
		n = 0xffff
	}
	binary.BigEndian.PutUint16(b[off:], n)
}

// Checksum computes the Internet checksum of b with an initial (unfolded)
// accumulator, ready to be stored (complemented).
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum16(b, initial))
}

// pseudoSum returns the unfolded sum of an IPv4/IPv6 pseudo-header.
func pseudoSum(src, dst []byte, proto uint8, length int) uint32 {
	acc := sum16(src, 0)
	acc = sum16(dst, acc)
	acc += uint32(proto)
	acc += uint32(length>>16) + uint32(length&0xffff)
	return acc
}
