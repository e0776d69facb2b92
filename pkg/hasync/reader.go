package hasync

import (
	"bufio"
	"encoding/binary"
	"net"
	"time"
)

// frameReader reads one side's frames from a session, in place: its one
// buffer holds a whole frame (MaxFrame), which is all a peer can make it
// hold, and a frame is read only after its header passed parseHeader (an
// oversized one is refused unread).
type frameReader struct {
	br   *bufio.Reader
	conn net.Conn
	dead time.Duration
	last uint64 // the last seq read
}

func newFrameReader(conn net.Conn, dead time.Duration) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(conn, MaxFrame), conn: conn, dead: dead}
}

// next returns the next frame and its size. The frame is valid until the
// next call. Every frame must come within dead of the call (a silent
// peer times out), with the seq after the last.
func (r *frameReader) next() (frame, int, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(r.dead))
	hb, err := r.br.Peek(headerSize)
	if err != nil {
		return frame{}, 0, err
	}
	h, err := parseHeader(hb)
	if err != nil {
		return frame{}, 0, err
	}
	size := headerSize + int(h.length)
	b, err := r.br.Peek(size)
	if err != nil {
		return frame{}, 0, err
	}
	f, _, err := parseFrame(b)
	if err != nil {
		return frame{}, 0, err
	}
	switch {
	case f.seq <= r.last:
		return frame{}, 0, protoErr(ReasonReplayed, "%s seq %d after seq %d", typeName(f.typ), f.seq, r.last)
	case f.seq != r.last+1:
		return frame{}, 0, protoErr(ReasonGarbage, "%s seq %d after seq %d: frames missing", typeName(f.typ), f.seq, r.last)
	}
	r.last = f.seq
	// Discard only moves the read position: b stays valid until the next
	// Peek fills the buffer again.
	_, _ = r.br.Discard(size)
	return f, size, nil
}

// ready reports whether a whole frame is buffered, so that next would not
// block: the receiver flushes its acks before it would.
func (r *frameReader) ready() bool {
	if r.br.Buffered() < headerSize {
		return false
	}
	hb, _ := r.br.Peek(headerSize)
	n := binary.LittleEndian.Uint32(hb[8:])
	return n > maxBody || r.br.Buffered() >= headerSize+int(n)
}
