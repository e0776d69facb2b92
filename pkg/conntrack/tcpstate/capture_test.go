package tcpstate

import "testing"

// Segment sequences of captures in /work/shared/pcaps (see MANIFEST.md),
// transcribed from `tcpdump -nn -S -x` by hand: flags, seq, ack, window,
// payload length and the options conntrack reads. The captures are not
// read here (the decoder is tested on its own); these tests pin the state
// machine on the same sequences.
//
// The expectations come from reading the kernel code
// (nf_conntrack_proto_tcp.c, Linux 6.12+), not from replaying the captures
// through a kernel: when the differential replay exists, it is the judge.

// MANIFEST #1, split-handshake-4whs.pcap: SYN, a bare SYN back, SYN/ACK
// from the client, ACK from the server: conntrack's simultaneous open.
func TestCaptureSplitHandshake4WHS(t *testing.T) {
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// REPLY syn: SYN_SENT2; SYN index in SYN_SENT without a reply seen
		// keeps the timer.
		{from: srv, p: seg("S", 3000, 0, 8192), v: Accept, state: SynSent2, label: "established"},
		{from: cli, p: seg("SA", 1000, 3001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
		{from: srv, p: seg("A", 3001, 1001, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true, label: "established"},
		{from: cli, p: seg("A", 1001, 3001, 8192, data(4)), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		{from: srv, p: seg("A", 3001, 1005, 8192), v: Accept, state: Established, timeout: 5 * days, label: "established"},
		// RST at exactly the server's max ack: CLOSE.
		{from: cli, p: seg("R", 1005, 0, 8192), v: Accept, state: Close, timeout: 10 * sec, label: "established"},
	})
}

// MANIFEST #2, split-handshake-5whs.pcap: as #1 with a bare server ACK
// (seq 2000, ack 1001) before the server's SYN.
func TestCaptureSplitHandshake5WHS(t *testing.T) {
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// REPLY ack in SYN_SENT is sIG ("might be a half-open
		// connection"): accepted, annotated (last_ack = 1001 as a possible
		// challenge ACK), timer kept. It still counts as a reply seen.
		{from: srv, p: seg("A", 2000, 1001, 8192), v: Ignore, reason: ReasonIgnored, state: SynSent, label: "established"},
		// With a reply seen, the SYN_SENT2 timer is set (120 s).
		{from: srv, p: seg("S", 3000, 0, 8192), v: Accept, state: SynSent2, timeout: 120 * sec, label: "established"},
		{from: cli, p: seg("SA", 1000, 3001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
		{from: srv, p: seg("A", 3001, 1001, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true, label: "established"},
		{from: cli, p: seg("A", 1001, 3001, 8192, data(4)), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		{from: srv, p: seg("A", 3001, 1005, 8192), v: Accept, state: Established, timeout: 5 * days, label: "established"},
		{from: cli, p: seg("R", 1005, 0, 8192), v: Accept, state: Close, timeout: 10 * sec, label: "established"},
	})
}

// MANIFEST #3, tcp-stream-out-of-window.pcap (and #4, its IPv6 twin): data
// at seq 101001 when the server's window (256) ends at 1257.
func TestCaptureOutOfWindowData(t *testing.T) {
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1000, 0, 256), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		{from: srv, p: seg("SA", 5000, 1001, 256), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
		// Overshoot 99756 bytes > the server's max window (256): not the
		// overshoot workaround, plain "SEQ is over upper bound".
		{from: cli, p: seg("PA", 101001, 5001, 256, data(11)), v: Invalid, reason: ReasonSeqBeyondWindow, state: SynRecv, label: "invalid"},
	})
}

// MANIFEST #9, tcp-evasion-linux.pcap. The injected server RST/ACK (seq 0,
// ack ISN+1) arrives before any reply: tcp_in_window takes the RST's seq 0
// as "RST answering SYN" and accepts it; no reply seen + RST = the entry is
// killed. Everything the server sends next finds no entry and cannot create
// one (FIN/ACK, SYN/ACK are invalid new), the client's RST likewise, and
// the client's ACK of the real SYN/ACK is picked up mid-stream (loose=1) as
// a new, liberal connection. So on Linux the evasion does not hide the
// connection: the rest of it is tracked, labelled new until the server
// answers, and the real SYN/ACK is invalid.
//
// The picked-up entry stays on 300 s throughout: every window check fails
// (the client side's End was never learned from a packet that passed) and
// the liberal flag accepts it before any window data, including last_win,
// is recorded, so the "last window 0" rule caps the timeout.
func TestCaptureEvasionLinux(t *testing.T) {
	const isn = 3810062735
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", isn, 0, 64240, sackOK(), ts(), wscale(7)), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		{from: srv, p: seg("RA", 0, isn+1, 64240, ts()), v: Accept, kill: true, reason: ReasonRstBeforeReply, label: "established"},
		{from: srv, p: seg("FA", 0, isn+1, 64240, ts()), v: Invalid, reason: ReasonNewFin, gone: true, label: "invalid"},
		{from: cli, p: seg("R", isn+1, 0, 0), v: Invalid, reason: ReasonNewRst, gone: true, label: "invalid"},
		{from: srv, p: seg("SA", 26175, isn+1, 64240, sackOK(), ts(), wscale(7)), v: Invalid, reason: ReasonNewSynAck, gone: true, label: "invalid"},
		{from: cli, p: seg("A", isn+1, 26176, 502, ts()), v: Accept, state: Established, timeout: 300 * sec, label: "new"},
		{from: cli, p: seg("PA", isn+1, 26176, 502, ts(), data(338)), v: Accept, state: Established, timeout: 300 * sec, label: "new"},
		{from: srv, p: seg("A", 26176, isn+339, 502, ts()), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		{from: srv, p: seg("PA", 26176, isn+339, 502, ts(), data(79)), v: Accept, state: Established, timeout: 300 * sec, assured: true, label: "established"},
		{from: cli, p: seg("A", isn+339, 26255, 502, ts()), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
	})
}

// MANIFEST #10, tcp-evasion-windows.pcap: the same evasion against a
// Windows client, which sends no RST of its own. Same outcome.
func TestCaptureEvasionWindows(t *testing.T) {
	const isn = 1501560049
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", isn, 0, 8192, wscale(8), sackOK()), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		{from: srv, p: seg("RA", 0, isn+1, 8192, ts()), v: Accept, kill: true, reason: ReasonRstBeforeReply, label: "established"},
		{from: srv, p: seg("FA", 0, isn+1, 8192, ts()), v: Invalid, reason: ReasonNewFin, gone: true, label: "invalid"},
		{from: srv, p: seg("SA", 59247, isn+1, 8192, wscale(8), sackOK()), v: Invalid, reason: ReasonNewSynAck, gone: true, label: "invalid"},
		{from: cli, p: seg("A", isn+1, 59248, 256), v: Accept, state: Established, timeout: 300 * sec, label: "new"},
		{from: cli, p: seg("PA", isn+1, 59248, 256, data(343)), v: Accept, state: Established, timeout: 300 * sec, label: "new"},
		{from: srv, p: seg("A", 59248, isn+344, 256), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		{from: srv, p: seg("PA", 59248, isn+344, 256, data(79)), v: Accept, state: Established, timeout: 300 * sec, assured: true, label: "established"},
		{from: cli, p: seg("A", isn+344, 59327, 256), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
	})
}

// MANIFEST #35, tcp-reopen-after-rst-vlan.pcap: SYN refused with a bare
// RST, then a new SYN on the same 4-tuple. The RST comes before any reply,
// so it kills the entry; the second SYN simply creates a new one (no
// Reopen verdict is involved).
func TestCaptureReopenAfterRST(t *testing.T) {
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1111, 0, 8192, wscale(5), ts()), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// No ACK flag: tcp_in_window takes ack = the client's End; seq 2222
		// initialises the server side mid-stream. In window, accepted,
		// entry killed.
		{from: srv, p: seg("R", 2222, 0, 8192), v: Accept, kill: true, reason: ReasonRstBeforeReply, label: "established"},
		{from: cli, p: seg("S", 3333, 0, 8192, wscale(5)), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// The server sends no wscale: scaling off both ways.
		{from: srv, p: seg("SA", 4444, 3334, 8192), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
		{from: cli, p: seg("A", 3334, 4445, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true, label: "established"},
		{from: cli, p: seg("A", 3334, 4445, 8192, data(5)), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		{from: srv, p: seg("A", 4445, 3339, 8192, data(15)), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		// seq 3339 equals the server's max ack: exact, CLOSE.
		{from: cli, p: seg("R", 3339, 0, 8192), v: Accept, state: Close, timeout: 10 * sec, label: "established"},
	})
}
