package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/loadgen"
)

func TestDatasetsHoldDistinctLikes(t *testing.T) {
	for _, d := range datasets() {
		var sum int64
		for _, c := range d.counts {
			sum += int64(c)
		}
		require.Equal(t, d.total, sum, d.name)
		assert.Len(t, d.user(12345), d.idBytes, d.name)
	}
	s3 := datasets()[2]
	assert.InDelta(t, 1_000_000, s3.counts[0], 50_000, "S3's largest post has ~1M likers")
	seen := make(map[uint32]bool, s3.counts[0])
	for r := 0; r < s3.counts[0]; r++ {
		u := loadgen.Permute(uint32(r), 0)
		require.Less(t, u, uint32(userPool))
		require.False(t, seen[u], "liker %d repeats", r)
		seen[u] = true
	}
}

func TestLikesYieldsTheWholeDataset(t *testing.T) {
	d := uniform("t", "", 30, 7, shortUser, 8)
	d.counts[3] = 20
	d.total += 13
	got := map[[2]string]bool{}
	for p, u := range d.likes() {
		got[[2]string{p, u}] = true
	}
	assert.Len(t, got, int(d.total))
}
