package cluster

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/antientropy"
	"github.com/likesd/likesd/internal/store"
)

func buildFrame(kind byte, origin, first uint64, likes ...store.Like) []byte {
	return buildFrameFrom(kind, "n1", origin, first, likes...)
}

func buildFrameFrom(kind byte, from string, origin, first uint64, likes ...store.Like) []byte {
	fb := newFrameBuilder(1<<20, kind, from, origin)
	for i, l := range likes {
		fb.add(first+uint64(i), l)
	}
	b, _ := fb.take()
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	want := []store.Like{{Post: "p1", User: "alice"}, {Post: "p1", User: "bob"}, {Post: "", User: "x"},
		{Post: strings.Repeat("p", 256), User: strings.Repeat("u", 256)}}
	got, err := decodeFrame(buildFrame(msgLikes, 0xabc, 41, want...))
	require.NoError(t, err)
	assert.Equal(t, frame{from: "n1", origin: 0xabc, first: 41, likes: want}, got)
}

func TestFrameBuilderStopsAtMax(t *testing.T) {
	fb := newFrameBuilder(100, msgLikes, "n1", 1)
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
		{"no name", []byte{msgLikes}, errTruncated},
		{"no origin", []byte{msgLikes, 0, 1, 2}, errTruncated},
		{"seq zero", buildFrame(msgLikes, 7, 0, store.Like{Post: "p", User: "u"}), errFrame},
		{"count larger than body", func() []byte { b := append([]byte{}, good...); b[13] = 5; return b }(), errFrame},
		{"extra like", append(append([]byte{}, good...), 1, 'p', 1, 'u'), errFrame},
		{"cut in a like", good[:len(good)-1], errTruncated},
		{"id too long", append([]byte{msgLikes, 2, 'n', '1', 0, 0, 0, 0, 0, 0, 0, 7, 1, 1, 0x81, 0x40}, make([]byte, 8)...), errIDLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeFrame(tt.in)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

// FuzzDecodeMessage: every message that arrives from the network goes
// through one of these decoders; none may panic or over-allocate, and a
// decoded frame re-encodes to the bytes it came from.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(buildFrame(msgLikes, 1, 1, store.Like{Post: "p", User: "u"}, store.Like{Post: "q", User: "v"}))
	f.Add(buildFrame(msgLikes, 1<<63, 100, store.Like{Post: "p", User: "u"}))
	f.Add(encodeAck("n2", []ackRun{{origin: 1, first: 1, count: 3}, {origin: 1 << 62, first: 9, count: 1}}))
	pull := &antientropy.Message{Kind: antientropy.KindPullResp, From: "n", Likes: []store.Like{{Post: "p", User: "u"}}, Done: true}
	f.Add(pull.Append([]byte{msgSync}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		switch data[0] {
		case msgLikes:
			fr, err := decodeFrame(data)
			if err == nil {
				require.Equal(t, data, buildFrameFrom(msgLikes, fr.from, fr.origin, fr.first, fr.likes...))
			}
		case msgAck:
			from, runs, err := decodeAck(data)
			if err == nil {
				require.Equal(t, data, encodeAck(from, runs))
			}
		case msgSync:
			m, err := antientropy.Decode(data[1:])
			if err == nil {
				require.Equal(t, data, m.Append([]byte{msgSync}))
			}
		}
	})
}

func TestAckRoundTripAndRejects(t *testing.T) {
	runs := []ackRun{{origin: 7, first: 1, count: 10}, {origin: 7, first: 20, count: 1}, {origin: 1 << 63, first: 1 << 40, count: 3}}
	from, got, err := decodeAck(encodeAck("node-b", runs))
	require.NoError(t, err)
	assert.Equal(t, "node-b", from)
	assert.Equal(t, runs, got)

	good := encodeAck("b", []ackRun{{origin: 7, first: 1, count: 1}})
	for name, in := range map[string][]byte{
		"empty":      nil,
		"wrong type": {msgLikes},
		"no runs":    encodeAck("b", nil),
		"seq zero":   encodeAck("b", []ackRun{{origin: 7, first: 0, count: 1}}),
		"count zero": encodeAck("b", []ackRun{{origin: 7, first: 1, count: 0}}),
		"wraps":      encodeAck("b", []ackRun{{origin: 7, first: 1 << 63, count: 1<<63 + 1}}),
		"cut":        good[:len(good)-1],
		"trailing":   append(append([]byte{}, good...), 0),
		"huge count": {msgAck, 1, 'b', 0xff, 0xff, 0x03},
	} {
		_, _, err := decodeAck(in)
		assert.Error(t, err, name)
	}
}

func TestJoinFrames(t *testing.T) {
	l := store.Like{Post: "p", User: "u"}
	a := buildFrame(msgLikes, 7, 1, l, l)
	b := buildFrame(msgLikes, 7, 3, l)
	j, ok := joinFrames(a, b, 1<<10)
	require.True(t, ok)
	f, err := decodeFrame(j)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), f.first)
	assert.Len(t, f.likes, 3)

	_, ok = joinFrames(a, buildFrame(msgLikes, 7, 4, l), 1<<10)
	assert.False(t, ok, "a gap in seqs")
	_, ok = joinFrames(a, buildFrame(msgLikes, 8, 3, l), 1<<10)
	assert.False(t, ok, "another origin")
	_, ok = joinFrames(a, b, len(a)+2)
	assert.False(t, ok, "too large")
}
