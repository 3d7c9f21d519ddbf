package wal

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkLikeDurable is the store's path of a new like with the log on a
// real disk (b.TempDir): append under the shard lock, then wait for the
// sync that covers it. With -cpu N, N writers share syncs (group commit).
func BenchmarkLikeDurable(b *testing.B) {
	cfg := DefaultConfig(b.TempDir())
	l, st, _ := open(b, cfg)
	defer closeLog(b, l)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		post := "p" + strconv.Itoa(int(l.appended)) // a post per goroutine, roughly
		for pb.Next() {
			i++
			st.Like(post, "user-"+strconv.Itoa(i))
			if err := st.WaitDurable(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	s := l.Stats()
	require.NotZero(b, s.Syncs)
	b.ReportMetric(float64(s.Appended)/float64(s.Syncs), "likes/sync")
}

// BenchmarkAppend is the part of a like paid under the shard lock.
func BenchmarkAppend(b *testing.B) {
	l, _, _ := open(b, DefaultConfig(b.TempDir()))
	defer closeLog(b, l)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Append("post-1234", "user-0001234")
	}
}
