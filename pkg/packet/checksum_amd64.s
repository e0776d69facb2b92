#include "textflag.h"

// func sumAVX2(b []byte) uint64
//
// The plain sum of b's 32-bit little-endian words, in two 256-bit
// accumulators of four 64-bit lanes: each 32 bytes are split into their
// low and high 32-bit halves (mask, shift) and added to 64-bit lanes,
// which cannot overflow for any packet. Precondition: len(b) is a
// multiple of 32, at least 32; AVX2.
TEXT ·sumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPCMPEQD Y5, Y5, Y5
	VPSRLQ $32, Y5, Y5 // 0x00000000ffffffff in each 64-bit lane

loop:
	VMOVDQU (SI), Y2
	VPAND Y5, Y2, Y3
	VPSRLQ $32, Y2, Y4
	VPADDQ Y3, Y0, Y0
	VPADDQ Y4, Y1, Y1
	ADDQ $32, SI
	SUBQ $32, CX
	JNZ loop

	VPADDQ Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VPADDQ X1, X0, X0
	VMOVQ X0, AX
	VZEROUPPER
	MOVQ AX, ret+24(FP)
	RET
