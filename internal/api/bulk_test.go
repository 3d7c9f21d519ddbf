package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

func TestBulkImport(t *testing.T) {
	f := newFixture(t)
	f.store.Like("p1", "carol")
	got := f.do(t, "POST", "/v1/likes", `{"likes":[
		{"post":"p1","user":"alice"},
		{"user":"bob","post":"p1"},
		{"post":"p1","user":"carol"},
		{"post":"p2","user":"alice"},
		{"post":"p1","user":"alice"}
	]}`)
	require.Equal(t, http.StatusOK, got.status, got.raw)
	assert.Equal(t, map[string]any{"added": float64(3), "existing": float64(2), "errors": []any{}, "replicas": float64(1)}, got.body)
	assert.Equal(t, map[string]int{"p1": 3, "p2": 1}, f.store.Counts([]string{"p1", "p2"}))

	got = f.do(t, "POST", "/v1/likes", `{"likes":[]}`)
	assert.Equal(t, map[string]any{"added": float64(0), "existing": float64(0), "errors": []any{}, "replicas": float64(0)}, got.body)
}

// Each item is checked exactly as a single like is: the bad ones are
// reported by index and store nothing, the good ones are stored.
func TestBulkImportReportsBadItemsByIndex(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("x", 257)
	items := []struct {
		item     string
		wantCode string // "" for a valid item
	}{
		{`{"post":"p","user":"ok0"}`, ""},
		{`{"post":"p","User":"casey"}`, codeUnknownField},
		{`{"post":"p","user":""}`, codeInvalidID},
		{`{"post":"p","user":"a\ud800b"}`, codeInvalidID},
		{`{"post":"p","user":"ok4"}`, ""},
		{`"alice"`, codeBadJSON},
		{`{"post":"p","user":7}`, codeBadJSON},
		{`{"post":"p","user":"a","user":"b"}`, codeBadJSON},
		{`{"post":"` + long + `","user":"a"}`, codeInvalidID},
		{`{"user":"nopost"}`, codeInvalidID},
		{`{"post":"p","user":"a\u0007"}`, codeInvalidID},
		{`{"post":"p","user":"x","extra":{"deep":[1,2]}}`, codeUnknownField},
		{`{"post":null,"user":"x"}`, codeInvalidID},
		{"{\"post\":\"p\",\"user\":\"\xff\"}", codeInvalidID},
		{`[]`, codeBadJSON},
		{`{"post":"p","user":"ok15"}`, ""},
	}
	var parts []string
	var wantErrs []any
	for i, it := range items {
		parts = append(parts, it.item)
		if it.wantCode != "" {
			wantErrs = append(wantErrs, it.wantCode+fmt.Sprint(i))
		}
	}
	got := f.do(t, "POST", "/v1/likes", `{"likes":[`+strings.Join(parts, ",")+`]}`)
	require.Equal(t, http.StatusOK, got.status, got.raw)
	assert.Equal(t, float64(3), got.body["added"])
	assert.Equal(t, float64(0), got.body["existing"])
	var gotErrs []any
	for _, e := range got.body["errors"].([]any) {
		e := e.(map[string]any)
		assert.NotEmpty(t, e["message"])
		gotErrs = append(gotErrs, e["code"].(string)+fmt.Sprint(e["index"]))
	}
	assert.Equal(t, wantErrs, gotErrs)
	users, count, _ := f.store.Likers("p", "", 100)
	assert.Equal(t, []string{"ok0", "ok15", "ok4"}, users, "only the valid likes are stored")
	assert.Equal(t, 3, count)
	assert.Equal(t, 3, f.store.Stats().Likes)
}

