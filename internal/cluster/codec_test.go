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
	got, err := decodeFrame(buildFrame(msgLikes, 0xabc, 41, want...))
	require.NoError(t, err)
	assert.Equal(t, frame{origin: 0xabc, first: 41, likes: want}, got)
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

// FuzzDecodeMessage: every message that arrives from the network goes
// through one of these decoders; none may panic or over-allocate, and a
// decoded frame re-encodes to the bytes it came from.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(buildFrame(msgLikes, 1, 1, store.Like{Post: "p", User: "u"}, store.Like{Post: "q", User: "v"}))
	f.Add(buildFrame(msgLikes, 1<<63, 100, store.Like{Post: "p", User: "u"}))
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
				require.Equal(t, data, buildFrame(msgLikes, fr.origin, fr.first, fr.likes...))
			}
		case msgSync:
			m, err := antientropy.Decode(data[1:])
			if err == nil {
				require.Equal(t, data, m.Append([]byte{msgSync}))
			}
		}
	})
}
