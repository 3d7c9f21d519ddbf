package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Finding 7: a peer whose network returns gets batches again within 200 ms,
// whether the cut was short (it stayed a member) or long enough for it to
// be declared failed. Push/pull is off: only the fast path can bring the
// likes made after a heal. Before, a sender stuck in a dial on the lost
// link waited out TCPTimeout (5 s here, 10 s by default), and a peer
// declared dead got nothing until memberlist took it back.
//
// A busy machine can delay any one round: the median of five cuts must be
// under 200 ms and the slowest under 2.5 s (half of TCPTimeout).
func TestPeerGetsBatchesSoonAfterItAnswersAgain(t *testing.T) {
	cfg := func(c *Config) { noPushPull(c); c.TCPTimeout = 5 * time.Second }
	a := startNode(t, "a", nil, cfg)
	b := startNode(t, "b", []string{a.Addr()}, cfg)
	waitMembers(t, []string{"a", "b"}, a, b)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	likeEvery := func(post string) { // a like every 2 ms, as under load
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
					like(a, post, fmt.Sprint(i))
				}
			}
		}()
	}
	likeEvery("before")
	require.Eventually(t, func() bool { return b.store.Count("before") > 0 }, waitLong, 5*time.Millisecond)

	var took []time.Duration
	for round, waitFor := range []string{"sender gave up", "sender gave up", "sender gave up", "sender gave up", "declared dead"} {
		dropped := a.Stats().PeerDropped
		testNet(t).Isolate(b.Addr())
		if waitFor == "declared dead" {
			require.Eventually(t, func() bool { st := stateOf(a, "b"); return st == "dead" || st == "" }, waitLong, 5*time.Millisecond)
		} else { // a dropped batches for b: its sender found b away
			require.Eventually(t, func() bool { return a.Stats().PeerDropped > dropped }, waitLong, 5*time.Millisecond)
		}
		// What a sent b during the cut is lost; what a likes from the heal
		// on must reach b at once.
		testNet(t).Heal()
		healed := time.Now()
		post := fmt.Sprintf("after-%d", round)
		likeEvery(post)
		require.Eventually(t, func() bool { return b.store.Count(post) > 0 }, waitLong, time.Millisecond)
		took = append(took, time.Since(healed))
		t.Logf("round %d (%s): b got a batch %v after the heal", round, waitFor, took[round])
	}
	slices.Sort(took)
	assert.Less(t, took[len(took)/2], 200*time.Millisecond, "median")
	assert.Less(t, took[len(took)-1], 2500*time.Millisecond, "slowest")
}
