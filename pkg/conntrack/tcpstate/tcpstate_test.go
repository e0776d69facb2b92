package tcpstate

import (
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// Every expectation in this file was derived by reading
// net/netfilter/nf_conntrack_proto_tcp.c (Linux 6.12+) and following the
// code by hand for the segment in question; the comments give the steps
// that decide. They have not (yet) been checked by replaying the segments
// through a kernel.

func TestThreeWayHandshake(t *testing.T) {
	s := &sim{}
	run(t, s, handshake())
	// Window bookkeeping (tcp_in_window): each side's MaxEnd is the other
	// side's ack + window; MaxAck is its highest ack.
	c := s.c
	if got, want := c.Peer[Original], (Peer{End: 1001, MaxEnd: 1001 + 8192, MaxWin: 8192, MaxAck: 5001}); got != want || c.Flags[Original] != PeerMaxAckSet {
		t.Errorf("client peer = %+v, want %+v", got, want)
	}
	if got, want := c.Peer[Reply], (Peer{End: 5001, MaxEnd: 5001 + 8192, MaxWin: 8192, MaxAck: 1001}); got != want || c.Flags[Reply] != PeerMaxAckSet {
		t.Errorf("server peer = %+v, want %+v", got, want)
	}
}

func TestSynRetransmitDoesNotRefreshTimer(t *testing.T) {
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// Same SYN again: accepted, but "do not renew timeout on SYN
		// retransmit" (no reply seen, old state SYN_SENT).
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, label: "new"},
		// A SYN with a higher ISN re-initialises the sender
		// (tcp_in_window, RFC 793 reinit); still no refresh.
		{from: cli, p: seg("S", 9000, 0, 8192), v: Accept, state: SynSent, label: "new"},
		// The SYN/ACK matches the new ISN.
		{from: srv, p: seg("SA", 5000, 9001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec},
		{from: cli, p: seg("A", 9001, 5001, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true},
	})
}

func TestSimultaneousOpenSynSent2(t *testing.T) {
	s := &sim{}
	run(t, s, []row{
		{from: cli, p: seg("S", 1000, 0, 8192, wscale(2)), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// REPLY syn in SYN_SENT -> SYN_SENT2. tcp_in_window initialises
		// the reply side and accepts at once. The timer is not refreshed:
		// index SYN with old state SYN_SENT and no reply seen yet.
		{from: srv, p: seg("S", 3000, 0, 8192, wscale(3)), v: Accept, state: SynSent2, label: "established"},
		// ORIGINAL synack in SYN_SENT2 -> SYN_RECV.
		{from: cli, p: seg("SA", 1000, 3001, 8192, wscale(2)), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
		// REPLY ack in SYN_RECV stays SYN_RECV in the table; the
		// simultaneous-open flag moves it to ESTABLISHED.
		{from: srv, p: seg("A", 3001, 1001, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true},
	})
	if s.c.Scale[Original] != 2 || s.c.Scale[Reply] != 3 {
		t.Errorf("scales = %d/%d, want 2/3", s.c.Scale[Original], s.c.Scale[Reply])
	}
}

func TestSynOnEstablishedIsIgnored(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		// ORIGINAL syn in ESTABLISHED is sIG: accepted as established,
		// nothing changes, the timer is left alone.
		{from: cli, p: seg("S", 70000, 0, 8192), v: Ignore, reason: ReasonIgnored, state: Established, label: "established"},
		// The server's RFC 5961 challenge ACK is an ordinary ACK.
		{from: srv, p: seg("A", 5001, 1001, 8192), v: Accept, state: Established, timeout: 5 * days},
	}))
}

func TestSynAckAfterIgnoredSynResyncs(t *testing.T) {
	// Case b) of the IGNORE handling: the client restarted and both ends
	// agree on a new connection that conntrack still sees as the old one.
	s := &sim{}
	run(t, s, cat(handshake(), []row{
		{from: cli, p: seg("S", 70000, 0, 4096, sackOK()), v: Ignore, reason: ReasonIgnored, state: Established},
		// REPLY synack in ESTABLISHED is sIG, but it acks the SYN we
		// annotated: old state becomes SYN_SENT, new SYN_RECV, windows
		// rebuilt from the annotation, then the normal window check.
		{from: srv, p: seg("SA", 90000, 70001, 8192, sackOK()), v: Accept, state: SynRecv, timeout: 60 * sec},
		{from: cli, p: seg("A", 70001, 90001, 4096), v: Accept, state: Established, timeout: 5 * days},
	}))
	if got := s.c.Peer[Original]; got.End != 70001 || s.c.Flags[Original]&PeerSACKPerm == 0 {
		t.Errorf("client peer after resync = %+v, want End 70001 with SACK permitted", got)
	}
	if got := s.c.Peer[Reply].End; got != 90001 {
		t.Errorf("server End = %d, want 90001", got)
	}
}

// fullClose closes the handshake() connection from the client side.
func fullClose() []row {
	return []row{
		// FIN: FIN_WAIT; the FIN is unacked data, but FIN_WAIT's 120 s is
		// below the 300 s unacked cap.
		{from: cli, p: seg("FA", 1001, 5001, 8192), v: Accept, state: FinWait, timeout: 120 * sec},
		{from: srv, p: seg("A", 5001, 1002, 8192), v: Accept, state: CloseWait, timeout: 60 * sec},
		{from: srv, p: seg("FA", 5001, 1002, 8192), v: Accept, state: LastAck, timeout: 30 * sec},
		{from: cli, p: seg("A", 1002, 5002, 8192), v: Accept, state: TimeWait, timeout: 120 * sec},
	}
}

