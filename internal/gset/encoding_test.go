package gset

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeRejectsBadInput(t *testing.T) {
	good, err := New("a", "b").MarshalBinary()
	require.NoError(t, err)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"unknown version", []byte{9, 0}, ErrVersion},
		{"no count", []byte{encodingV1}, ErrTruncated},
		{"count larger than data", []byte{encodingV1, 5, 1, 'a'}, ErrTruncated},
		{"member cut short", []byte{encodingV1, 1, 3, 'a'}, ErrTruncated},
		{"duplicate member", []byte{encodingV1, 2, 1, 'a', 1, 'a'}, ErrOrder},
		{"out of order", []byte{encodingV1, 2, 1, 'b', 1, 'a'}, ErrOrder},
		{"member too long", append([]byte{encodingV1, 1, 0x81, 0x80, 0x04}, make([]byte, 3)...), ErrTooLong},
		{"trailing bytes", append(good, 0), ErrTrailing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Set
			err := s.UnmarshalBinary(tt.in)
			assert.True(t, errors.Is(err, tt.want), "got %v, want %v", err, tt.want)
		})
	}
}

func TestDecodeStreamsSetsBackToBack(t *testing.T) {
	b, _ := New("x").AppendBinary(nil)
	b, _ = New("y", "z").AppendBinary(b)
	first, rest, err := Decode(b)
	require.NoError(t, err)
	second, rest, err := Decode(rest)
	require.NoError(t, err)
	assert.Empty(t, rest)
	assert.Equal(t, []string{"x"}, first.Members())
	assert.Equal(t, []string{"y", "z"}, second.Members())
}

// FuzzUnmarshalBinary: any input either fails cleanly or decodes to a set
// whose canonical encoding is the input itself.
func FuzzUnmarshalBinary(f *testing.F) {
	for _, s := range []Set{{}, New(""), New("alice", "bob"), New("\x00", "\xff\xfe")} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Set
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, data, again)
	})
}
