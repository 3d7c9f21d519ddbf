package main

import "testing"

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