func TestFullCloseSequence(t *testing.T) {
	s := &sim{}
	run(t, s, cat(handshake(), fullClose(), []row{
		// Retransmitted last ACK: TIME_WAIT again, timer refreshed.
		{from: cli, p: seg("A", 1002, 5002, 8192), v: Accept, state: TimeWait, timeout: 120 * sec},
	}))
	if s.c.Flags[Original]&PeerCloseInit == 0 || s.c.Flags[Reply]&PeerCloseInit != 0 {
		t.Errorf("close-init flags = %#x/%#x, want only the client's", s.c.Flags[Original], s.c.Flags[Reply])
	}
}

func TestCustomTimeouts(t *testing.T) {
	// Zero fields fall back to the defaults one by one.
	s := &sim{to: Timeouts{FinWait: 7 * sec, Established: time.Hour}}
	run(t, s, []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec},
		{from: srv, p: seg("SA", 5000, 1001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec},
		{from: cli, p: seg("A", 1001, 5001, 8192), v: Accept, state: Established, timeout: time.Hour, assured: true},
		{from: cli, p: seg("FA", 1001, 5001, 8192), v: Accept, state: FinWait, timeout: 7 * sec},
	})
	// nil Timeouts mean the defaults.
	var c Conn
	p := seg("S", 1, 0, 100)
	Start(&c, p)
	if r := Step(&c, p, Original, Status{}, nil); r.Timeout != 120*sec {
		t.Errorf("nil timeouts: SYN timeout = %v, want 120s", r.Timeout)
	}
}

func TestChallengeAckInLastAck(t *testing.T) {
	run(t, &sim{}, cat(handshake(), fullClose()[:3], []row{
		// A new SYN in LAST_ACK is ignored and marks a possible RFC 5961
		// challenge ACK.
		{from: cli, p: seg("S", 90000, 0, 8192), v: Ignore, reason: ReasonIgnored, state: LastAck},
		// The server's challenge ACK must not count as the last ACK.
		{from: srv, p: seg("A", 5002, 1002, 8192), v: Ignore, reason: ReasonChallengeAck, state: LastAck},
		// The real last ACK.
		{from: cli, p: seg("A", 1002, 5002, 8192), v: Accept, state: TimeWait, timeout: 120 * sec},
	}))
}

