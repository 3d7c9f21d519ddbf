package api

import (
	"encoding/base64"
	"encoding/binary"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/vclock"
	"github.com/likesd/likesd/internal/wire"
)

const maxID = 256 // DefaultConfig().MaxIDBytes

// rawVersion encodes arbitrary bytes as a token would be.
func rawVersion(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// versionBytes builds a token's bytes field by field, so tests can break one.
func versionBytes(format byte, origin, seq uint64, post, user string) []byte {
	b := []byte{format}
	b = binary.BigEndian.AppendUint64(b, origin)
	b = binary.AppendUvarint(b, seq)
	b = wire.AppendString(b, post)
	return wire.AppendString(b, user)
}

func TestVersionRoundTrip(t *testing.T) {
	for _, v := range []Version{
		{Post: "p1", User: "alice"},
		{Dot: vclock.Dot{Origin: 1, Seq: 1}, Post: "p", User: "u"},
		{Dot: vclock.Dot{Origin: ^uint64(0), Seq: ^uint64(0)}, Post: strings.Repeat("p", maxID), User: strings.Repeat("ü", maxID/2)},
		{Dot: vclock.Dot{Origin: 0xdeadbeef, Seq: 0}, Post: "a/b c?d=e&f", User: "%zz+/="},
	} {
		s := v.String()
		assert.Regexp(t, `^[A-Za-z0-9_-]+$`, s, "URL-safe as it is")
		assert.LessOrEqual(t, len(s), maxVersionLen(maxID))
		got, err := ParseVersion(s, maxID)
		require.NoError(t, err, "%+v", v)
		assert.Equal(t, v, got)
	}
}

func TestVersionLayout(t *testing.T) {
	v := Version{Dot: vclock.Dot{Origin: 0x0102030405060708, Seq: 300}, Post: "p", User: "al"}
	b, err := base64.RawURLEncoding.DecodeString(v.String())
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 1, 2, 3, 4, 5, 6, 7, 8, 0xac, 0x02, 1, 'p', 2, 'a', 'l'}, b)
}

// Every valid version round-trips, and a version with an id no client may
// send (empty, too long, not UTF-8, with control characters) does not parse.
func TestVersionRoundTripProperty(t *testing.T) {
	const max = 16
	// Ids from pieces that are fine, multi-byte, or bad, of lengths around
	// max: about half the versions are valid.
	pieces := []string{"a", "b", "/", "%", "ü", "☃", "\x00", "\n", "\xff", "\xc3"}
	id := func(r *rand.Rand) string {
		var b strings.Builder
		for n := r.Intn(max + 3); b.Len() < n; {
			p := pieces[r.Intn(len(pieces))]
			if r.Intn(4) > 0 {
				p = pieces[r.Intn(6)] // mostly fine pieces
			}
			b.WriteString(p)
		}
		return b.String()
	}
	cfg := &quick.Config{MaxCount: 5000, Values: func(args []reflect.Value, r *rand.Rand) {
		edges := []uint64{0, 1, 127, 128, 1<<63 - 1, ^uint64(0), r.Uint64()}
		args[0] = reflect.ValueOf(edges[r.Intn(len(edges))])
		args[1] = reflect.ValueOf(edges[r.Intn(len(edges))])
		args[2] = reflect.ValueOf(id(r))
		args[3] = reflect.ValueOf(id(r))
	}}
	var valid, invalid int
	law := func(origin, seq uint64, post, user string) bool {
		v := Version{Dot: vclock.Dot{Origin: origin, Seq: seq}, Post: post, User: user}
		got, err := ParseVersion(v.String(), max)
		if checkID("post", post, max) != nil || checkID("user", user, max) != nil {
			invalid++
			return err != nil && got == Version{}
		}
		valid++
		return err == nil && got == v
	}
	require.NoError(t, quick.Check(law, cfg))
	assert.Greater(t, valid, 500, "the generator makes valid versions")
	assert.Greater(t, invalid, 500, "and invalid ones")
}

func TestParseVersionRejects(t *testing.T) {
	good := versionBytes(1, 7, 9, "p1", "alice")
	tooLong := strings.Repeat("x", maxID+1)
	tests := []struct {
		name, token string
	}{
		{"empty", ""},
		{"wrong format", rawVersion(versionBytes(2, 7, 9, "p1", "alice")...)},
		{"format zero", rawVersion(versionBytes(0, 7, 9, "p1", "alice")...)},
		{"only the format", rawVersion(1)},
		{"truncated origin", rawVersion(good[:5]...)},
		{"no seq", rawVersion(good[:9]...)},
		{"truncated post", rawVersion(good[:12]...)},
		{"no user", rawVersion(good[:13]...)},
		{"truncated user", rawVersion(good[:len(good)-1]...)},
		{"trailing byte", rawVersion(append(good[:len(good):len(good)], 0)...)},
		{"overlong seq", rawVersion(append(append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 7}, 0x89, 0x00), wire.AppendString(wire.AppendString(nil, "p"), "u")...)...)},
		{"empty post", rawVersion(versionBytes(1, 7, 9, "", "alice")...)},
		{"empty user", rawVersion(versionBytes(1, 7, 9, "p1", "")...)},
		{"post too long", rawVersion(versionBytes(1, 7, 9, tooLong, "alice")...)},
		{"user too long", rawVersion(versionBytes(1, 7, 9, "p1", tooLong)...)},
		{"user not utf-8", rawVersion(versionBytes(1, 7, 9, "p1", "\xff")...)},
		{"post with a newline", rawVersion(versionBytes(1, 7, 9, "a\nb", "alice")...)},
		{"padded", rawVersion(good...) + "="},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(Version{Post: "~~~~", User: "???>"}.String())},
		{"a newline inside", rawVersion(good[:6]...) + "\n" + rawVersion(good[6:]...)},
		{"a space", " " + rawVersion(good...)},
		{"set padding bits", rawVersion(good...)[:len(rawVersion(good...))-1] + "_"},
		{"impossible length", rawVersion(good...) + "A"},
		{"longer than any token", strings.Repeat("A", maxVersionLen(maxID)+1)},
	}
	require.Len(t, good, 1+8+1+3+6)
	_, err := ParseVersion(rawVersion(good...), maxID)
	require.NoError(t, err, "the cases break a good token")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion(tt.token, maxID)
			require.ErrorIs(t, err, ErrBadVersion)
			assert.Zero(t, got)
		})
	}
}

func FuzzParseVersion(f *testing.F) {
	f.Add(Version{Dot: vclock.Dot{Origin: 1, Seq: 1}, Post: "p1", User: "alice"}.String())
	f.Add(Version{Post: "a/b", User: "ü"}.String())
	f.Add(Version{Dot: vclock.Dot{Origin: ^uint64(0), Seq: ^uint64(0)}, Post: "p", User: "u"}.String())
	f.Add(rawVersion(versionBytes(2, 0, 0, "p", "u")...))
	f.Add(rawVersion(1, 0))
	f.Add("")
	f.Add("AQ==")
	f.Add("AQ\nAA")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s, maxID)
		if err != nil {
			require.ErrorIs(t, err, ErrBadVersion)
			return
		}
		require.Equal(t, s, v.String(), "one token per version")
		require.Nil(t, checkID("post", v.Post, maxID))
		require.Nil(t, checkID("user", v.User, maxID))
	})
}
