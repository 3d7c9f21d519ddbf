package cluster

import (
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Streams follow a keyring's rotation as memberlist does: sealed with the
// primary, opened with any key of the ring, and a key that leaves the ring
// opens nothing more. Each step is one a running node takes (AddKey,
// UseKey, RemoveKey) while its streams stay open.
func TestRingSealerFollowsARotation(t *testing.T) {
	ringA, err := memberlist.NewKeyring(nil, key(1))
	require.NoError(t, err)
	ringB, err := memberlist.NewKeyring(nil, key(1))
	require.NoError(t, err)
	a, b := newRingSealer(ringA, "l"), newRingSealer(ringB, "l")
	roundTrip := func(from, to *sealer) error {
		msg, err := from.seal([]byte("likes"))
		require.NoError(t, err)
		got, err := to.open(msg)
		if err == nil {
			assert.Equal(t, "likes", string(got))
		}
		return err
	}
	require.NoError(t, roundTrip(a, b))

	// Step 1: both hold the new key; the old stays primary.
	require.NoError(t, ringA.AddKey(key(2)))
	require.NoError(t, ringB.AddKey(key(2)))
	require.NoError(t, roundTrip(a, b))
	// Step 2, on a first: it seals with the new key; b still opens it, and
	// a opens what b seals with the old one.
	require.NoError(t, ringA.UseKey(key(2)))
	require.NoError(t, roundTrip(a, b))
	require.NoError(t, roundTrip(b, a))
	require.NoError(t, ringB.UseKey(key(2)))
	// Step 3: the old key leaves a's ring; a message under it is refused.
	old, err := newSealer(key(1), "l")
	require.NoError(t, err)
	require.NoError(t, roundTrip(old, a), "still in the ring")
	require.NoError(t, ringA.RemoveKey(key(1)))
	assert.ErrorIs(t, roundTrip(old, a), errStreamOpen)
	require.NoError(t, roundTrip(b, a))

	// A node that never got the new key cannot read one that uses it.
	lagging, err := memberlist.NewKeyring(nil, key(1))
	require.NoError(t, err)
	assert.ErrorIs(t, roundTrip(a, newRingSealer(lagging, "l")), errStreamOpen)
	// The label still binds.
	assert.ErrorIs(t, roundTrip(a, newRingSealer(ringB, "m")), errStreamOpen)
}
