package cluster

import (
	"strconv"
	"testing"

	"github.com/likesd/likesd/internal/store"
)

func benchLikes(n int) []store.Like {
	out := make([]store.Like, n)
	for i := range out {
		out[i] = store.Like{Post: "post-" + strconv.Itoa(i%100), User: "user-" + strconv.Itoa(i)}
	}
	return out
}

// BenchmarkFrameEncode: packing likes into 64 KiB direct batches.
func BenchmarkFrameEncode(b *testing.B) {
	likes := benchLikes(1000)
	fb := newFrameBuilder(64<<10, msgLikes, "node-1", 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(likes)))
	for i := 0; i < b.N; i++ {
		for j, l := range likes {
			if !fb.fits(l) {
				fb.take()
			}
			fb.add(uint64(j+1), l)
		}
		fb.take()
	}
}

// BenchmarkFrameDecode: one gossip-sized frame.
func BenchmarkFrameDecode(b *testing.B) {
	fb := newFrameBuilder(1400-frameOverhead, msgLikes, "node-1", 1)
	n := 0
	for _, l := range benchLikes(1000) {
		if !fb.fits(l) {
			break
		}
		n++
		fb.add(uint64(n), l)
	}
	frame, _ := fb.take()
	b.ReportAllocs()
	b.ReportMetric(float64(n), "likes/frame")
	for i := 0; i < b.N; i++ {
		if _, err := decodeFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}
