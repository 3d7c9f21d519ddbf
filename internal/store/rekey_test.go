package store

import (
	"sync"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
)

// sameDigests compares two stores' digests at every level anti-entropy
// reads: the root, every upper-level node of the first two levels, every
// bucket holding a post, and each post's summary and first split.
func sameDigests(t *testing.T, a, b *Store, posts []string) bool {
	t.Helper()
	if a.DigestKeyID() != b.DigestKeyID() || a.BucketsSummary(0, Buckets) != b.BucketsSummary(0, Buckets) {
		return false
	}
	for _, span := range []int{Buckets / 16, Buckets / 256} {
		for lo := 0; lo < Buckets; lo += span {
			if a.BucketsSummary(lo, lo+span) != b.BucketsSummary(lo, lo+span) {
				return false
			}
		}
	}
	for _, p := range posts {
		bk := BucketOf(p)
		if a.BucketsSummary(bk, bk+1) != b.BucketsSummary(bk, bk+1) ||
			a.PostRangeSummary(p, 0, 0) != b.PostRangeSummary(p, 0, 0) ||
			a.PostRangeDigests(p, 0, 0) != b.PostRangeDigests(p, 0, 0) {
			return false
		}
	}
	return true
}

// A re-keyed replica's digests equal those computed from scratch under the
// new key, at every level.
func TestPropertyRekeyEqualsAFreshComputationUnderTheNewKey(t *testing.T) {
	law := func(seed uint64, n uint16, secret1, secret2 []byte) bool {
		likes := someLikes(int(n%2000), 1+int(n%37), seed)
		k1, k2 := gset.DeriveKey(secret1), gset.DeriveKey(secret2)
		a := newTestStore(t, 16)
		a.Rekey(k1)
		for i, l := range likes {
			if i%3 == 0 {
				a.Merge([]Like{l})
			} else {
				a.Like(l.Post, l.User)
			}
		}
		a.Rekey(k2)
		fresh := newTestStore(t, 4)
		fresh.Rekey(k2)
		var posts []string
		for _, l := range likes {
			fresh.Like(l.Post, l.User)
			posts = append(posts, l.Post)
		}
		return a.DigestKeyID() == k2.ID() && sameDigests(t, a, fresh, posts)
	}
	require.NoError(t, quick.Check(law, &quick.Config{MaxCount: 50}))
}

// Likes taken while a re-key runs land under whichever key their shard
// has: once it ends, every digest is the new key's.
func TestRekeyWhileLikesArrive(t *testing.T) {
	likes := someLikes(20000, 500, 7)
	k1, k2 := gset.DeriveKey([]byte("one")), gset.DeriveKey([]byte("two"))
	a := newTestStore(t, 64)
	a.Rekey(k1)
	for _, l := range likes[:10000] {
		a.Like(l.Post, l.User)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, l := range likes[10000:] {
			a.Like(l.Post, l.User)
		}
	}()
	a.Rekey(k2)
	wg.Wait()
	fresh := newTestStore(t, 64)
	fresh.Rekey(k2)
	var posts []string
	for _, l := range likes {
		fresh.Like(l.Post, l.User)
		posts = append(posts, l.Post)
	}
	assert.True(t, sameDigests(t, a, fresh, posts))
}

func TestDigestKeyIDNamesTheKey(t *testing.T) {
	s := newTestStore(t, 4)
	assert.Equal(t, gset.PublicKey().ID(), s.DigestKeyID())
	s.Like("p", "u")
	before := s.BucketsSummary(0, Buckets)
	k := gset.DeriveKey([]byte("secret"))
	s.Rekey(k)
	assert.Equal(t, k.ID(), s.DigestKeyID())
	assert.NotEqual(t, before, s.BucketsSummary(0, Buckets))
	assert.Equal(t, 1, s.BucketsSummary(0, Buckets).Count)
}
