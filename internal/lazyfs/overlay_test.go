package lazyfs

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// memFile is a durable file in memory.
type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Truncate(size int64) error {
	if size <= int64(len(m.b)) {
		m.b = m.b[:size]
		return nil
	}
	m.b = append(m.b, make([]byte, size-int64(len(m.b)))...)
	return nil
}

// TestOverlayAgainstReference runs seeded random writes, truncates, syncs
// and crashes on an overlay and on a naive model (two byte slices: what a
// reader sees, what is durable) and compares every read and every durable
// state.
func TestOverlayAgainstReference(t *testing.T) {
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 1))
		disk := &memFile{b: randBytes(rng, rng.IntN(64))}
		o := newOverlay(int64(len(disk.b)))
		want := bytes.Clone(disk.b) // what a reader sees
		var pending int64           // an upper bound on what a cut drops
		for step := range 60 {
			switch k := rng.IntN(20); {
			case k < 10: // write, often an append
				off := int64(rng.IntN(96))
				if rng.IntN(2) == 0 {
					off = int64(len(want))
				}
				p := randBytes(rng, 1+rng.IntN(24))
				o.write(p, off)
				if end := off + int64(len(p)); end > int64(len(want)) {
					want = append(want, make([]byte, end-int64(len(want)))...)
				}
				copy(want[off:], p)
				pending += int64(len(p))
			case k < 13:
				size := int64(rng.IntN(96))
				o.truncate(size)
				if size <= int64(len(want)) {
					want = want[:size]
				} else {
					want = append(want, make([]byte, size-int64(len(want)))...)
				}
			case k < 16: // fsync
				if err := o.apply(disk); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(disk.b, want) {
					t.Fatalf("seed %d step %d: durable after sync\n got %v\nwant %v", seed, step, disk.b, want)
				}
				if o.pending() != 0 {
					t.Fatalf("seed %d step %d: pending %d after sync", seed, step, o.pending())
				}
				pending = 0
			case k < 17: // power cut: only the durable file is left
				if o.pending() > pending {
					t.Fatalf("seed %d step %d: pending %d, more than the %d written", seed, step, o.pending(), pending)
				}
				o = newOverlay(int64(len(disk.b)))
				want = bytes.Clone(disk.b)
				pending = 0
			default:
				off := int64(rng.IntN(100))
				got := make([]byte, rng.IntN(40))
				n, err := o.read(got, off, disk)
				var exp []byte
				if off < int64(len(want)) {
					exp = want[off:min(int64(len(want)), off+int64(len(got)))]
				}
				if (err == io.EOF) != (off >= int64(len(want))) || (err != nil && err != io.EOF) {
					t.Fatalf("seed %d step %d: read at %d of %d bytes: err %v", seed, step, off, len(want), err)
				}
				if !bytes.Equal(got[:n], exp) {
					t.Fatalf("seed %d step %d: read at %d\n got %v\nwant %v", seed, step, off, got[:n], exp)
				}
			}
			if o.size != int64(len(want)) {
				t.Fatalf("seed %d step %d: size %d, want %d", seed, step, o.size, len(want))
			}
			for i := 1; i < len(o.ext); i++ {
				if o.ext[i-1].end() >= o.ext[i].off {
					t.Fatalf("seed %d step %d: extents overlap or touch: %d..%d, %d", seed, step, o.ext[i-1].off, o.ext[i-1].end(), o.ext[i].off)
				}
			}
		}
	}
}

// TestOverlayTruncateThenGrow: bytes a truncate cut off stay zeros when the
// file grows again, also in the durable file after a sync (a sync that only
// wrote the extents and the final size would bring them back).
func TestOverlayTruncateThenGrow(t *testing.T) {
	disk := &memFile{b: []byte("abcdefgh")}
	o := newOverlay(8)
	o.truncate(2)
	o.write([]byte("Z"), 6)
	want := []byte("ab\x00\x00\x00\x00Z")
	got := make([]byte, 10)
	n, _ := o.read(got, 0, disk)
	if !bytes.Equal(got[:n], want) {
		t.Fatalf("read %q, want %q", got[:n], want)
	}
	if err := o.apply(disk); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk.b, want) {
		t.Fatalf("durable %q, want %q", disk.b, want)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + rng.IntN(26))
	}
	return p
}