// A body that fails as a whole stores nothing, not even the likes before
// the failure.
func TestBulkImportRejectsBadBodiesWhole(t *testing.T) {
	good := `{"post":"p","user":"a"}`
	many := strings.Repeat(good+",", DefaultConfig().MaxBulkLikes) + good
	tests := []struct {
		name, body string
		wantStatus int
		wantCode   string
	}{
		{"empty", ``, 400, codeBadJSON},
		{"not an object", `[` + good + `]`, 400, codeBadJSON},
		{"malformed after a good like", `{"likes":[` + good + `,{"post":"p","user":]}`, 400, codeBadJSON},
		{"truncated", `{"likes":[` + good + `,`, 400, codeBadJSON},
		{"unknown top-level field", `{"likes":[` + good + `],"dry_run":true}`, 400, codeUnknownField},
		{"top-level field in another case", `{"Likes":[` + good + `]}`, 400, codeUnknownField},
		{"likes not an array", `{"likes":{"post":"p","user":"a"}}`, 400, codeBadJSON},
		{"likes null", `{"likes":null}`, 400, codeBadJSON},
		{"likes missing", `{}`, 400, codeBadJSON},
		{"likes twice", `{"likes":[` + good + `],"likes":[]}`, 400, codeBadJSON},
		{"trailing data", `{"likes":[` + good + `]} x`, 400, codeBadJSON},
		{"two values", `{"likes":[` + good + `]}{"likes":[]}`, 400, codeBadJSON},
		{"one like too many", `{"likes":[` + many + `]}`, 413, codeTooManyLikes},
		{"body too large", `{"likes":[{"post":"p","user":"` + strings.Repeat("a", 9<<20) + `"}]}`, 413, codeBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			got := f.do(t, "POST", "/v1/likes", tt.body)
			assert.Equal(t, tt.wantStatus, got.status, got.raw)
			assert.Equal(t, tt.wantCode, got.body["error"].(map[string]any)["code"], got.raw)
			assert.Zero(t, f.store.Stats().Likes, "nothing is stored")
		})
	}
}

func TestBulkImportTakesTenThousand(t *testing.T) {
	f := newFixture(t)
	got := f.do(t, "POST", "/v1/likes", bulkBody(0, 10000, 100))
	require.Equal(t, http.StatusOK, got.status)
	assert.Equal(t, float64(10000), got.body["added"])
	assert.Equal(t, 10000, f.store.Stats().Likes)
}

// recordingReplicator keeps what each Replicate call was handed (copies:
// the API reuses its slices).
type recordingReplicator struct {
	mu    sync.Mutex
	likes []store.Like
	added []bool
}

func (r *recordingReplicator) Replicate(_ context.Context, _ acks.Level, likes []store.Like, added []bool) (acks.Result, vclock.Dot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.likes = append(r.likes, likes...)
	r.added = append(r.added, added...)
	return acks.Result{Replicas: 1, Want: 1}, vclock.Dot{}
}

// A bulk import goes to the cluster as any like does: every like through
// Replicate, each marked new or not as the store found it.
func TestBulkImportIsReplicated(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	st.Like("p", "old")
	out := &recordingReplicator{}
	srv, err := New(DefaultConfig(), st, &fakeMembers{}, zerolog.Nop(), Options{Replicator: out})
	require.NoError(t, err)
	f := &fixture{srv: srv, store: st}
	got := f.do(t, "POST", "/v1/likes", `{"likes":[{"post":"p","user":"old"},{"post":"p","user":"new"},{"post":"q","user":"new"}]}`)
	require.Equal(t, http.StatusOK, got.status, got.raw)
	out.mu.Lock()
	defer out.mu.Unlock()
	assert.Equal(t, []store.Like{{Post: "p", User: "old"}, {Post: "p", User: "new"}, {Post: "q", User: "new"}}, out.likes)
	assert.Equal(t, []bool{false, true, true}, out.added)
}

// bulkBody is a bulk import of n likes, perPost users for each post, with
// 8-byte user ids as the memory benchmark's.
func bulkBody(from, n, perPost int) string {
	var b strings.Builder
	b.WriteString(`{"likes":[`)
	for i := from; i < from+n; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"post":"p%07d","user":"u%07d"}`, i/perPost, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// BenchmarkBulkImport posts 10,000 new likes a time through the whole
// handler into a real store.
func BenchmarkBulkImport(b *testing.B) {
	f := newFixture(b)
	h := f.srv.Handler()
	const n = 10000
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		body := bulkBody(i*n, n, 100)
		req := httptest.NewRequest("POST", "/v1/likes", strings.NewReader(body))
		rec := httptest.NewRecorder()
		b.SetBytes(int64(len(body)))
		b.StartTimer()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/like")
}

// Concurrent imports share pooled buffers, never each other's likes.
func TestBulkImportsInParallel(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBulk = 8 // all at once: none shed
	f := newFixtureConfig(t, cfg)
	h := f.srv.Handler()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/likes", strings.NewReader(bulkBody((g*5+i)*500, 500, 50))))
				assert.Equal(t, http.StatusOK, rec.Code)
				assert.JSONEq(t, `{"added":500,"existing":0,"errors":[],"replicas":1}`, rec.Body.String())
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 8*5*500, f.store.Stats().Likes)
	users, count, _ := f.store.Likers("p0000007", "", 100)
	assert.Equal(t, 50, count)
	assert.Equal(t, "u0000350", users[0])
}
