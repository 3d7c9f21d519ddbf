// Package stat describes a package's counters and gauges where they are
// kept: each package that counts something lists a Desc per series (name,
// help, kind, how to read it now) next to its counters, and
// internal/metrics turns the lists into Prometheus collectors read at scrape
// time. It imports neither Prometheus nor any likesd package, so every
// package can declare its own series and only internal/metrics knows the
// exposition.
package stat

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind is what a series measures.
type Kind uint8

const (
	// Counter only grows, from 0 when its owner started.
	Counter Kind = iota
	// Gauge is a value now.
	Gauge
)

// Desc is one series: a metric without labels, or one series of a family
// whose series differ only by one constant label.
type Desc struct {
	Name string // likesd_..., ending in _total for a counter
	Help string // the same for every series of a family
	Kind Kind
	// Label and Value, when Label is set, are the series' constant label
	// (cap="peer"). The values are written out where the family is
	// declared, a closed set, so the series are bounded; a label whose
	// values come from outside (a member's name) does not belong here.
	Label, Value string
	// Read returns the value at scrape time. It may be called from any
	// goroutine and must not block for long.
	Read func() float64
}

// NewCounter describes a counter.
func NewCounter(name, help string, read func() uint64) Desc {
	return Desc{Name: name, Help: help, Kind: Counter, Read: func() float64 { return float64(read()) }}
}

// NewGauge describes a gauge.
func NewGauge(name, help string, read func() float64) Desc {
	return Desc{Name: name, Help: help, Kind: Gauge, Read: read}
}

// NewFlag describes a gauge that is 1 while read reports true, 0 otherwise.
func NewFlag(name, help string, read func() bool) Desc {
	return NewGauge(name, help, func() float64 {
		if read() {
			return 1
		}
		return 0
	})
}

// With returns d as the series of its family whose label is value.
func (d Desc) With(label, value string) Desc {
	d.Label, d.Value = label, value
	return d
}

var (
	validName  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	validLabel = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Check reports the first descriptor of ds that is not a valid series of
// its own: a name or label Prometheus would refuse, a counter not named
// _total (or a gauge named so), no help or no read, a series listed twice,
// or a family whose series disagree on help, kind or label name.
func Check(ds []Desc) error {
	seen := map[[2]string]bool{}
	family := map[string]Desc{}
	for _, d := range ds {
		switch {
		case !validName.MatchString(d.Name):
			return fmt.Errorf("stat: %q is not a valid metric name", d.Name)
		case d.Label != "" && (!validLabel.MatchString(d.Label) || strings.HasPrefix(d.Label, "__")):
			return fmt.Errorf("stat: %s: %q is not a valid label name", d.Name, d.Label)
		case d.Label == "" && d.Value != "":
			return fmt.Errorf("stat: %s: a label value with no label", d.Name)
		case (d.Kind == Counter) != strings.HasSuffix(d.Name, "_total"):
			return fmt.Errorf("stat: %s: a counter's name, and only a counter's, ends in _total", d.Name)
		case d.Kind != Counter && d.Kind != Gauge:
			return fmt.Errorf("stat: %s: unknown kind %d", d.Name, d.Kind)
		case d.Help == "" || d.Read == nil:
			return fmt.Errorf("stat: %s: no help or no read", d.Name)
		case seen[[2]string{d.Name, d.Value}]:
			return fmt.Errorf("stat: %s%s listed twice", d.Name, d.series())
		}
		seen[[2]string{d.Name, d.Value}] = true
		if f, ok := family[d.Name]; ok && (f.Help != d.Help || f.Kind != d.Kind || f.Label != d.Label) {
			return fmt.Errorf("stat: %s%s: its family's series disagree on help, kind or label", d.Name, d.series())
		}
		family[d.Name] = d
	}
	return nil
}

func (d Desc) series() string {
	if d.Label == "" {
		return ""
	}
	return fmt.Sprintf("{%s=%q}", d.Label, d.Value)
}
