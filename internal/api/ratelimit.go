package api

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxRateClients bounds the clients clientRates keeps a bucket for: a
// client per remote address would otherwise be memory any scan of
// addresses could grow.
const maxRateClients = 16384

// clientRates is a token bucket per client for bulk imports.
type clientRates struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newClientRates(perSecond float64, burst int) *clientRates {
	if perSecond == 0 {
		return nil
	}
	return &clientRates{limit: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// allow takes a token from client's bucket.
func (c *clientRates) allow(client string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[client]
	if !ok {
		if len(c.m) >= maxRateClients {
			c.forgetIdleLocked(now)
		}
		l = rate.NewLimiter(c.limit, c.burst)
		c.m[client] = l
	}
	return l.AllowN(now, 1)
}

// forgetIdleLocked drops the buckets that are full again (their client
// would get the same from a new one); if every bucket is in use, all are
// dropped: memory stays bounded, and a flood of more clients than that
// costs fairness for a moment, not the node.
func (c *clientRates) forgetIdleLocked(now time.Time) {
	for k, l := range c.m {
		if l.TokensAt(now) >= float64(c.burst) {
			delete(c.m, k)
		}
	}
	if len(c.m) >= maxRateClients {
		clear(c.m)
	}
}

// clientOf is who a request comes from, for rate limits: its API token's
// name when it carried one (tokens.go), else its remote IP address.
func clientOf(r *http.Request) string {
	if name := tokenName(r.Context()); name != "" {
		return "token:" + name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
