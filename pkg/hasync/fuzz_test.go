package hasync

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzDecode: whatever a peer sends, the decoder returns a frame or a
// ProtocolError, never panics, and reads nothing past the frame it
// reports (it allocates nothing: TestDecodeNoAllocs); every frame it
// accepts encodes back to the same bytes with the encoders the sender
// uses; and a session's frame reader over the same bytes agrees with it.
func FuzzDecode(f *testing.F) {
	recs := testRecords(f, 12)
	del := newBatch(typeDelete)
	for i := range recs {
		k, _ := recs[i].Key()
		del.addKey(k)
	}
	f.Add(appendHello(nil, 1, hello{version: Version, limit: 1 << 18, session: [16]byte{9}, name: "b"}))
	f.Add(recordsFrames(recs, 1, flagAck|flagBulk))
	f.Add(del.frame(1, flagAck))
	f.Add(appendValue(nil, typeAck, 0, 1, 7))
	f.Add(appendValue(nil, typeBulkStart, 0, 1, 12))
	f.Add(appendValue(appendValue(nil, typeBulkEnd, flagAck, 1, 12), typeKeepalive, 0, 2, 0))
	f.Add(appendKeepalive(appendKeepalive(nil, 1), 2))
	f.Add([]byte("SWSY\x01\x02\x00\x00\xff\xff\xff\xff\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var frames []frame
		var sizes []int
		rest := b
		for len(rest) > 0 {
			fr, n, err := parseFrame(rest)
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Reason >= numReasons {
					t.Fatalf("error %v is not a ProtocolError", err)
				}
				break
			}
			if n < headerSize || n > MaxFrame || n > len(rest) {
				t.Fatalf("frame of %d bytes from %d", n, len(rest))
			}
			if got := reencode(t, &fr); !bytes.Equal(got, rest[:n]) {
				t.Fatalf("%s re-encodes as\n%x\nnot\n%x", typeName(fr.typ), got, rest[:n])
			}
			frames, sizes = append(frames, fr), append(sizes, n)
			rest = rest[n:]
		}
		// A session's reader reads the same frames, as long as their seqs
		// follow each other from 1.
		r := newFrameReader(readerConn{bytes.NewReader(b)}, time.Second)
		for i, want := range frames {
			got, n, err := r.next()
			if want.seq != uint64(i+1) {
				if err == nil {
					t.Fatalf("frame %d: seq %d read after seq %d", i, want.seq, i)
				}
				return
			}
			if err != nil || n != sizes[i] || got.header != want.header || !bytes.Equal(got.body, want.body) {
				t.Fatalf("frame %d: reader got %+v (%d bytes, %v), parseFrame %+v", i, got.header, n, err, want.header)
			}
		}
		if _, _, err := r.next(); err == nil {
			t.Fatal("reader read a frame parseFrame refused")
		}
	})
}

// readerConn is a net.Conn that reads from a reader, for frameReader.
type readerConn struct{ r io.Reader }

func (c readerConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c readerConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c readerConn) Close() error                       { return nil }
func (c readerConn) LocalAddr() net.Addr                { return memAddr("local") }
func (c readerConn) RemoteAddr() net.Addr               { return memAddr("remote") }
func (c readerConn) SetDeadline(t time.Time) error      { return nil }
func (c readerConn) SetReadDeadline(t time.Time) error  { return nil }
func (c readerConn) SetWriteDeadline(t time.Time) error { return nil }

// reencode encodes f again with the encoders, using only what its
// accessors say, touching every record and key on the way.
func reencode(t *testing.T, f *frame) []byte {
	switch f.typ {
	case typeHello:
		return appendHello(nil, f.seq, f.hello())
	case typeRecords:
		bt := newBatch(typeRecords)
		for i := range f.count() {
			r := f.record(i)
			_, _ = r.Key()
			bt.addRecord(r)
		}
		return bytes.Clone(bt.frame(f.seq, f.flags))
	case typeDelete:
		bt := newBatch(typeDelete)
		for i := range f.count() {
			if k, err := f.key(i); err == nil {
				bt.addKey(k)
			} else {
				copy(bt.next(), f.body[4+i*keySize:4+(i+1)*keySize])
			}
		}
		return bytes.Clone(bt.frame(f.seq, f.flags))
	case typeAck, typeBulkStart, typeBulkEnd:
		return appendValue(nil, f.typ, f.flags, f.seq, f.value())
	case typeKeepalive:
		return appendKeepalive(nil, f.seq)
	}
	t.Fatalf("accepted frame type %d", f.typ)
	return nil
}
