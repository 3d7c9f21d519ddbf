package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

// Issue #21 finding 1 on real nodes: two replicas that differ by exactly
// two pairs of ids whose unkeyed hash sums collide converge, since digests
// are keyed by the cluster secret. Store.Merge puts the likes in without
// the fast path: only anti-entropy can carry them.
func TestCraftedCollidingIdsConvergeBetweenRealNodes(t *testing.T) {
	secure := func(c *Config) { c.SecretKey = key(7) }
	a := startNode(t, "a", nil, secure)
	b := startNode(t, "b", []string{a.Addr()}, secure)
	waitMembers(t, []string{"a", "b"}, a, b)
	waitReady(t, a, b)
	common := likesOf("post-1", users("user-", 100))
	a.store.Merge(common)
	b.store.Merge(common)
	a.store.Merge(likesOf("post-1", []string{"user-2436220", "user-3484362"}))
	b.store.Merge(likesOf("post-1", []string{"user-3001774", "user-3276129"}))
	waitConverged(t, map[string]int{"post-1": 104}, a, b)
	require.Equal(t, gset.DeriveKey(key(7)).ID(), a.store.DigestKeyID())
}

// Rotation with a memberlist keyring: when one node's primary changes,
// it re-keys, and sessions between the two primaries are refused and
// counted, not compared; once both use the new primary they converge.
func TestDigestsFollowTheKeyringsPrimary(t *testing.T) {
	old, next := key(1), key(2)
	rings := map[string]*memberlist.Keyring{}
	withRing := func(name string) func(*Config) {
		return func(c *Config) {
			ring, err := memberlist.NewKeyring([][]byte{old, next}, old)
			require.NoError(t, err)
			rings[name] = ring
			c.Keyring = ring
		}
	}
	a := startNode(t, "a", nil, withRing("a"))
	b := startNode(t, "b", []string{a.Addr()}, withRing("b"))
	waitMembers(t, []string{"a", "b"}, a, b)
	waitReady(t, a, b)
	require.Equal(t, gset.DeriveKey(old).ID(), a.store.DigestKeyID())

	require.NoError(t, rings["a"].UseKey(next))
	require.Eventually(t, func() bool { return a.store.DigestKeyID() == gset.DeriveKey(next).ID() }, waitLong, 10*time.Millisecond)
	a.store.Merge(likesOf("p", users("u", 10))) // only a holds these
	require.Eventually(t, func() bool { return a.Stats().SyncKeyMismatches+b.Stats().SyncKeyMismatches > 0 }, waitLong, 10*time.Millisecond,
		"sessions between two primaries are refused")
	require.Zero(t, b.store.Count("p"), "nothing compared across keys")

	require.NoError(t, rings["b"].UseKey(next))
	waitConverged(t, map[string]int{"p": 10}, a, b)
	require.Equal(t, uint64(1), a.Stats().SyncRekeys)
	require.Equal(t, uint64(1), b.Stats().SyncRekeys)
	require.Positive(t, a.logs.count("primary key changed"))
}
