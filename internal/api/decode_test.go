package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzLikeBody holds the strict reader to encoding/json as a reference:
// whatever body it accepts, encoding/json reads as exactly the same object
// (one field per name, same strings). The reverse does not hold on purpose:
// encoding/json also takes "User", duplicates and half surrogate pairs.
func FuzzLikeBody(f *testing.F) {
	for _, seed := range []string{
		`{"user":"alice"}`, `{"post":"p","user":"a"}`, `{"User":"x"}`, `{"user":"a","user":"b"}`,
		`{"user":"a\ud800b"}`, `{"user":"\ud83d\ude00"}`, `{"u\u0073er":"x"}`, `{"user":null}`,
		` {"user" : "a" } `, `{"user":"a"} x`, "{\"user\":\"\xff\"}", `{"user":"\u0000"}`, `[]`, ``,
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	s := newFixture(f).srv
	f.Fuzz(func(t *testing.T, body string, withPost bool) {
		req := httptest.NewRequest("POST", "/like", strings.NewReader(body))
		post, user, e := s.readLikeBody(httptest.NewRecorder(), req, withPost)
		if e != nil {
			require.NotEmpty(t, e.code)
			require.NotEmpty(t, e.message)
			return
		}
		var ref map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &ref), "accepted, so valid JSON: %q", body)
		want := map[string]any{"user": user}
		if withPost {
			want["post"] = post
		}
		require.Equal(t, want, ref, "body %q", body)
		require.Nil(t, checkID("user", user, s.cfg.MaxIDBytes))
	})
}
