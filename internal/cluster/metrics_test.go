package cluster

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/stat"
)

// distinct reads a Stats whose every counter has a value of its own.
type distinct struct{}

func (distinct) Stats() Stats {
	var s Stats
	next := uint64(100)
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := range v.NumField() {
			switch f := v.Field(i); f.Kind() {
			case reflect.Uint64:
				next++
				f.SetUint(next)
			case reflect.Struct:
				fill(f)
			}
		}
	}
	fill(reflect.ValueOf(&s).Elem())
	return s
}
func (distinct) QueuedFrames() int         { return 1 }
func (distinct) PeerLikesRefused() uint64  { return 2 }
func (distinct) PeerLikesDeferred() uint64 { return 3 }
func (distinct) Ready() bool               { return true }

// Every counter the node keeps in Stats is exposed by exactly one series,
// so a counter added without its series shows here. WritesUnsynced was
// never exposed (it is read by tests only).
func TestMetricsExposeEveryStatsField(t *testing.T) {
	ds := Metrics(distinct{})
	require.NoError(t, stat.Check(ds))
	read := map[float64][]string{}
	for _, d := range ds {
		read[d.Read()] = append(read[d.Read()], d.Name+"{"+d.Value+"}")
	}
	notExposed := map[string]bool{"WritesUnsynced": true}
	s := distinct{}.Stats()
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			name := path + v.Type().Field(i).Name
			switch f := v.Field(i); f.Kind() {
			case reflect.Struct:
				walk(f, name+".")
			case reflect.Uint64:
				if notExposed[name] {
					assert.Empty(t, read[float64(f.Uint())], name)
					continue
				}
				assert.Len(t, read[float64(f.Uint())], 1, "%s is read by one series: %v", name, read[float64(f.Uint())])
			}
		}
	}
	walk(reflect.ValueOf(s), "")
}
