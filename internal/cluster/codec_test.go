package cluster

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

func TestFrameRoundTrip(t *testing.T) {
	fb := newFrameBuilder(1400)
	want := []store.Like{{Post: "p1", User: "alice"}, {Post: "p1", User: "bob"}, {Post: "", User: "x"}, {Post: strings.Repeat("p", 256), User: strings.Repeat("u", 256)}}
	for _, l := range want {
		require.True(t, fb.fits(l))
		fb.add(l)
	}
	frame, count := fb.take()
	assert.Equal(t, len(want), count)
	got, err := decodeLikes(frame)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.LessOrEqual(t, len(frame), 1400)

	next, count := fb.take()
	assert.Equal(t, []byte{msgLikes}, next, "take starts a fresh frame")
	assert.Zero(t, count)
}

func TestFrameBuilderStopsAtMax(t *testing.T) {
	fb := newFrameBuilder(100)
	l := store.Like{Post: "post", User: strings.Repeat("u", 40)}
	n := 0
	for fb.fits(l) {
		fb.add(l)
		n++
	}
	frame, _ := fb.take()
	assert.Equal(t, 2, n)
	assert.LessOrEqual(t, len(frame), 100)
}

func TestDecodeLikesRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errEmpty},
		{"unknown type", []byte{99}, errType},
		{"post cut short", []byte{msgLikes, 5, 'a'}, errTruncated},
		{"user missing", []byte{msgLikes, 1, 'a'}, errTruncated},
		{"bad varint", []byte{msgLikes, 0xff}, errTruncated},
		{"id too long", []byte{msgLikes, 0x81, 0x40}, errIDLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeLikes(tt.in)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	got, err := decodeLikes([]byte{msgLikes})
	require.NoError(t, err)
	assert.Empty(t, got, "an empty frame is valid")
}

// stateOf is a Replica stand-in holding a fixed state.
type stateOf map[string]gset.Set

func (s stateOf) Merge([]store.Like) []store.Like    { return nil }
func (s stateOf) MergeSet(string, gset.Set) []string { return nil }
func (s stateOf) Snapshot(fn func(string, gset.Set) bool) {
	for p, u := range s {
		if !fn(p, u) {
			return
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	want := map[string][]string{"p1": {"a", "b"}, "p2": {"c"}, "": {"x"}}
	st := stateOf{}
	for p, us := range want {
		st[p] = gset.New(us...)
	}
	got := map[string][]string{}
	require.NoError(t, decodeState(encodeState(st), func(p string, u gset.Set) { got[p] = u.Members() }))
	assert.Equal(t, want, got)
}

func TestDecodeStateAppliesNothingWhenCorrupt(t *testing.T) {
	b := encodeState(stateOf{"p1": gset.New("a"), "p2": gset.New("b")})
	applied := 0
	err := decodeState(b[:len(b)-1], func(string, gset.Set) { applied++ })
	assert.Error(t, err)
	assert.Zero(t, applied)
	assert.ErrorIs(t, decodeState(nil, nil), errEmpty)
	assert.ErrorIs(t, decodeState([]byte{42}, nil), errType)
}

// Frames arrive from the network: any bytes decode cleanly or fail cleanly,
// and what decodes re-encodes to the same bytes.
func FuzzDecodeLikes(f *testing.F) {
	fb := newFrameBuilder(1400)
	fb.add(store.Like{Post: "p1", User: "alice"})
	fb.add(store.Like{Post: "p2", User: "bob"})
	frame, _ := fb.take()
	f.Add(frame)
	f.Add([]byte{msgLikes})
	f.Add([]byte{msgLikes, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		likes, err := decodeLikes(data)
		if err != nil {
			return
		}
		fb := newFrameBuilder(len(data) + 1)
		for _, l := range likes {
			fb.add(l)
		}
		again, _ := fb.take()
		require.Equal(t, data, again)
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(stateOf{"p1": gset.New("a", "b")}))
	f.Add([]byte{stateFull})
	f.Add([]byte{stateFull, 1, 'p', 1, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = decodeState(data, func(post string, users gset.Set) {
			require.LessOrEqual(t, len(post), maxIDLen)
		})
	})
}
