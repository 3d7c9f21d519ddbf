package cluster

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

func buildFrame(kind byte, origin, first uint64, likes ...store.Like) []byte {
	fb := newFrameBuilder(1<<20, kind, origin)
	for i, l := range likes {
		fb.add(first+uint64(i), l)
	}
	b, _ := fb.take()
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	want := []store.Like{{Post: "p1", User: "alice"}, {Post: "p1", User: "bob"}, {Post: "", User: "x"},
		{Post: strings.Repeat("p", 256), User: strings.Repeat("u", 256)}}
	for _, kind := range []byte{msgLikes, msgRange} {
		got, err := decodeFrame(buildFrame(kind, 0xabc, 41, want...))
		require.NoError(t, err)
		assert.Equal(t, frame{kind: kind, origin: 0xabc, first: 41, likes: want}, got)
		assert.Equal(t, vclock.Range{Origin: 0xabc, From: 41, To: 44}, got.dots())
	}
}

func TestFrameBuilderStopsAtMax(t *testing.T) {
	fb := newFrameBuilder(100, msgLikes, 1)
	l := store.Like{Post: "post", User: strings.Repeat("u", 20)}
	n := 0
	for fb.fits(l) {
		fb.add(uint64(n+1), l)
		n++
	}
	b, count := fb.take()
	assert.Equal(t, n, count)
	assert.LessOrEqual(t, len(b), 100)
	assert.Equal(t, 2, n)
}

func TestDecodeFrameRejects(t *testing.T) {
	good := buildFrame(msgLikes, 7, 1, store.Like{Post: "p", User: "u"})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errEmpty},
		{"unknown type", []byte{99}, errType},
		{"no origin", []byte{msgLikes, 1, 2}, errTruncated},
		{"seq zero", buildFrame(msgLikes, 7, 0, store.Like{Post: "p", User: "u"}), errFrame},
		{"count larger than body", func() []byte { b := append([]byte{}, good...); b[10] = 5; return b }(), errFrame},
		{"extra like", append(append([]byte{}, good...), 1, 'p', 1, 'u'), errFrame},
		{"cut in a like", good[:len(good)-1], errTruncated},
		{"id too long", append([]byte{msgLikes, 0, 0, 0, 0, 0, 0, 0, 7, 1, 1, 0x81, 0x40}, make([]byte, 8)...), errIDLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeFrame(tt.in)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestStateIsSmallAtAnyStateSize(t *testing.T) {
	vv := vclock.VV{}
	for i := uint64(1); i <= 20; i++ {
		vv[i<<40] = 1 << 40 // 20 origins with a trillion likes each
	}
	b := encodeState("a-node-name-of-some-length", 99, vv)
	assert.Less(t, len(b), 1024)
	name, origin, got, err := decodeState(b)
	require.NoError(t, err)
	assert.Equal(t, "a-node-name-of-some-length", name)
	assert.Equal(t, uint64(99), origin)
	assert.Equal(t, vv, got)
	_, _, _, err = decodeState(append(b, 0))
	assert.ErrorIs(t, err, errTruncated)
	_, _, _, err = decodeState([]byte{42})
	assert.ErrorIs(t, err, errType)
}

func TestRepairMessagesRoundTrip(t *testing.T) {
	q := rangeReq{requester: "n1", r: vclock.Range{Origin: 5, From: 10, To: 20}}
	got, err := decodeRangeReq(encodeRangeReq(q))
	require.NoError(t, err)
	assert.Equal(t, q, got)
	_, err = decodeRangeReq(encodeRangeReq(rangeReq{requester: "n", r: vclock.Range{Origin: 5, From: 9, To: 3}}))
	assert.ErrorIs(t, err, errFrame)

	name, err := decodeSnapReq(encodeSnapReq("n2"))
	require.NoError(t, err)
	assert.Equal(t, "n2", name)

	c := &snapChunkBuilder{id: 77, max: 1 << 20}
	c.reset()
	c.add("p1", gset.New("a", "b"))
	c.add("p2", gset.New("c"))
	chunk, err := decodeSnapChunk(c.take())
	require.NoError(t, err)
	assert.Equal(t, uint64(77), chunk.id)
	assert.Equal(t, uint64(0), chunk.index)
	assert.Equal(t, []string{"p1", "p2"}, chunk.posts)
	assert.Equal(t, []string{"a", "b"}, chunk.sets[0].Members())
	next, err := decodeSnapChunk(c.take())
	require.NoError(t, err)
	assert.Equal(t, uint64(1), next.index, "take starts the next chunk")
	assert.Empty(t, next.posts)

	id, chunks, vv, err := decodeSnapEnd(encodeSnapEnd(77, 3, vclock.VV{1: 9}))
	require.NoError(t, err)
	assert.Equal(t, []any{uint64(77), uint64(3), vclock.VV{1: 9}}, []any{id, chunks, vv})
}

// FuzzDecodeMessage: every message that arrives from the network goes
// through one of these decoders; none may panic or over-allocate, and a
// decoded frame re-encodes to the bytes it came from.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(buildFrame(msgLikes, 1, 1, store.Like{Post: "p", User: "u"}, store.Like{Post: "q", User: "v"}))
	f.Add(buildFrame(msgRange, 1<<63, 100, store.Like{Post: "p", User: "u"}))
	f.Add(encodeState("n1", 5, vclock.VV{5: 10, 6: 1}))
	f.Add(encodeRangeReq(rangeReq{requester: "n", r: vclock.Range{Origin: 1, From: 1, To: 5}}))
	f.Add(encodeSnapReq("n"))
	c := &snapChunkBuilder{id: 1, max: 1 << 10}
	c.reset()
	c.add("p", gset.New("a"))
	f.Add(c.take())
	f.Add(encodeSnapEnd(1, 1, vclock.VV{3: 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _, _ = decodeState(data)
		if len(data) == 0 {
			return
		}
		switch data[0] {
		case msgLikes, msgRange:
			fr, err := decodeFrame(data)
			if err == nil {
				require.Equal(t, data, buildFrame(fr.kind, fr.origin, fr.first, fr.likes...))
			}
		case msgRangeReq:
			_, _ = decodeRangeReq(data)
		case msgSnapReq:
			_, _ = decodeSnapReq(data)
		case msgSnapChunk:
			_, _ = decodeSnapChunk(data)
		case msgSnapEnd:
			_, _, _, _ = decodeSnapEnd(data)
		}
	})
}