func TestReopenFromTimeWait(t *testing.T) {
	run(t, &sim{}, cat(handshake(), fullClose(), []row{
		// ORIGINAL syn in TIME_WAIT -> SYN_SENT, and a side has
		// PeerCloseInit: the entry is killed and the SYN tracked again
		// (NF_REPEAT) as the first packet of a new entry.
		{from: cli, p: seg("S", 200000, 0, 8192), v: Accept, reopen: true, state: SynSent, timeout: 120 * sec, label: "new"},
		{from: srv, p: seg("SA", 300000, 200001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
	}))
}

func TestReopenFromTimeWaitServerSyn(t *testing.T) {
	// REPLY syn in TIME_WAIT -> SYN_SENT ("server may have switched
	// role"): the new entry is oriented from the server.
	s := &sim{}
	run(t, s, cat(handshake(), fullClose(), []row{
		{from: srv, p: seg("S", 300000, 0, 8192), v: Accept, reopen: true, state: SynSent, timeout: 120 * sec, label: "new"},
		{from: cli, p: seg("SA", 200000, 300001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec, label: "established"},
	}))
	if s.origin != srv {
		t.Errorf("reopened entry originates from %v, want srv", s.origin)
	}
}

func TestSynAfterRST(t *testing.T) {
	t.Run("own RST then SYN reopens", func(t *testing.T) {
		run(t, &sim{}, cat(handshake(), []row{
			{from: cli, p: seg("R", 1001, 0, 0), v: Accept, state: Close, timeout: 10 * sec},
			// Last in-window packet this way was an RST: aborted
			// connection, reopen.
			{from: cli, p: seg("S", 200000, 0, 8192), v: Accept, reopen: true, state: SynSent, timeout: 120 * sec},
		}))
	})
	t.Run("peer RST then SYN is ignored", func(t *testing.T) {
		// No close-init flag and the RST came from the other side: the
		// kernel falls through to the ignore case (annotating the SYN);
		// the server's SYN/ACK then resyncs the entry (case b).
		run(t, &sim{}, cat(handshake(), []row{
			{from: srv, p: seg("R", 5001, 0, 0), v: Accept, state: Close, timeout: 10 * sec},
			{from: cli, p: seg("S", 200000, 0, 8192), v: Ignore, reason: ReasonIgnored, state: Close},
			{from: srv, p: seg("SA", 300000, 200001, 8192), v: Accept, state: SynRecv, timeout: 60 * sec},
		}))
	})
}

func TestReplyRSTBeforeReplyKills(t *testing.T) {
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
		// RST/ACK for the SYN: in window, SYN_SENT -> CLOSE, and since no
		// reply was seen the entry is killed (nf_ct_kill_acct). The RST
		// itself is accepted, labelled established (reply direction).
		{from: srv, p: seg("RA", 0, 1001, 0), v: Accept, kill: true, reason: ReasonRstBeforeReply, label: "established"},
		// So a SYN/ACK after it finds no entry and cannot create one.
		{from: srv, p: seg("SA", 5000, 1001, 8192), v: Invalid, reason: ReasonNewSynAck, gone: true, label: "invalid"},
	})
	// The rule is "any RST before a reply", so the client's own RST kills
	// the entry too.
	run(t, &sim{}, []row{
		{from: cli, p: seg("S", 1000, 0, 8192), v: Accept, state: SynSent, timeout: 120 * sec},
		{from: cli, p: seg("R", 1001, 0, 0), v: Accept, kill: true, reason: ReasonRstBeforeReply, label: "new"},
	})
}

// dataExchange follows handshake(): the client sends 100 bytes, the server
// acks them. Afterwards the server's MaxAck is 1101.
func dataExchange() []row {
	return []row{
		{from: cli, p: seg("PA", 1001, 5001, 8192, data(100)), v: Accept, state: Established, timeout: 300 * sec},
		{from: srv, p: seg("A", 5001, 1101, 8192), v: Accept, state: Established, timeout: 5 * days},
	}
}

// TestRSTFromSynSenderIsWindowChecked pins Linux commit bed6e04be8e6
// ("netfilter: conntrack: tcp: do not force CLOSE on invalid-seq RST
// without direction check"; the oracle's 6.18.44 has it).
// nf_conntrack_tcp_packet, case TCP_CONNTRACK_CLOSE:
//
//	if (((test_bit(IPS_SEEN_REPLY_BIT, &ct->status)
//		 && ct->proto.tcp.last_index == TCP_SYN_SET
//		 && ct->proto.tcp.last_dir != dir)
//		|| (!test_bit(IPS_ASSURED_BIT, &ct->status)
//		    && ct->proto.tcp.last_index == TCP_ACK_SET))
//	    && ntohl(th->ack_seq) == ct->proto.tcp.last_end)
//		goto in_window;
//
// The window check is skipped only for an RST that answers the last SYN,
// i.e. one from the other side; an RST from the SYN's own sender goes
// through tcp_in_window like any other (testdata/kerneldiff
// tcp-syn-rst-open.pcap and tcp-syn-rst-resync.pcap).
func TestRSTFromSynSenderIsWindowChecked(t *testing.T) {
	t.Run("out of window after a resent SYN is invalid", func(t *testing.T) {
		// tcp-syn-rst-open: the server's data without a SYN/ACK is
		// ignored in SYN_SENT (annotated: last_end 5000+531), the
		// client's SYN one on re-inits its side (last_index SYN, last_dir
		// ORIGINAL), and its RST/ACK acking exactly last_end but far
		// beyond its own td_maxend is "SEQ is over upper bound".
		run(t, &sim{}, []row{
			{from: cli, p: seg("SEW", 1000, 0, 65535, sackOK()), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
			{from: srv, p: seg("PA", 5000, 1001, 35448, data(531)), v: Ignore, reason: ReasonIgnored, state: SynSent, label: "established"},
			{from: cli, p: seg("S", 1001, 0, 65535, wscale(4)), v: Accept, state: SynSent, timeout: 120 * sec, label: "established"},
			{from: cli, p: seg("RA", 1000+13632, 5531, 65535), v: Invalid, reason: ReasonSeqBeyondWindow, state: SynSent, label: "invalid"},
		})
	})
	t.Run("under the window is ignored and does not close", func(t *testing.T) {
		// tcp-syn-rst-resync: a SYN/ACK acking another ISN is ignored by
		// tcp_in_window (ACK under lower bound) after initialising the
		// server's side; last_end is still 0, as tcp_new left it, so a
		// client RST without ACK (ack field 0) "acks last_end". Without
		// the direction check it skipped the window and closed the entry;
		// now it is "SEQ under lower bound", ignored, and the client's
		// data after it is an ACK in SYN_SENT: invalid.
		run(t, &sim{}, []row{
			{from: cli, p: seg("S", 2000000000, 0, 54130, wscale(8)), v: Accept, state: SynSent, timeout: 120 * sec, label: "new"},
			{from: srv, p: seg("SA", 7000, 1000001, 19118, sackOK(), wscale(4)), v: Ignore, reason: ReasonAckTooOld, state: SynSent, label: "established"},
			{from: cli, p: seg("R", 1000000+305889, 0, 54130), v: Ignore, reason: ReasonSeqTooOld, state: SynSent, label: "established"},
			{from: cli, p: seg("A", 1000001, 7001, 54130, data(696)), v: Invalid, reason: ReasonBadAck, state: SynSent, label: "invalid"},
		})
	})
	t.Run("an RST from the other side still answers the SYN", func(t *testing.T) {
		// Case a): a SYN ignored in ESTABLISHED, and the server's RST
		// acking it skips the window check and closes the entry.
		run(t, &sim{}, cat(handshake(), []row{
			{from: cli, p: seg("S", 900000, 0, 8192), v: Ignore, reason: ReasonIgnored, state: Established},
			{from: srv, p: seg("RA", 0, 900001, 0), v: Accept, state: Close, timeout: 10 * sec},
		}))
	})
}

func TestRSTBelowMaxAckInvalid(t *testing.T) {
	run(t, &sim{}, cat(handshake(), dataExchange(), []row{
		// seq 1050 is before what the server has acknowledged (1101):
		// "invalid rst", the entry is untouched.
		{from: cli, p: seg("R", 1050, 0, 0), v: Invalid, reason: ReasonInvalidRst, state: Established, label: "invalid"},
		// Same from the server's side: the client acked 5001.
		{from: srv, p: seg("RA", 4000, 1101, 0), v: Invalid, reason: ReasonInvalidRst, state: Established},
		// The connection is intact.
		{from: cli, p: seg("A", 1101, 5001, 8192), v: Accept, state: Established, timeout: 5 * days},
	}))
}

func TestInWindowInexactRSTKeepsEstablished(t *testing.T) {
	run(t, &sim{}, cat(handshake(), dataExchange(), []row{
		// In window (1200 <= 1101+8192) but not the exact next sequence
		// number (1101): the state stays ESTABLISHED so the peer can send
		// a challenge ACK. The timeout is still the RST one: the kernel
		// picks timeouts[CLOSE] for every in-window RST index.
		{from: cli, p: seg("R", 1200, 0, 0), v: Accept, state: Established, timeout: 10 * sec, label: "established"},
		// Any further accepted packet restores the normal timer (here the
		// RST's seq counts as unacked data, so 300 s).
		{from: srv, p: seg("A", 5001, 1101, 8192), v: Accept, state: Established, timeout: 300 * sec},
	}))
}

func TestExactRSTCloses(t *testing.T) {
	run(t, &sim{}, cat(handshake(), dataExchange(), []row{
		{from: cli, p: seg("RA", 1101, 5001, 0), v: Accept, state: Close, timeout: 10 * sec},
	}))
	run(t, &sim{}, cat(handshake(), dataExchange(), []row{
		{from: srv, p: seg("R", 5001, 0, 0), v: Accept, state: Close, timeout: 10 * sec},
	}))
}

func TestRSTTrainCloses(t *testing.T) {
	// An RST right after the sender's own data segment, at its end, is the
	// "RST train" exception: it closes even though the peer has not acked
	// that data yet.
	run(t, &sim{}, cat(handshake(), dataExchange(), []row{
		{from: cli, p: seg("PA", 1101, 5001, 8192, data(100)), v: Accept, state: Established, timeout: 300 * sec},
		{from: cli, p: seg("R", 1201, 0, 0), v: Accept, state: Close, timeout: 10 * sec},
	}))
}

func TestRSTInClosingStateSkipsChecks(t *testing.T) {
	// tcp_can_early_drop: in FIN_WAIT..CLOSE an RST goes to CLOSE without
	// any sequence check, even far outside the window.
	run(t, &sim{}, cat(handshake(), fullClose()[:1], []row{
		{from: srv, p: seg("R", 99999999, 0, 0), v: Accept, state: Close, timeout: 10 * sec},
	}))
}

func TestLoosePickupACK(t *testing.T) {
	s := &sim{}
	run(t, s, []row{
		// ACK index from nothing: ESTABLISHED, label new. The window check
		// fails ("ACK is over upper bound": the reply side is empty) but
		// the entry is liberal, so it passes without updating anything.
		// The timeout is capped at 300 s while no reply has been seen.
		{from: cli, p: seg("PA", 1000, 5000, 1000, data(10)), v: Accept, state: Established, timeout: 300 * sec, label: "new"},
		// The first reply initialises the server side mid-stream; still no
		// reply seen when it is stepped, so still 300 s.
		{from: srv, p: seg("PA", 5000, 1010, 1000, data(20)), v: Accept, state: Established, timeout: 300 * sec, label: "established"},
		// The next packet with a reply seen makes the entry assured and,
		// everything being acked and the window non-zero, 5 days.
		{from: cli, p: seg("A", 1010, 5020, 1000), v: Accept, state: Established, timeout: 5 * days, assured: true, label: "established"},
	})
	for d := range 2 {
		if f := s.c.Flags[d]; f&(PeerBeLiberal|PeerSACKPerm) != PeerBeLiberal|PeerSACKPerm {
			t.Errorf("peer %d flags = %#x, want liberal and SACK", d, f)
		}
	}
}

func TestStartRejects(t *testing.T) {
	for _, tc := range []struct {
		p    *packet.Packet
		want Reason
	}{
		{seg("SA", 5000, 1001, 8192), ReasonNewSynAck},
		{seg("FA", 1000, 1, 8192), ReasonNewFin},
		{seg("R", 1000, 0, 0), ReasonNewRst},
		{seg("RA", 1000, 1, 0), ReasonNewRst},
		{seg("F", 1000, 0, 0), ReasonFlagsFinNoAck},
		{seg("SF", 1000, 0, 0), ReasonFlagsSynFin},
	} {
		var c Conn
		if r, ok := Start(&c, tc.p); ok || r != tc.want {
			t.Errorf("Start(%s) = %v, %v; want %v, false", packet.TCPFlagsString(tc.p.TCPFlags), r, ok, tc.want)
		}
	}
	// What can start an entry: SYN (with or without URG) and ACK-index
	// packets (ACK, ACK+URG, ACK+PSH).
	for _, f := range []string{"S", "SU", "SEW", "A", "AU", "PA"} {
		var c Conn
		if r, ok := Start(&c, seg(f, 1000, 1, 8192)); !ok {
			t.Errorf("Start(%s) = %v, false; want ok", f, r)
		}
	}
}

func TestFINAloneInvalid(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		// FIN without ACK is outside tcp_valid_flags in any state.
		{from: cli, p: seg("F", 1001, 0, 8192), v: Invalid, reason: ReasonFlagsFinNoAck, state: Established, label: "invalid"},
		// FIN/ACK is fine.
		{from: cli, p: seg("FA", 1001, 5001, 8192), v: Accept, state: FinWait, timeout: 120 * sec},
	}))
	run(t, &sim{}, []row{
		{from: cli, p: seg("F", 1000, 0, 8192), v: Invalid, reason: ReasonFlagsFinNoAck, gone: true, label: "invalid"},
		{from: cli, p: seg("FA", 1000, 1, 8192), v: Invalid, reason: ReasonNewFin, gone: true, label: "invalid"},
	})
}

