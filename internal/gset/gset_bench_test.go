package gset

// These benchmarks use only the exported API, so the same file runs against
// an older representation built from another commit (docs/benchmarks.md has
// the command that compares them in one run).

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/likesd/likesd/internal/benchcpu"
)

// shortID is the 8-byte id of the memory datasets ("u0001234").
func shortID(r *rand.Rand) string { return fmt.Sprintf("u%07d", r.IntN(10_000_000)) }

// uuid is a random UUID in its 36-byte text form.
func uuid(r *rand.Rand) string {
	a, b := r.Uint64(), r.Uint64()
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, a>>16&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

var benchSizes = []int{100, 10_000, 1_000_000}

// builtCache keeps the sets built for each size, so the benchmark's b.N
// ramp does not rebuild a 1M-member set at every step. Benchmarks that
// change a set work on a Clone (O(1) in both representations).
var builtCache = map[int]struct {
	s  Set
	ms []string
}{}

func built(n int, id func(*rand.Rand) string) (Set, []string) {
	if c, ok := builtCache[n]; ok {
		return c.s.Clone(), c.ms
	}
	s, ms := build(n, id)
	builtCache[n] = struct {
		s  Set
		ms []string
	}{s, ms}
	return s.Clone(), ms
}

func build(n int, id func(*rand.Rand) string) (Set, []string) {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	var s Set
	ms := make([]string, 0, n)
	for s.Len() < n {
		m := id(r)
		if s.Add(m) {
			ms = append(ms, m)
		}
	}
	return s, ms
}

func BenchmarkAdd(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := built(n, shortID)
			fresh := make([]string, b.N)
			for i := range fresh {
				fresh[i] = fmt.Sprintf("u%07d-%d", (i*7919)%10_000_000, i) // new, spread among the members
			}
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					if !s.Add(fresh[i]) {
						b.Fatal("not new")
					}
				}
			})
		})
	}
}

func BenchmarkHas(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, ms := built(n, shortID)
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					if !s.Has(ms[(i*7919)%len(ms)]) {
						b.Fatal("missing")
					}
				}
			})
		})
	}
}

func BenchmarkPage100(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, ms := built(n, shortID)
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					s.Page(ms[(i*7919)%len(ms)], 100)
				}
			})
		})
	}
}

// BenchmarkAppendBlocks and BenchmarkDecodeBlocks: the block form a
// snapshot on disk holds (internal/wal).
func BenchmarkAppendBlocks(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := built(n, shortID)
			buf := s.AppendBlocks(nil)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					buf = s.AppendBlocks(buf[:0])
				}
			})
		})
	}
}

func BenchmarkDecodeBlocks(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := built(n, shortID)
			buf := s.AppendBlocks(nil)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					if _, _, err := DecodeBlocks(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkMerge: a remote set of 1,000 members (half new) into one of n.
func BenchmarkMerge(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, ms := built(n, shortID)
			r := rand.New(rand.NewPCG(2, 2))
			var o Set
			for i := 0; o.Len() < 1000; i++ {
				if i%2 == 0 {
					o.Add(ms[r.IntN(len(ms))])
				} else {
					o.Add(fmt.Sprintf("w%07d", r.IntN(10_000_000)))
				}
			}
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					c := s.Clone()
					b.StartTimer()
					c.Merge(o)
				}
			})
		})
	}
}

// BenchmarkCloneThenAdd: the copy-on-write cost a snapshot puts on the next
// like of a set of n members.
func BenchmarkCloneThenAdd(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := built(n, shortID)
			b.ReportAllocs()
			benchcpu.Report(b, func() {
				for i := 0; i < b.N; i++ {
					_ = s.Clone()
					s.Add(fmt.Sprintf("c%d", i))
				}
			})
		})
	}
}

// BenchmarkMemory reports the live heap per member of many sets built by
// Add: 10,000 sets of 100 (S1's shape) and one set of 1M, with 8-byte ids
// and 36-byte UUIDs. The time per op is meaningless; heapB/member is the
// figure.
func BenchmarkMemory(b *testing.B) {
	for _, tc := range []struct {
		name      string
		sets, per int
		id        func(*rand.Rand) string
	}{
		{"10000x100/short", 10_000, 100, shortID},
		{"1x1M/short", 1, 1_000_000, shortID},
		{"10000x100/uuid", 10_000, 100, uuid},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := rand.New(rand.NewPCG(3, 3))
				before := liveHeap()
				sets := make([]Set, tc.sets)
				for j := range tc.sets * tc.per {
					sets[j%tc.sets].Add(tc.id(r)) // the set keeps the only reference
				}
				after := liveHeap()
				n := 0
				for _, s := range sets {
					n += s.Len()
				}
				b.ReportMetric(float64(after-before)/float64(n), "heapB/member")
				runtime.KeepAlive(sets)
			}
		})
	}
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
