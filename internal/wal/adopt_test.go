package wal

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/wire"
)

// postEntry is a snapshot's post entry body after its tag.
func postEntry(post string, users ...string) []byte {
	return gset.New(users...).AppendBlocks(wire.AppendString(nil, post))
}

// The snapshot's entries are adopted on workers: every entry is restored
// whatever the number of workers and chunks, and an entry that does not
// decode stops the load with an error, having restored only whole, valid
// entries (the snapshot is then set aside and the node rebuilds).
func TestEveryWorkerCountAdoptsEverySnapshotEntry(t *testing.T) {
	want := map[string]bool{}
	var entries [][]byte
	for p := range 3000 { // ~ 6 chunks
		post := fmt.Sprintf("post-%d", p)
		var users []string
		for u := range 1 + p%40 {
			users = append(users, fmt.Sprintf("user-%05d", u*7+p))
			want[post+"/"+users[len(users)-1]] = true
		}
		entries = append(entries, postEntry(post, users...))
	}
	bad := append(wire.AppendString(nil, "bad"), 9, 9, 9) // no set encoding starts with 9
	for _, workers := range []int{1, 2, 5} {
		st, err := newStore()
		require.NoError(t, err)
		a := newAdopter(st, workers)
		for _, e := range entries {
			require.True(t, a.add(e))
		}
		n, err := a.wait()
		require.NoError(t, err)
		require.EqualValues(t, len(want), n, "workers %d", workers)
		require.Equal(t, want, likesOf(st), "workers %d", workers)

		st, err = newStore()
		require.NoError(t, err)
		a = newAdopter(st, workers)
		for i, e := range entries {
			if i == len(entries)/2 {
				e = bad
			}
			if !a.add(e) {
				break
			}
		}
		n, err = a.wait()
		require.Error(t, err, "workers %d", workers)
		got := likesOf(st)
		require.EqualValues(t, len(got), n)
		for k := range got {
			require.True(t, want[k], "workers %d: %s was never in the snapshot", workers, k)
		}
	}
}
