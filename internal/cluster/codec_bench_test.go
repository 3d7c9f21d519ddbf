package cluster

import (
	"strconv"
	"testing"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

func benchLikes(n int) []store.Like {
	out := make([]store.Like, n)
	for i := range out {
		out[i] = store.Like{Post: "post-" + strconv.Itoa(i%100), User: "user-" + strconv.Itoa(i)}
	}
	return out
}

// BenchmarkFrameEncode: packing likes into 1400-byte gossip frames.
func BenchmarkFrameEncode(b *testing.B) {
	likes := benchLikes(1000)
	fb := newFrameBuilder(1400 - frameOverhead)
	b.ReportAllocs()
	b.SetBytes(int64(len(likes)))
	for i := 0; i < b.N; i++ {
		for _, l := range likes {
			if !fb.fits(l) {
				fb.take()
			}
			fb.add(l)
		}
		fb.take()
	}
}

// BenchmarkFrameDecode: one full frame.
func BenchmarkFrameDecode(b *testing.B) {
	fb := newFrameBuilder(1400 - frameOverhead)
	n := 0
	for _, l := range benchLikes(1000) {
		if !fb.fits(l) {
			break
		}
		fb.add(l)
		n++
	}
	frame, _ := fb.take()
	b.ReportAllocs()
	b.ReportMetric(float64(n), "likes/frame")
	for i := 0; i < b.N; i++ {
		if _, err := decodeLikes(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStateEncode: the full-state push/pull payload at 100k likes.
func BenchmarkStateEncode(b *testing.B) {
	st := stateOf{}
	for p := 0; p < 100; p++ {
		var s gset.Set
		for u := 0; u < 1000; u++ {
			s.Add("user-" + strconv.Itoa(u))
		}
		st["post-"+strconv.Itoa(p)] = s
	}
	b.ReportAllocs()
	var size int
	for i := 0; i < b.N; i++ {
		size = len(encodeState(st))
	}
	b.ReportMetric(float64(size), "bytes/state")
}