func TestXmasNullSynFinInvalid(t *testing.T) {
	for _, tc := range []struct {
		flags string
		want  Reason
	}{
		{"", ReasonFlagsNull},
		{"P", ReasonFlagsNull},
		{"FPU", ReasonFlagsXmas},
		{"FSRPAUEW", ReasonFlagsSynFin},
		{"SF", ReasonFlagsSynFin},
		{"SFA", ReasonFlagsSynFin},
		{"SR", ReasonFlagsSynRst},
		{"FR", ReasonFlagsFinRst},
		{"FRA", ReasonFlagsFinRst},
		{"F", ReasonFlagsFinNoAck},
		{"U", ReasonFlags},
		{"RU", ReasonFlags},
		{"RAU", ReasonFlags},
		{"SAU", ReasonFlags},
	} {
		p := seg(tc.flags, 1001, 5001, 8192)
		var c Conn
		if r, ok := Start(&c, p); ok || r != tc.want {
			t.Errorf("Start(%q) = %v, %v; want %v", tc.flags, r, ok, tc.want)
		}
		s := &sim{}
		run(t, s, handshake())
		before := s.c
		if r := Step(&s.c, p, Original, s.st, nil); r.Verdict != Invalid || r.Reason != tc.want {
			t.Errorf("Step(%q) on ESTABLISHED = %v %v; want invalid %v", tc.flags, r.Verdict, r.Reason, tc.want)
		}
		if s.c != before {
			t.Errorf("Step(%q) changed the connection", tc.flags)
		}
	}
}

