package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/membudget"
	"github.com/likesd/likesd/internal/store"
)

// labelSets records the label sets the Observer is given and the refusals.
type labelSets struct {
	mu      sync.Mutex
	sets    map[[2]string]bool
	refused map[string]int
}

func (l *labelSets) ObserveRequest(route, method string, _ int, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sets[[2]string{route, method}] = true
}
func (l *labelSets) ObserveLike(bool) {}
func (l *labelSets) ObserveRefused(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused[reason]++
}

func (l *labelSets) counts() (sets int, refused map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.refused {
		out[k] = v
	}
	return len(l.sets), out
}

// usedMemory is what membudget reads: the Go runtime's memory but the heap
// it has released, or the resident memory when that is more (under -race
// the detector's shadow memory is resident too).
func usedMemory() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	used := int64(s[0].Value.Uint64() - min(s[1].Value.Uint64(), s[0].Value.Uint64()))
	if raw, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(raw)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				used = max(used, pages*int64(os.Getpagesize()))
			}
		}
	}
	return used
}

// hostileID is the n-th flood id: 256 random printable bytes, made again
// from n when checked (the test keeps numbers, not ids: its own memory is
// the node's here).
func hostileID(n uint64) string {
	var b [256]byte
	x := n*0x9e3779b97f4a7c15 + 0x5eed
	for i := 0; i < len(b); i += 8 {
		// splitmix64: cheap, and the same bytes for the same n
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		for j := range 8 {
			c := byte('#' + (z>>(8*j))%89) // printable, no '"' and no '\\'
			if c == '\\' {
				c = 'x'
			}
			b[i+j] = c
		}
	}
	return string(b[:])
}

