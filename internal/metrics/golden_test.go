package metrics

import (
	"flag"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/membudget"
	"github.com/likesd/likesd/internal/stat"
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

// The series every package declares beside its counters are, together,
// valid Prometheus series, each listed once, families consistent; and
// every family the exposition holds has a valid name, likesd_ or the
// client's own (go_, process_, promhttp_).
func TestDeclaredSeriesAreUniqueAndValid(t *testing.T) {
	var all []stat.Desc
	all = append(all, cluster.Metrics(distinctCluster{})...)
	all = append(all, wal.Metrics(disk{}.Stats)...)
	all = append(all, membudget.Metrics(budget{})...)
	require.NoError(t, stat.Check(all))

	m := New(distinctCluster{})
	m.WatchDisk(disk{})
	m.WatchBudget(budget{})
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	valid := regexp.MustCompile(`^(likesd|go|process|promhttp)_[a-z0-9_]+$`)
	families := map[string]bool{}
	for _, mf := range mfs {
		assert.Regexp(t, valid, mf.GetName())
		assert.False(t, families[mf.GetName()], "%s gathered twice", mf.GetName())
		families[mf.GetName()] = true
	}
	for _, d := range all {
		assert.True(t, families[d.Name], "%s is exposed", d.Name)
	}
}