func TestCheck(t *testing.T) {
	// tcp_valid_flags, spelled out independently: the combinations of FIN,
	// SYN, RST, ACK, URG that pass once PSH, ECE, CWR are ignored.
	valid := map[string]bool{"S": true, "SU": true, "SA": true, "R": true, "RA": true, "FA": true, "FAU": true, "A": true, "AU": true}
	for f := 0; f < 256; f++ {
		p := seg("", 1, 1, 1)
		p.TCPFlags = uint8(f)
		key := ""
		for _, b := range []struct {
			bit uint8
			c   string
		}{{packet.TCPFin, "F"}, {packet.TCPSyn, "S"}, {packet.TCPRst, "R"}, {packet.TCPAck, "A"}, {packet.TCPUrg, "U"}} {
			if uint8(f)&b.bit != 0 {
				key += b.c
			}
		}
		r, ok := Check(p)
		if ok != valid[key] {
			t.Errorf("Check(flags %#02x %s) ok = %v, want %v", f, packet.TCPFlagsString(uint8(f)), ok, valid[key])
		}
		if ok != (r == ReasonNone) {
			t.Errorf("Check(flags %#02x) = %v, %v: reason and ok disagree", f, r, ok)
		}
	}
	for _, tc := range []struct {
		name             string
		hdr, l4, payload int
		want             bool
	}{
		{"minimal", 20, 20, 0, true},
		{"no L4Len", 20, 0, 0, true},
		{"short data offset", 16, 20, 4, false},
		{"data offset too big", 64, 64, 0, false},
		{"offset beyond segment", 40, 30, 0, false},
		{"negative payload", 20, 20, -1, false},
	} {
		p := seg("A", 1, 1, 1)
		p.TCPHdrLen, p.L4Len, p.PayloadLen = tc.hdr, tc.l4, tc.payload
		r, ok := Check(p)
		if ok != tc.want || (!ok && r != ReasonTruncated) {
			t.Errorf("%s: Check = %v, %v; want ok=%v", tc.name, r, ok, tc.want)
		}
	}
}

func TestWindowScaleBothSYNs(t *testing.T) {
	// Both SYNs carry wscale 7: the client's raw window 1024 means 131072
	// bytes, so server data 100000 bytes ahead is in window.
	s := &sim{}
	run(t, s, []row{
		{from: cli, p: seg("S", 1000, 0, 1024, wscale(7)), v: Accept, state: SynSent, timeout: 120 * sec},
		{from: srv, p: seg("SA", 5000, 1001, 1024, wscale(7)), v: Accept, state: SynRecv, timeout: 60 * sec},
		{from: cli, p: seg("A", 1001, 5001, 1024), v: Accept, state: Established, timeout: 5 * days, assured: true},
		{from: srv, p: seg("PA", 105001, 1001, 1024, data(100)), v: Accept, state: Established, timeout: 300 * sec},
	})
	if s.c.Scale[0] != 7 || s.c.Scale[1] != 7 {
		t.Errorf("scales = %d/%d, want 7/7", s.c.Scale[0], s.c.Scale[1])
	}
	// A shift above 14 is capped (RFC 7323).
	s = &sim{}
	run(t, s, []row{
		{from: cli, p: seg("S", 1000, 0, 1024, wscale(15)), v: Accept, state: SynSent, timeout: 120 * sec},
		{from: srv, p: seg("SA", 5000, 1001, 1024, wscale(20)), v: Accept, state: SynRecv, timeout: 60 * sec},
	})
	if s.c.Scale[0] != 14 || s.c.Scale[1] != 14 {
		t.Errorf("capped scales = %d/%d, want 14/14", s.c.Scale[0], s.c.Scale[1])
	}
}

func TestWindowScaleOnlyOneSide(t *testing.T) {
	// Scaling is off in both directions unless both SYNs carry the option:
	// the same data as in TestWindowScaleBothSYNs is then 99077 bytes
	// beyond the client's 1024-byte window, more than the overshoot
	// tolerance (the receiver's largest window), so invalid.
	for name, opts := range map[string][2][]segOpt{
		"client only": {{wscale(7)}, nil},
		"server only": {nil, {wscale(7)}},
	} {
		t.Run(name, func(t *testing.T) {
			s := &sim{}
			run(t, s, []row{
				{from: cli, p: seg("S", 1000, 0, 1024, opts[0]...), v: Accept, state: SynSent, timeout: 120 * sec},
				{from: srv, p: seg("SA", 5000, 1001, 1024, opts[1]...), v: Accept, state: SynRecv, timeout: 60 * sec},
				{from: cli, p: seg("A", 1001, 5001, 1024), v: Accept, state: Established, timeout: 5 * days, assured: true},
				{from: srv, p: seg("PA", 105001, 1001, 1024, data(100)), v: Invalid, reason: ReasonSeqBeyondWindow, state: Established, label: "invalid"},
			})
			if s.c.Scale[0] != 0 || s.c.Scale[1] != 0 {
				t.Errorf("scales = %d/%d, want 0/0", s.c.Scale[0], s.c.Scale[1])
			}
		})
	}
}

