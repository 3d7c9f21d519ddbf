package seeddesign

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The baseline must work, or what it measures means nothing.
func TestTwoSeedNodesReplicate(t *testing.T) {
	a, err := Start("a", "127.0.0.1", 0, "")
	require.NoError(t, err)
	defer a.Shutdown()
	b, err := Start("b", "127.0.0.1", 0, a.ml.LocalNode().Address())
	require.NoError(t, err)
	defer b.Shutdown()

	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/posts/p1/likes", strings.NewReader(`{"user":"alice"}`)))
	assert.Equal(t, http.StatusCreated, rec.Code)
	rec = httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/posts/p1/likes", strings.NewReader(`{"user":"alice"}`)))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Eventually(t, func() bool {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/posts/p1/likes/alice", nil))
		return strings.Contains(rec.Body.String(), `"liked":true`)
	}, 10*time.Second, 10*time.Millisecond)
}
