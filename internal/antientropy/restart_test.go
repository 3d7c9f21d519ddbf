package antientropy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

// restartedCluster starts nodes that all have seeds (a whole cluster
// restarting at once), with the likes each recovered from its disk.
func restartedCluster(t *testing.T, seed uint64, recovered map[string][]store.Like, partial ...string) *sim {
	s := newSim(t, seed)
	for i := range len(recovered) {
		name := fmt.Sprintf("n%02d", i+1)
		st, err := store.New(store.Config{Shards: 4})
		require.NoError(t, err)
		st.Merge(recovered[name])
		c := s.cfg(name, true)
		c.Partial = slices.Contains(partial, name)
		c.Holds = len(recovered[name]) > 0 && !c.Partial
		sy, err := New(c, st)
		require.NoError(t, err)
		s.nodes[name] = &simNode{name: name, st: st, sy: sy, alive: true}
		s.order = append(s.order, name)
	}
	s.membership()
	return s
}

// firstSynced runs s for ticks of 10ms and returns the first node to be
// synced: the founder.
func firstSynced(s *sim, ticks int) string {
	var founder string
	for range ticks {
		for _, n := range s.live() {
			if founder == "" && n.sy.Synced() {
				founder = n.name
			}
		}
		s.run(10 * time.Millisecond)
	}
	return founder
}

// A cluster restarted whole is founded by the lowest-named member that
// recovered likes, never by an empty one, whatever its name; every member
// then holds every recovered like.
func TestAWholeClusterRestartIsFoundedByAMemberThatHoldsLikes(t *testing.T) {
	for seed := range uint64(50) {
		l1 := store.Like{Post: "p", User: "on-n02"}
		l2 := store.Like{Post: "q", User: "on-n03"}
		s := restartedCluster(t, seed, map[string][]store.Like{
			"n01": nil, // its disk was empty or set aside
			"n02": {l1},
			"n03": {l2},
		})
		founder := firstSynced(s, 500)
		require.Equal(t, "n02", founder, "seed %d", seed)
		for _, n := range s.live() {
			require.True(t, n.sy.Synced(), "seed %d: %s", seed, n.name)
			got := content(n)
			require.True(t, got[l1] && got[l2], "seed %d: %s holds %v", seed, n.name, got)
		}
	}
}

// With no member holding anything, the lowest name founds, as before.
func TestAnEmptyClusterIsFoundedByTheLowestName(t *testing.T) {
	s := restartedCluster(t, 1, map[string][]store.Like{"n01": nil, "n02": nil, "n03": nil})
	founder := firstSynced(s, 300)
	require.Equal(t, "n01", founder)
}

// A member whose disk was damaged but held some likes founds before an
// empty one, and after an intact one.
func TestADamagedMemberFoundsOnlyWhenNoneIsIntact(t *testing.T) {
	l := store.Like{Post: "p", User: "u"}
	for _, tc := range []struct {
		recovered map[string][]store.Like
		partial   []string
		want      string
	}{
		{map[string][]store.Like{"n01": nil, "n02": {l}, "n03": nil}, []string{"n02"}, "n02"},
		{map[string][]store.Like{"n01": {l}, "n02": {l}, "n03": nil}, []string{"n01"}, "n02"},
	} {
		s := restartedCluster(t, 7, tc.recovered, tc.partial...)
		founder := firstSynced(s, 300)
		require.Equal(t, tc.want, founder, "%v partial %v", tc.recovered, tc.partial)
	}
}
