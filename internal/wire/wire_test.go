package wire

import (
	"encoding/binary"
	"math"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUvarintRoundTrip(t *testing.T) {
	require.NoError(t, quick.Check(func(v uint64) bool {
		b := binary.AppendUvarint(nil, v)
		got, rest, err := Uvarint(append(b, 7))
		return err == nil && got == v && len(b) == UvarintLen(v) && len(rest) == 1 && rest[0] == 7
	}, nil))
	for _, v := range []uint64{0, 127, 128, math.MaxUint64} {
		assert.Equal(t, len(binary.AppendUvarint(nil, v)), UvarintLen(v))
	}
}

func TestUvarintRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"unfinished", []byte{0x80}, ErrTruncated},
		{"overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, ErrTruncated},
		{"overlong zero", []byte{0x80, 0x00}, ErrOverlong},
		{"overlong one", []byte{0x81, 0x80, 0x00}, ErrOverlong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Uvarint(tt.in)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestString(t *testing.T) {
	b := AppendString(nil, "héllo")
	assert.Equal(t, len(b), StringLen("héllo"))
	s, rest, err := String(b, 10)
	require.NoError(t, err)
	assert.Equal(t, "héllo", s)
	assert.Empty(t, rest)

	_, _, err = String(b, 3)
	assert.ErrorIs(t, err, ErrTooLong)
	_, _, err = String(b[:3], 10)
	assert.ErrorIs(t, err, ErrTruncated)
}

func FuzzString(f *testing.F) {
	f.Add(AppendString(nil, "alice"))
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, rest, err := String(data, 1<<16)
		if err != nil {
			return
		}
		require.Equal(t, data, append(AppendString(nil, s), rest...))
	})
}
