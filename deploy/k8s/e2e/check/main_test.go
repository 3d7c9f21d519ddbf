package main

import (
	"testing"
	"time"
)

func TestBadLine(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"level":"info","component":"cluster","message":"joined cluster"}`, ""},
		{`{"level":"warn","component":"cluster","message":"join failed"}`, ""},
		{`{"level":"error","component":"memberlist","message":"Failed to send UDP ping: write udp [::]:7946->10.250.1.3:7946: use of closed network connection"}`,
			"error [memberlist] Failed to send UDP ping: write udp ADDR->ADDR: use of closed network connection"},
		{`{"level":"error","component":"api","method":"GET","route":"/readyz","status":503,"message":"request"}`,
			"error [api] request GET /readyz → 503"},
		{`panic: boom`, "not JSON: panic: boom"},
	} {
		if got := badLine(tc.line); got != tc.want {
			t.Errorf("badLine(%s)\n got %q\nwant %q", tc.line, got, tc.want)
		}
	}
}

func TestBursts(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		at   []time.Duration
		want string
	}{
		{nil, ""},
		{[]time.Duration{s}, " at +1.0–1.0s (1)"},
		{[]time.Duration{s, 2 * s, 5 * s, 6 * s, 7 * s}, " at +1.0–2.0s (2) +5.0–7.0s (3)"},
	} {
		if got := bursts(tc.at); got != tc.want {
			t.Errorf("bursts(%v) = %q, want %q", tc.at, got, tc.want)
		}
	}
}
