package gset

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// A set's block form decodes to the same set, with the invariants every
// other operation relies on, and the decoded set takes adds like any other.
func TestBlockFormRoundTripsAndDecodedSetsGrow(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 3))
		members := genMembers(r, r.IntN(3000))
		s := New(members...)
		b := s.AppendBlocks([]byte("x"))
		got, rest, err := DecodeBlocks(append(b[1:], "tail"...))
		require.NoError(t, err, "seed %d", seed)
		require.Equal(t, "tail", string(rest))
		checkInvariants(t, got)
		require.True(t, s.Equal(got), "seed %d", seed)
		require.Equal(t, s.Summary(tk).Digest, got.Summary(tk).Digest)
		require.LessOrEqual(t, len(b), s.Bytes()+8*s.Bytes()/maxBlock+16, "costs what the blocks cost")

		ref := New(members...)
		for _, m := range genMembers(r, 500) {
			require.Equal(t, ref.Add(m), got.Add(m))
		}
		checkInvariants(t, got)
		require.True(t, ref.Equal(got))
	}
}

func TestDecodeBlocksRefusesWhatItCannotTrust(t *testing.T) {
	good := New("alice", "bob", "carol").AppendBlocks(nil)
	for name, data := range map[string][]byte{
		"empty":         {},
		"version":       {1, 0, 0},
		"count":         append([]byte{2, 4}, good[2:]...),
		"truncated":     good[:len(good)-1],
		"no blocks":     {2, 1, 0},
		"zero block":    {2, 1, 1, 0},
		"shared first":  {2, 1, 1, 2, 0x11, 'a'},
		"out of order":  append([]byte{2, 2, 1, 4}, append(singleBlock("b"), singleBlock("a")...)...),
		"not canonical": {2, 1, 1, 4, 0xE4, 1, 'a', 0}, // "a" in the medium form
		"entry past":    {2, 1, 1, 2, 0x05, 'a'},
	} {
		_, _, err := DecodeBlocks(data)
		require.Error(t, err, name)
	}
}

// FuzzDecodeBlocks: whatever the bytes, no panic, and what decodes is a
// set that passes every invariant and encodes back to a form that decodes
// to the same set.
func FuzzDecodeBlocks(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range []Set{{}, New("a"), New(genMembers(r, 200)...)} {
		f.Add(s.AppendBlocks(nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _, err := DecodeBlocks(data)
		if err != nil {
			return
		}
		checkInvariants(t, s)
		again, _, err := DecodeBlocks(s.AppendBlocks(nil))
		require.NoError(t, err)
		require.True(t, s.Equal(again))
		s.Add("fuzz")
		checkInvariants(t, s)
	})
}
