package antientropy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

// collidingIDs are two pairs of ids a 4-sum search found against the
// unkeyed member hash, splitmix64(xxhash64): their hash sums are equal, so
// two replicas that differ by exactly them had equal summaries at every
// level of the tree and stayed different forever (issue #21: 751 sessions
// in this simulator).
var collidingIDs = [2][2]string{{"user-2436220", "user-3484362"}, {"user-3001774", "user-3276129"}}

// Two replicas that differ by exactly the colliding ids converge under the
// keyed digest: plaintext (the public key) and a cluster secret alike.
func TestSimulationCraftedCollidingIdsConverge(t *testing.T) {
	for _, secret := range []string{"", "a cluster secret"} {
		t.Run(fmt.Sprintf("secret=%q", secret), func(t *testing.T) {
			s := newSim(t, 21)
			a := s.add()
			s.run(50 * time.Millisecond)
			b := s.add()
			s.run(2 * time.Second)
			require.True(t, a.sy.Synced() && b.sy.Synced())
			k := gset.DeriveKey([]byte(secret))
			a.st.Rekey(k)
			b.st.Rekey(k)
			for i := range 100 {
				a.st.Like("post-1", fmt.Sprintf("user-%d", i))
				b.st.Like("post-1", fmt.Sprintf("user-%d", i))
			}
			for _, u := range collidingIDs[0] {
				a.st.Like("post-1", u)
			}
			for _, u := range collidingIDs[1] {
				b.st.Like("post-1", u)
			}
			require.NotEqual(t, content(a), content(b))
			for range 100 { // 10 s: ~100 sessions each way
				s.run(100 * time.Millisecond)
				if mapsEqual(content(a), content(b)) {
					break
				}
			}
			require.True(t, mapsEqual(content(a), content(b)), "the replicas never converged")
			require.Equal(t, 104, a.st.Count("post-1"))
		})
	}
}