func TestDataBeyondWindowInvalid(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		// The client may send up to the server's ack + window = 9193.
		{from: cli, p: seg("PA", 21001, 5001, 8192, data(10)), v: Invalid, reason: ReasonSeqBeyondWindow, state: Established, label: "invalid"},
		// Nothing was learned from it: in-window data still passes.
		{from: cli, p: seg("PA", 1001, 5001, 8192, data(10)), v: Accept, state: Established, timeout: 300 * sec},
	}))
}

func TestOvershootIgnored(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		// Starts after the right edge (9193) but overshoots by only 108
		// bytes, less than the receiver's window: the kernel works around
		// such stacks. The packet is ignored (accepted, timer untouched)
		// but its end is recorded...
		{from: cli, p: seg("PA", 9200, 5001, 8192, data(100)), v: Ignore, reason: ReasonOvershoot, state: Established, label: "established"},
		// ...so the server's ACK for it is not "ACK for unsent data".
		{from: srv, p: seg("A", 5001, 9300, 8192), v: Accept, state: Established, timeout: 5 * days},
	}))
}

func TestAckOfUnsentDataInvalid(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		{from: cli, p: seg("A", 1001, 5101, 8192), v: Invalid, reason: ReasonAckUnsent, state: Established, label: "invalid"},
		{from: srv, p: seg("A", 5001, 1002, 8192), v: Invalid, reason: ReasonAckUnsent, state: Established, label: "invalid"},
	}))
}

func TestOldSegmentIgnored(t *testing.T) {
	var tooOldAck uint32 = 5001
	tooOldAck -= 70000 // wraps, as sequence numbers do
	// Windows of 1000 bytes, no scaling, so "older than a window" is easy
	// to reach.
	rows := []row{
		{from: cli, p: seg("S", 1000, 0, 1000), v: Accept, state: SynSent, timeout: 120 * sec},
		{from: srv, p: seg("SA", 5000, 1001, 1000), v: Accept, state: SynRecv, timeout: 60 * sec},
		{from: cli, p: seg("A", 1001, 5001, 1000), v: Accept, state: Established, timeout: 5 * days, assured: true},
	}
	for seq := uint32(1001); seq < 4001; seq += 1000 {
		rows = append(rows,
			row{from: cli, p: seg("PA", seq, 5001, 1000, data(1000)), v: Accept, state: Established, timeout: 300 * sec},
			row{from: srv, p: seg("A", 5001, seq+1000, 1000), v: Accept, state: Established, timeout: 5 * days},
		)
	}
	rows = append(rows,
		// 1001:2001 again: it ends before End (4001) - the server's window
		// (1000): "SEQ is under lower bound", ignored, not invalid.
		row{from: cli, p: seg("PA", 1001, 5001, 1000, data(1000)), v: Ignore, reason: ReasonSeqTooOld, state: Established, label: "established"},
		// An ACK more than MAXACKWINDOW (66000) below the server's End.
		row{from: cli, p: seg("A", 4001, tooOldAck, 1000), v: Ignore, reason: ReasonAckTooOld, state: Established},
		// Retransmission of the latest segment is still in window.
		row{from: cli, p: seg("PA", 3001, 5001, 1000, data(1000)), v: Accept, state: Established, timeout: 5 * days},
	)
	run(t, &sim{}, rows)
}

func TestSACKExtendsAck(t *testing.T) {
	prefix := func(serverSack bool) []row {
		var srvOpts []segOpt
		if serverSack {
			srvOpts = append(srvOpts, sackOK())
		}
		return []row{
			{from: cli, p: seg("S", 1000, 0, 8192, sackOK()), v: Accept, state: SynSent, timeout: 120 * sec},
			{from: srv, p: seg("SA", 5000, 1001, 8192, srvOpts...), v: Accept, state: SynRecv, timeout: 60 * sec},
			{from: cli, p: seg("A", 1001, 5001, 8192), v: Accept, state: Established, timeout: 5 * days, assured: true},
			{from: srv, p: seg("PA", 5001, 1001, 8192, data(1000)), v: Accept, state: Established, timeout: 300 * sec},
		}
	}
	t.Run("sack within sent data", func(t *testing.T) {
		s := &sim{}
		run(t, s, cat(prefix(true), []row{
			// ack 5001 with SACK 5501-6001: sack = 6001 = server End.
			// Still unacked data (ack != End): 300 s.
			{from: cli, p: seg("A", 1001, 5001, 8192, sack(5501, 6001)), v: Accept, state: Established, timeout: 300 * sec},
		}))
		// The sender's max window grows by sack - ack.
		if got := s.c.Peer[Original].MaxWin; got != 8192+1000 {
			t.Errorf("client MaxWin = %d, want %d", got, 8192+1000)
		}
	})
	t.Run("sack beyond sent data", func(t *testing.T) {
		run(t, &sim{}, cat(prefix(true), []row{
			// The highest right edge (6101) acknowledges data never sent.
			{from: cli, p: seg("A", 1001, 5001, 8192, sack(5501, 5601, 6001, 6101)), v: Invalid, reason: ReasonAckUnsent, state: Established},
		}))
	})
	t.Run("sack not permitted by the receiver", func(t *testing.T) {
		// The server did not send SACK-permitted: tcp_sack is not
		// consulted, the plain ack 5001 is fine.
		run(t, &sim{}, cat(prefix(false), []row{
			{from: cli, p: seg("A", 1001, 5001, 8192, sack(5501, 5601, 6001, 6101)), v: Accept, state: Established, timeout: 300 * sec},
		}))
	})
}

