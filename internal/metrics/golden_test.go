package metrics

import (
	"flag"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/wal"
)

var update = flag.Bool("update", false, "rewrite testdata/exposition.golden from this code")

// fill sets every integer field of *p, nested structs' too, to a value of
// its own (from *next on), so a metric that reads the wrong field shows.
func fill(v reflect.Value, next *uint64) {
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Uint64:
			*next++
			f.SetUint(*next)
		case reflect.Int, reflect.Int64:
			*next++
			f.SetInt(int64(*next))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Struct:
			fill(f, next)
		}
	}
}

// distinctCluster is fakeCluster with every counter distinct.
type distinctCluster struct{ fakeCluster }

func (distinctCluster) Stats() cluster.Stats {
	var s cluster.Stats
	next := uint64(100)
	fill(reflect.ValueOf(&s).Elem(), &next)
	return s
}

type disk struct{}

func (disk) Stats() wal.Stats {
	var s wal.Stats
	next := uint64(1000)
	fill(reflect.ValueOf(&s).Elem(), &next)
	return s
}

// likesdLines is the likesd_ part of an exposition: HELP, TYPE and
// samples, in the order the registry writes them (sorted by name).
func likesdLines(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		name := line
		if f := strings.Fields(line); len(f) >= 3 && (f[1] == "HELP" || f[1] == "TYPE") {
			name = f[2]
		}
		if strings.HasPrefix(name, "likesd_") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// Every likesd_ series the exposition had before the metrics moved next to
// their counters (issue 21) is still there, with the same HELP, TYPE,
// labels and value: testdata/exposition.golden was written by the code
// that declared them all in this package. go test -update rewrites it
// after a deliberate change.
func TestExpositionMatchesTheGolden(t *testing.T) {
	m := New(distinctCluster{})
	m.WatchDisk(disk{})
	m.WatchBudget(budget{})
	m.ObserveLike(true)
	m.ObserveRefused(api.RefusedAuth)
	m.ObserveRequest("/v1/posts/{post}/likes", "POST", 201, 3*time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := likesdLines(rec.Body.String())
	const path = "testdata/exposition.golden"
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
}
