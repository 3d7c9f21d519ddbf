package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The rounds alternate which binary goes first.
func TestLinkOrderAlternates(t *testing.T) {
	assert.Equal(t, []int{0, 1}, linkOrder(0))
	assert.Equal(t, []int{1, 0}, linkOrder(1))
	assert.Equal(t, []int{0, 1}, linkOrder(2))
}

// summarize takes one binary's medians and pairs the two levels of each
// round for the ratio, whatever the order the runs came in.
func TestSummarizePairsLevelsByRound(t *testing.T) {
	ms := time.Millisecond
	runs := []linkRun{
		{bin: 0, round: 0, w: "1", rate: 1000, p99: 10 * ms, cpuPerLike: 100},
		{bin: 1, round: 0, w: "1", rate: 5000, p99: ms, cpuPerLike: 1},
		{bin: 0, round: 0, w: "2", rate: 800, p99: 12 * ms, cpuPerLike: 130},
		{bin: 0, round: 1, w: "2", rate: 300, p99: 20 * ms, cpuPerLike: 150},
		{bin: 0, round: 1, w: "1", rate: 500, p99: 14 * ms, cpuPerLike: 110},
		{bin: 0, round: 2, w: "1", rate: 2000, p99: 8 * ms, cpuPerLike: 90},
		{bin: 0, round: 2, w: "2", rate: 1400, p99: 9 * ms, cpuPerLike: 120},
	}
	got := summarize(runs, 0)
	assert.Equal(t, map[string]float64{"1": 1000, "2": 800}, got.rate)
	assert.Equal(t, map[string]time.Duration{"1": 10 * ms, "2": 12 * ms}, got.p99)
	assert.Equal(t, map[string]time.Duration{"1": 100, "2": 130}, got.cpu)
	// Ratios 0.8, 0.6 and 0.7: the median is 0.7, not 800 ÷ 1000.
	assert.InDelta(t, 0.7, got.ratio, 1e-9)
	assert.Zero(t, summarize(runs, 2).ratio, "no runs: no ratio")
}