func TestRetransTimeout(t *testing.T) {
	ack := func() *packet.Packet { return seg("A", 1001, 5001, 8192) }
	run(t, &sim{}, cat(handshake(), []row{
		// The handshake's ACK recorded (dir, seq, ack, end, win); each
		// identical ACK counts as a retransmission.
		{from: cli, p: ack(), v: Accept, state: Established, timeout: 5 * days},
		{from: cli, p: ack(), v: Accept, state: Established, timeout: 5 * days},
		// Third retransmission: nf_conntrack_tcp_max_retrans (3) reached,
		// ESTABLISHED's 5 days are cut to timeout_max_retrans.
		{from: cli, p: ack(), v: Accept, state: Established, timeout: 300 * sec},
		{from: cli, p: ack(), v: Accept, state: Established, timeout: 300 * sec},
		// Anything different resets the count.
		{from: cli, p: seg("A", 1001, 5001, 8000), v: Accept, state: Established, timeout: 5 * days},
	}))
}

func TestZeroWindowTimeout(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		// A zero window recorded as the last window: 300 s, like
		// retransmissions.
		{from: srv, p: seg("A", 5001, 1001, 0), v: Accept, state: Established, timeout: 300 * sec},
		{from: srv, p: seg("A", 5001, 1001, 100), v: Accept, state: Established, timeout: 5 * days},
	}))
}

func TestUnackedDataTimeout(t *testing.T) {
	run(t, &sim{}, cat(handshake(), []row{
		{from: cli, p: seg("PA", 1001, 5001, 8192, data(100)), v: Accept, state: Established, timeout: 300 * sec},
		{from: srv, p: seg("A", 5001, 1101, 8192), v: Accept, state: Established, timeout: 5 * days},
		{from: srv, p: seg("PA", 5001, 1101, 8192, data(50)), v: Accept, state: Established, timeout: 300 * sec},
		// A partial ack leaves data unacked.
		{from: cli, p: seg("A", 1101, 5021, 8192), v: Accept, state: Established, timeout: 300 * sec},
		{from: cli, p: seg("A", 1101, 5051, 8192), v: Accept, state: Established, timeout: 5 * days},
	}))
}

func TestInvalidFinShrinksAssuredTimeout(t *testing.T) {
	s := &sim{}
	run(t, s, handshake())
	// An out-of-window FIN on an assured entry: invalid, remembered.
	r := Step(&s.c, seg("FA", 51001, 5001, 8192), Original, s.st, nil)
	if r.Verdict != Invalid || r.Reason != ReasonSeqBeyondWindow || r.ShrinkTo != 0 {
		t.Fatalf("first bad FIN: %+v", r)
	}
	// Then one from the other side: conntrack and the endpoints disagree,
	// shrink the timer to the unacknowledged timeout.
	r = Step(&s.c, seg("FA", 55001, 1001, 8192), Reply, s.st, nil)
	if r.Verdict != Invalid || r.ShrinkTo != 300*sec {
		t.Fatalf("second bad FIN: %+v, want invalid with ShrinkTo 300s", r)
	}
	for _, tc := range []struct {
		remaining, want time.Duration
		changed         bool
	}{
		{5 * days, 300 * sec, true},
		{400 * sec, 300 * sec, true},
		{300 * sec, 300 * sec, false},
		{200 * sec, 200 * sec, false},
		{100 * sec, 100 * sec, false}, // below 120 s: left alone
	} {
		if got, changed := r.Shrink(tc.remaining); got != tc.want || changed != tc.changed {
			t.Errorf("Shrink(%v) = %v, %v; want %v, %v", tc.remaining, got, changed, tc.want, tc.changed)
		}
	}
	// Not assured: never shrinks.
	s = &sim{}
	run(t, s, handshake()[:2])
	s.st.Assured = false
	Step(&s.c, seg("FA", 51001, 5001, 8192), Original, s.st, nil)
	if r := Step(&s.c, seg("FA", 55001, 1001, 8192), Reply, s.st, nil); r.ShrinkTo != 0 {
		t.Errorf("unassured entry: ShrinkTo = %v, want 0", r.ShrinkTo)
	}
}

