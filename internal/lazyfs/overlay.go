package lazyfs

import (
	"io"
	"slices"
)

// durableFile is what an overlay is applied to: the backing file.
type durableFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

// extent is a run of bytes written since the last sync.
type extent struct {
	off  int64
	data []byte
}

func (e extent) end() int64 { return e.off + int64(len(e.data)) }

// overlay is one file's writes and truncates since its last sync, over its
// durable content. The content a reader sees is: the extents, over bytes
// [0, keep) of the durable file, over zeros, cut at size. keep is the
// smallest size the file had since the sync: a truncate forgets durable
// bytes past it even if the file grows again.
//
// An overlay is a value with no lock and no I/O but what read and apply are
// handed; the FUSE layer guards it.
type overlay struct {
	durable int64    // size of the durable file
	keep    int64    // durable bytes still visible, <= durable
	size    int64    // size a reader sees
	ext     []extent // sorted by off, neither overlapping nor touching
	changed bool     // a write or truncate since the last sync
}

func newOverlay(durable int64) overlay {
	return overlay{durable: durable, keep: durable, size: durable}
}

// write records p at off.
func (o *overlay) write(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	o.changed = true
	end := off + int64(len(p))
	o.size = max(o.size, end)
	// The common case of a log: appending right after the last extent.
	if n := len(o.ext); n > 0 && o.ext[n-1].end() == off {
		o.ext[n-1].data = append(o.ext[n-1].data, p...)
		return
	}
	// First and last extent index that overlap or touch [off, end).
	i := slices.IndexFunc(o.ext, func(e extent) bool { return e.end() >= off })
	if i < 0 {
		i = len(o.ext)
	}
	j := i
	for j < len(o.ext) && o.ext[j].off <= end {
		j++
	}
	if i == j {
		o.ext = slices.Insert(o.ext, i, extent{off: off, data: slices.Clone(p)})
		return
	}
	start := min(off, o.ext[i].off)
	stop := max(end, o.ext[j-1].end())
	merged := make([]byte, stop-start)
	for _, e := range o.ext[i:j] {
		copy(merged[e.off-start:], e.data)
	}
	copy(merged[off-start:], p)
	o.ext = slices.Replace(o.ext, i, j, extent{off: start, data: merged})
}

// truncate sets the size, dropping written bytes past it.
func (o *overlay) truncate(size int64) {
	o.changed = true
	o.size = size
	o.keep = min(o.keep, size)
	for len(o.ext) > 0 {
		last := &o.ext[len(o.ext)-1]
		if last.off >= size {
			o.ext = o.ext[:len(o.ext)-1]
			continue
		}
		if last.end() > size {
			last.data = last.data[:size-last.off]
		}
		break
	}
}

// read fills p from off as a reader sees the file; it returns io.EOF only
// when off is at or past the end.
func (o *overlay) read(p []byte, off int64, durable io.ReaderAt) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), o.size-off)]
	end := off + int64(len(p))
	// Durable bytes, then zeros, then the extents on top.
	n := 0
	if off < o.keep {
		want := int(min(end, o.keep) - off)
		got, err := durable.ReadAt(p[:want], off)
		if got < want {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF // the backing file shrank under us
			}
			return 0, err
		}
		n = want
	}
	clear(p[n:])
	for _, e := range o.ext {
		if e.end() <= off || e.off >= end {
			continue
		}
		from, to := max(e.off, off), min(e.end(), end)
		copy(p[from-off:to-off], e.data[from-e.off:to-e.off])
	}
	return len(p), nil
}

// pending is the number of written bytes a power cut would drop.
func (o *overlay) pending() int64 {
	var n int64
	for _, e := range o.ext {
		n += int64(len(e.data))
	}
	return n
}

// apply makes f hold what a reader sees, and empties the overlay. The
// caller syncs f. On error the overlay is kept: it still describes the
// content over what was durable before, whatever part of it f now holds,
// since the reader never sees durable bytes past keep.
func (o *overlay) apply(f durableFile) error {
	if !o.changed {
		return nil
	}
	cur := o.durable
	if o.keep < cur {
		if err := f.Truncate(o.keep); err != nil {
			return err
		}
		cur = o.keep
	}
	for _, e := range o.ext {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			return err
		}
		cur = max(cur, e.end())
	}
	if cur != o.size {
		if err := f.Truncate(o.size); err != nil {
			return err
		}
	}
	*o = newOverlay(o.size)
	return nil
}
