package ids

import (
	"strings"
	"testing"
	"testing/quick"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		id   string
		want Problem
	}{
		{"alice", OK}, {"a/b c%", OK}, {"é日本", OK}, {strings.Repeat("x", 256), OK},
		{"", Empty}, {strings.Repeat("x", 257), TooLong},
		{"a\x00b", HasControl}, {"\n", HasControl}, {"a\x7f", HasControl}, {"a\u0085", HasControl},
		{"a\xffb", NotUTF8}, {"\xed\xa0\x80", NotUTF8}, // a surrogate's encoding
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Check(tt.id, 256), "%q", tt.id)
	}
}

// Check agrees with the plain statement of the rule.
func TestCheckMatchesTheRule(t *testing.T) {
	naive := func(id string) Problem {
		switch {
		case id == "":
			return Empty
		case len(id) > 16:
			return TooLong
		case !utf8.ValidString(id):
			return NotUTF8
		case strings.ContainsFunc(id, unicode.IsControl):
			return HasControl
		}
		return OK
	}
	f := func(b []byte) bool {
		return Check(string(b), 16) == naive(string(b)) && CheckBytes(b, 16) == naive(string(b))
	}
	assert.NoError(t, quick.Check(f, &quick.Config{MaxCount: 20000}))
	for _, s := range []string{"a\x00", "\xc3", "\u2028", "\U0010FFFF", "a\u009f"} {
		assert.Equal(t, naive(s), Check(s, 16), "%q", s)
	}
}
