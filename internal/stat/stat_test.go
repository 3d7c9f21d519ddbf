package stat

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestConstructorsRead(t *testing.T) {
	var n uint64 = 7
	c := NewCounter("x_total", "h", func() uint64 { return n })
	n = 9
	assert.Equal(t, Counter, c.Kind)
	assert.Equal(t, 9.0, c.Read(), "read at scrape time, not when declared")
	on := false
	f := NewFlag("up", "h", func() bool { return on })
	assert.Equal(t, Gauge, f.Kind)
	assert.Equal(t, 0.0, f.Read())
	on = true
	assert.Equal(t, 1.0, f.Read())
	w := c.With("cap", "peer")
	assert.Equal(t, [2]string{"cap", "peer"}, [2]string{w.Label, w.Value})
	assert.Empty(t, c.Label, "With copies")
}

func TestCheck(t *testing.T) {
	zero := func() uint64 { return 0 }
	ok := []Desc{
		NewCounter("likesd_a_total", "a", zero),
		NewCounter("likesd_b_total", "b", zero).With("cap", "x"),
		NewCounter("likesd_b_total", "b", zero).With("cap", "y"),
		NewGauge("likesd_c", "c", func() float64 { return 0 }),
	}
	assert.NoError(t, Check(ok))
	for name, bad := range map[string][]Desc{
		"twice":            {ok[0], ok[0]},
		"same label twice": {ok[1], ok[1]},
		"invalid name":     {NewCounter("likesd-a_total", "a", zero)},
		"digit first":      {NewGauge("1likesd", "a", func() float64 { return 0 })},
		"invalid label":    {NewCounter("likesd_a_total", "a", zero).With("a-b", "x")},
		"reserved label":   {NewCounter("likesd_a_total", "a", zero).With("__name", "x")},
		"value, no label":  {{Name: "likesd_a_total", Help: "a", Value: "x", Read: ok[0].Read}},
		"counter no total": {NewCounter("likesd_a", "a", zero)},
		"gauge as total":   {NewGauge("likesd_a_total", "a", func() float64 { return 0 })},
		"no help":          {NewCounter("likesd_a_total", "", zero)},
		"no read":          {{Name: "likesd_a_total", Help: "a"}},
		"unknown kind":     {{Name: "likesd_a", Help: "a", Kind: 7, Read: ok[0].Read}},
		"help differs":     {ok[1], NewCounter("likesd_b_total", "other", zero).With("cap", "z")},
		"label differs":    {ok[1], NewCounter("likesd_b_total", "b", zero).With("kind", "z")},
		"labelled, not":    {ok[1], NewCounter("likesd_b_total", "b", zero)},
	} {
		assert.Error(t, Check(bad), name)
	}
}
