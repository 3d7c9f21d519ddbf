package api

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// maxRateClients bounds the clients clientRates keeps a bucket for: a
// client per remote address would otherwise be memory any scan of
// addresses could grow.
const maxRateClients = 16384

// clientRates is a token bucket per client for bulk imports. Past
// maxRateClients clients the bucket used least recently is forgotten, one
// at a time: a flood of new addresses evicts idle clients first and resets
// no one else's limit at once (a client that keeps asking stays recently
// used), while memory stays bounded. A forgotten client starts again with
// a full bucket, as it would once idle that long.
type clientRates struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  *simplelru.LRU[string, *rate.Limiter]
}

func newClientRates(perSecond float64, burst int) *clientRates {
	if perSecond == 0 {
		return nil
	}
	m, err := simplelru.NewLRU[string, *rate.Limiter](maxRateClients, nil)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &clientRates{limit: rate.Limit(perSecond), burst: burst, m: m}
}

// allow takes a token from client's bucket.
func (c *clientRates) allow(client string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m.Get(client)
	if !ok {
		l = rate.NewLimiter(c.limit, c.burst)
		c.m.Add(client, l) // evicts the least recently used past maxRateClients
	}
	return l.AllowN(now, 1)
}

// len is the number of clients with a bucket.
func (c *clientRates) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Len()
}

// clientOf is who a request comes from, for rate limits: its API token's
// name when it carried one (tokens.go), else its remote address: an IPv4
// address whole (an IPv4 address mapped into IPv6 too), an IPv6 address
// by its /64, the least a site or a host is given, so that a client
// cannot take a fresh bucket per address of its own network.
//
// X-Forwarded-For is not trusted: behind a proxy or a load balancer that
// rewrites source addresses (SNAT), every client is the proxy's address
// and shares one bucket (docs/api.md).
func clientOf(r *http.Request) string {
	if name := tokenName(r.Context()); name != "" {
		return "token:" + name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host // not an IP address (a test's, or a unix socket's): as it is
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}
