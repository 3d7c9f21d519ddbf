package api

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// discardWriter is a ResponseWriter that keeps only the status: the
// benchmark measures the handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

// BenchmarkPostLike posts a fresh like through the whole handler, its
// middleware included (request id, access log at a level that writes
// nothing, observer, shedding), as the server runs it; what the HTTP
// server itself allocates per request (the *http.Request, its context,
// the connection's buffers) is not in it. Run it with
//
//	go test -run '^$' -bench BenchmarkPostLike -benchmem ./internal/api/
func BenchmarkPostLike(b *testing.B) {
	f := newFixture(b)
	h := f.srv.Handler()
	req, err := http.NewRequest(http.MethodPost, "/v1/posts/post-1/likes", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	req.RequestURI = "/v1/posts/post-1/likes"
	body := bytes.NewReader(nil)
	rc := io.NopCloser(body)
	var buf []byte
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf = strconv.AppendInt(append(buf[:0], `{"user":"user-`...), int64(i), 10) // a fresh like every time
		buf = append(buf, `"}`...)
		body.Reset(buf)
		req.Body = rc
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.status != http.StatusCreated {
			b.Fatalf("status %d", w.status)
		}
		i++
	}
}