func TestTransitionTable(t *testing.T) {
	// Cells that carry the kernel's policy decisions, each with the
	// kernel's own comment.
	for _, tc := range []struct {
		dir  Dir
		idx  Index
		from State
		to   State
		v    Verdict
	}{
		{Original, IndexSyn, None, SynSent, Accept},            // Initialize a new connection
		{Original, IndexSyn, SynSent, SynSent, Accept},         // Retransmitted SYN
		{Original, IndexSyn, Established, Established, Ignore}, // SYNs in window outside SYN_SENT
		{Original, IndexSyn, TimeWait, SynSent, Accept},        // Reopened connection (RFC 1122)
		{Original, IndexSyn, Close, SynSent, Accept},           //
		{Original, IndexSyn, SynSent2, SynSent2, Accept},       // Late retransmitted SYN
		{Original, IndexSynAck, SynSent, SynSent, Invalid},     // Client can't send SYN and then SYN/ACK
		{Original, IndexSynAck, SynSent2, SynRecv, Accept},     // SYN/ACK sent to SYN2 in simultaneous open
		{Original, IndexSynAck, Established, Established, Invalid},
		{Original, IndexFin, SynSent, SynSent, Invalid},    // enforce waiting for a SYN/ACK reply first
		{Original, IndexFin, Established, FinWait, Accept}, // Close started
		{Original, IndexFin, FinWait, LastAck, Accept},     // FIN seen in both directions
		{Original, IndexAck, None, Established, Accept},    // Assumed (loose pickup)
		{Original, IndexAck, SynSent, SynSent, Invalid},    // we haven't seen a SYN/ACK yet
		{Original, IndexAck, SynRecv, Established, Accept}, // Established state is reached
		{Original, IndexAck, LastAck, TimeWait, Accept},    // Last ACK detected
		{Original, IndexRst, None, None, Invalid},          //
		{Original, IndexRst, Established, Close, Accept},   //
		{Original, IndexNone, Established, Established, Invalid},
		{Reply, IndexSyn, None, None, Invalid},                 // Never reached
		{Reply, IndexSyn, SynSent, SynSent2, Accept},           // Simultaneous open
		{Reply, IndexSyn, SynRecv, SynRecv, Invalid},           // Invalid SYN packets sent by the server
		{Reply, IndexSyn, TimeWait, SynSent, Accept},           // server may have switched role
		{Reply, IndexSyn, Close, Close, Invalid},               //
		{Reply, IndexSynAck, SynSent, SynRecv, Accept},         // Standard open
		{Reply, IndexSynAck, SynRecv, SynRecv, Ignore},         // Retransmitted SYN/ACK, ignore it
		{Reply, IndexSynAck, Established, Established, Ignore}, // Late retransmitted SYN/ACK?
		{Reply, IndexFin, SynSent, SynSent, Invalid},           // Server might not send FIN in this state
		{Reply, IndexAck, SynSent, SynSent, Ignore},            // Might be a half-open connection
		{Reply, IndexAck, SynSent2, SynSent2, Ignore},          //
		{Reply, IndexAck, SynRecv, SynRecv, Accept},            // Might answer late resent SYN
		{Reply, IndexRst, SynSent, Close, Accept},              //
		{Reply, IndexNone, SynSent, SynSent, Invalid},          //
	} {
		to, v := Transition(tc.dir, tc.idx, tc.from)
		if to != tc.to || v != tc.v {
			t.Errorf("Transition(%d, %v, %v) = %v %v; want %v %v", tc.dir, tc.idx, tc.from, to, v, tc.to, tc.v)
		}
	}
	// Shape: RST closes from every state but NONE; index none is always
	// invalid; no cell leaves the state range.
	for dir := Original; dir <= Reply; dir++ {
		for s := State(0); s < NumStates; s++ {
			if to, v := Transition(dir, IndexRst, s); (s == None) != (v == Invalid) || (v == Accept && to != Close) {
				t.Errorf("Transition(%d, rst, %v) = %v %v", dir, s, to, v)
			}
			if _, v := Transition(dir, IndexNone, s); v != Invalid {
				t.Errorf("Transition(%d, none, %v) = %v, want invalid", dir, s, v)
			}
			for idx := IndexSyn; idx <= IndexNone; idx++ {
				if to, _ := Transition(dir, idx, s); to >= NumStates {
					t.Errorf("Transition(%d, %v, %v) = state %d out of range", dir, idx, s, to)
				}
			}
		}
	}
	if to, v := Transition(2, IndexSyn, None); v != Invalid || to != None {
		t.Errorf("Transition(bad dir) = %v %v, want invalid", to, v)
	}
	if _, v := Transition(Original, IndexSyn, NumStates); v != Invalid {
		t.Errorf("Transition(bad state) = %v, want invalid", v)
	}
}

func TestFlagIndex(t *testing.T) {
	for _, tc := range []struct {
		flags string
		want  Index
	}{
		{"S", IndexSyn}, {"SU", IndexSyn}, {"SA", IndexSynAck}, {"SAE", IndexSynAck},
		{"FA", IndexFin}, {"F", IndexFin}, {"A", IndexAck}, {"PA", IndexAck},
		{"R", IndexRst}, {"RA", IndexRst}, {"SR", IndexRst}, {"FR", IndexRst},
		{"", IndexNone}, {"PU", IndexNone},
	} {
		if got := FlagIndex(seg(tc.flags, 0, 0, 0).TCPFlags); got != tc.want {
			t.Errorf("FlagIndex(%q) = %v, want %v", tc.flags, got, tc.want)
		}
	}
}

func TestStrings(t *testing.T) {
	for r := Reason(1); r < numReasons; r++ {
		if r.String() == "" {
			t.Errorf("Reason(%d) has no text", r)
		}
	}
	if ReasonNone.String() != "" || Reason(200).String() != "reason?" {
		t.Error("ReasonNone or out-of-range Reason text")
	}
	if Ignore.String() != "ignore" || Verdict(9).String() != "verdict?" {
		t.Error("Verdict text")
	}
	if IndexSynAck.String() != "synack" || Index(9).String() != "index?" {
		t.Error("Index text")
	}
}

func TestCorruptConnIsInvalidNotPanic(t *testing.T) {
	c := Conn{State: NumStates + 3, LastDir: 7}
	if r := Step(&c, seg("A", 1, 1, 1), 5, Status{}, nil); r.Verdict != Invalid || r.Reason != ReasonBadState {
		t.Errorf("corrupt state: %+v", r)
	}
}