// hostileBulk is the body of likes first to first+n-1.
func hostileBulk(first uint64, n int) []byte {
	b := make([]byte, 0, n*290)
	b = append(b, `{"likes":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		id := first + uint64(i)
		b = append(b, `{"post":"p`...)
		b = strconv.AppendUint(b, id%64, 10)
		b = append(b, `","user":"`...)
		b = append(b, hostileID(id)...)
		b = append(b, `"}`...)
	}
	return append(b, `]}`...)
}

type hostileReply struct {
	status int
	code   string
	json   bool
}

func hostileDo(c *http.Client, method, url string, body []byte, header ...string) (hostileReply, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return hostileReply{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return hostileReply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return hostileReply{}, err
	}
	var e errorBody
	ok := json.Unmarshal(raw, &e) == nil || json.Valid(raw)
	return hostileReply{status: resp.StatusCode, code: e.Error.Code, json: ok && resp.Header.Get("Content-Type") == "application/json; charset=utf-8"}, nil
}

// One client cannot take the node down (issue #20). A real Server on
// loopback, under a memory budget a few MiB over what the process uses, is
// hit at once by: requests with made-up methods and paths, headers far
// over the bound, bodies that never finish, a flood of bulk imports of
// fresh random 256-byte ids, and a loop re-sending one bulk import it
// already holds. Meanwhile another client reads. The node must answer
// every request it reads in JSON, stay under its memory limit, refuse new
// likes with 507 (and shed with 429), lose no like it acknowledged, keep
// its metric labels bounded, and keep serving the reader.
func TestHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("floods memory for a few seconds")
	}
	debug.FreeOSMemory() // what earlier tests left is not counted
	base := usedMemory()
	bcfg := membudget.DefaultConfig()
	bcfg.RefuseAt, bcfg.ResumeBelow, bcfg.Interval = 0.7, 0.05, 5*time.Millisecond
	bcfg.Limit = int64(float64(base+12<<20) / bcfg.RefuseAt) // refuse ~12 MiB over what the process uses now
	// As likesd runs: the runtime's soft limit under the container's.
	old := debug.SetMemoryLimit(bcfg.Limit / 10 * 9)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	budget, err := membudget.New(bcfg, zerolog.Nop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	budgetDone := make(chan struct{})
	go func() { defer close(budgetDone); budget.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-budgetDone })

	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.MaxBulk, cfg.MaxWrites, cfg.MaxReads = 2, 32, 32
	// Stalled bodies are cut after ReadTimeout; it is long enough for a
	// flood's 140 KB body on a machine slowed by the race detector.
	cfg.ReadTimeout, cfg.ReadHeaderTimeout = 3*time.Second, time.Second
	labels := &labelSets{sets: map[[2]string]bool{}, refused: map[string]int{}}
	srv, err := New(cfg, st, m, zerolog.Nop(), Options{Observer: labels, Budget: budget})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); assert.NoError(t, <-served) })
	url := "http://" + ln.Addr().String()

	// The memory the process uses, at its highest, while this runs.
	var peak atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			if u := budget.Used(); u > peak.Load() {
				peak.Store(u)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	deadline := time.Now().Add(60 * time.Second) // bounds every loop below; they end far sooner (2 s; 10 s with -race)
	var wg sync.WaitGroup
	var stop atomic.Bool
	var notJSON atomic.Int64
	check := func(r hostileReply) {
		if !r.json {
			notJSON.Add(1)
		}
	}

	// The import the repeat loop sends again and again, stored first.
	dup := hostileBulk(1<<60, 200)
	{
		r, err := hostileDo(http.DefaultClient, "POST", url+"/v1/likes", dup)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.status)
	}

	// The flood: bulk imports of fresh ids, 500 a request, from 4 clients.
	var next atomic.Uint64
	var acked sync.Map // first id of each import answered 200 → its size
	var refusedMemory, shed atomic.Int64
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for !stop.Load() && time.Now().Before(deadline) {
				first := next.Add(500) - 500
				r, err := hostileDo(c, "POST", url+"/v1/likes", hostileBulk(first, 500))
				if err != nil {
					continue
				}
				check(r)
				switch r.status {
				case http.StatusOK:
					acked.Store(first, 500)
				case http.StatusInsufficientStorage:
					refusedMemory.Add(1)
				case http.StatusTooManyRequests:
					shed.Add(1)
				default:
					t.Errorf("flood: status %d %s", r.status, r.code)
				}
			}
		})
	}

	// Repeats: one import this node holds (stored before the flood),
	// sent again and again.
	var dupOK, dupOKOver atomic.Int64
	wg.Go(func() {
		c := &http.Client{Timeout: 10 * time.Second}
		for !stop.Load() && time.Now().Before(deadline) {
			over := budget.Over()
			r, err := hostileDo(c, "POST", url+"/v1/likes", dup)
			if err != nil {
				continue
			}
			check(r)
			switch r.status {
			case http.StatusOK:
				dupOK.Add(1)
				if over {
					dupOKOver.Add(1)
				}
			case http.StatusTooManyRequests:
			default:
				t.Errorf("repeats: status %d %s", r.status, r.code)
			}
		}
	})

	// Made-up methods and paths, and headers far over the bound.
	wg.Go(func() {
		c := &http.Client{Timeout: 10 * time.Second}
		for i := 0; i < 2000 && !stop.Load() && time.Now().Before(deadline); i++ {
			method := fmt.Sprintf("X%dY", i)
			r, err := hostileDo(c, method, fmt.Sprintf("%s/v1/posts/p%d/likes/%d?x=%d", url, i, i, i), nil)
			if err == nil {
				check(r)
				assert.Equal(t, http.StatusMethodNotAllowed, r.status)
			}
			r, err = hostileDo(c, "GET", fmt.Sprintf("%s/nowhere/%d", url, i), nil)
			if err == nil {
				check(r)
				assert.Equal(t, http.StatusNotFound, r.status)
			}
			if i%50 == 0 {
				r, err = hostileDo(c, "GET", url+"/v1/posts/p/likes", nil, "X-Big", strings.Repeat("h", 256<<10))
				if err == nil {
					check(r)
					assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r.status)
				}
			}
		}
	})

	// Bodies that never finish: the server's read timeout ends them.
	for range 4 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if !assert.NoError(t, err) {
				return
			}
			defer func() { _ = conn.Close() }()
			_, _ = io.WriteString(conn, "POST /v1/posts/p/likes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"user\":")
			_ = conn.SetReadDeadline(deadline)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil { // the server may answer the cut body before closing
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			}
			_, err = conn.Read(make([]byte, 1))
			assert.Error(t, err, "the server closed the stalled connection")
			assert.True(t, time.Now().Before(deadline), "and before the test's deadline")
		})
	}

	// Another client reads throughout; every read is answered.
	var reads, readsOK atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c := &http.Client{Timeout: 5 * time.Second}
		for !stop.Load() && time.Now().Before(deadline) {
			r, err := hostileDo(c, "GET", url+"/v1/counts?post=p1&post=p2", nil)
			reads.Add(1)
			if err == nil && r.status == http.StatusOK {
				readsOK.Add(1)
			}
			time.Sleep(5 * time.Millisecond) // a reader's pace, not an assertion
		}
	}()

	// The flood runs until the node has refused new likes for a while.
	require.Eventually(t, func() bool { return refusedMemory.Load() >= 20 && dupOKOver.Load() >= 1 }, time.Until(deadline), 10*time.Millisecond,
		"the node never refused the flood (used %d of %d)", budget.Used(), bcfg.Limit)
	stop.Store(true)
	wg.Wait()
	<-readerDone
	close(stopWatch)
	<-watchDone

	assert.Zero(t, notJSON.Load(), "every reply is JSON")
	assert.LessOrEqual(t, peak.Load(), bcfg.Limit, "the node stayed under its memory limit")
	assert.Equal(t, reads.Load(), readsOK.Load(), "every read was answered")
	assert.Positive(t, dupOKOver.Load(), "repeats are served over the budget")
	sets, refused := labels.counts()
	assert.LessOrEqual(t, sets, 16, "metric label sets stay bounded")
	assert.Positive(t, refused[RefusedMemory])

	lost := 0
	acked.Range(func(k, v any) bool {
		first := k.(uint64)
		for i := range uint64(v.(int)) {
			if !st.Has(fmt.Sprintf("p%d", (first+i)%64), hostileID(first+i)) {
				lost++
			}
		}
		return true
	})
	assert.Zero(t, lost, "every acknowledged like is held")
	t.Logf("limit %d MiB (refuse at %d MiB), peak %d MiB; %d likes stored; flood: %d imports refused 507, %d shed 429; repeats answered %d (%d over budget); %d reads; refusals %v",
		bcfg.Limit>>20, budget.Mark()>>20, peak.Load()>>20, st.Stats().Likes, refusedMemory.Load(), shed.Load(), dupOK.Load(), dupOKOver.Load(), reads.Load(), refused)
}
