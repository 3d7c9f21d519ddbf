package main

import (
	"bufio"
	"context"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The recovery dataset's first likes are S2's: a uniform dataset with more
// likers per post yields the smaller one's likes first, in the same order.
func TestMoreLikersPerPostStartWithTheSmallerDataset(t *testing.T) {
	small := uniform("small", "", 50, 3, shortUser, 8)
	big := uniform("big", "", 50, 4, shortUser, 8)
	next, stop := iter.Pull2(big.likes())
	defer stop()
	for post, user := range small.likes() {
		gotPost, gotUser, ok := next()
		require.True(t, ok)
		require.Equal(t, post+" "+user, gotPost+" "+gotUser)
	}
	rest := 0
	for _, _, ok := next(); ok; _, _, ok = next() {
		rest++
	}
	assert.Equal(t, 50, rest)
	data := recoveryData()
	assert.Equal(t, int64(11_000_000), data.total)
	assert.Equal(t, 100_000, data.posts)
}

func TestParseRecoveredReadsTheRecoveryLine(t *testing.T) {
	log := `{"level":"info","node":"n1","component":"wal","time":"x","message":"likesd started"}
{"level":"info","component":"wal","generation":3,"snapshot":"0000000000000002-00000001.snap","snapshot_likes":10000000,"segments":2,"records":1000000,"torn_tails":0,"set_aside":[],"incomplete":false,"took":1234.5,"time":"x","message":"recovered the data dir"}
`
	got, ok := parseRecovered([]byte(log))
	require.True(t, ok)
	assert.Equal(t, recovered{Took: 1234.5, SnapshotLikes: 10_000_000, Records: 1_000_000, Segments: 2}, got)
	_, ok = parseRecovered([]byte(`{"message":"likesd started"}`))
	assert.False(t, ok)
}

func TestWriteSummaryComparesRoundsWithInMemory(t *testing.T) {
	ps := []point{
		{mode: 0, round: 0, rate: 1000, p99: 20 * time.Millisecond},
		{mode: 1, round: 0, rate: 900, p99: 24 * time.Millisecond},
		{mode: 2, round: 0, rate: 1000, p99: 10 * time.Millisecond},
		{mode: 2, round: 1, rate: 500, p99: 30 * time.Millisecond},
		{mode: 1, round: 1, rate: 700, p99: 20 * time.Millisecond},
		{mode: 0, round: 1, rate: 1000, p99: 40 * time.Millisecond},
	}
	want := []string{
		"| in memory | 1000 | **1.00** (1.00, 1.00) | 20ms, 40ms | 1.00 | (the baseline) |",
		"| `--data-dir`, `--fsync always` | 800 | **0.80** (0.90, 0.70) | 24ms, 20ms | 0.60 | rate met, p99 met |",
		"| `--data-dir`, `--fsync interval` (100ms) | 750 | **0.75** (1.00, 0.50) | 10ms, 30ms | 0.75 | rate **missed**, p99 **missed** |",
	}
	got := strings.Split(strings.TrimSpace(writeSummary(ps)), "\n")
	require.Len(t, got, 2+len(want))
	assert.Equal(t, want, got[2:])
}

func TestSpliceMarkedReplacesOnlyItsSection(t *testing.T) {
	doc := "# Benchmarks\n\nA\n\n<!-- s -->\nold\n<!-- e -->\n\nB\n"
	assert.Equal(t, "# Benchmarks\n\nA\n\n<!-- s -->\nnew\n<!-- e -->\n\nB\n", spliceMarked(doc, "<!-- s -->", "<!-- e -->", "<!-- s -->\nnew\n<!-- e -->\n"))
	assert.Equal(t, "# Benchmarks\n\nA\n\nnew section\n", spliceMarked("# Benchmarks\n\nA\n", "<!-- s -->", "<!-- e -->", "new section\n"))
}

func TestRedisReplies(t *testing.T) {
	assert.Equal(t, "*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n", string(appendCommand(nil, "INFO", "persistence")))
	br := bufio.NewReader(strings.NewReader("+PONG\r\n-LOADING Redis is loading\r\n:100000\r\n$24\r\n# Persistence\r\nloading:0\r\n$-1\r\n"))
	got, err := readReply(br)
	require.NoError(t, err)
	assert.Equal(t, "PONG", got)
	_, err = readReply(br)
	assert.ErrorContains(t, err, "LOADING")
	got, err = readReply(br)
	require.NoError(t, err)
	assert.Equal(t, "100000", got)
	got, err = readReply(br)
	require.NoError(t, err)
	assert.Equal(t, "# Persistence\r\nloading:0", got)
	got, err = readReply(br)
	require.NoError(t, err)
	assert.Equal(t, "", got)
	assert.Equal(t, "0", infoField("# Persistence\r\nloading:0\r\naof_rewrite_in_progress:1\r\n", "loading"))
	assert.Equal(t, "1", infoField("# Persistence\r\nloading:0\r\naof_rewrite_in_progress:1\r\n", "aof_rewrite_in_progress"))
	assert.Equal(t, "", infoField("loading:0", "aof_enabled"))
}

func TestDurableRejectsAnUnknownSectionBeforeStartingAnything(t *testing.T) {
	err := cmdDurable(context.Background(), []string{"--only", "write,nope"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nope"`)
}

func TestStatCPUCountsAfterTheCommand(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	got, err := statCPU("1234 (redis-server *:6379) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 5 0")
	require.NoError(t, err)
	assert.Equal(t, 2870*time.Millisecond, got)
	_, err = statCPU("1234 (x) S 1")
	assert.Error(t, err)
}
