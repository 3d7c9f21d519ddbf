package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
)

// API tokens (optional; off unless likesd is given --api-token-file). The
// file holds one token a line, "<scope> <name> <token>":
//
//	# blank lines and lines starting with # are ignored
//	write importer 3q2+7w...   # may like and read
//	read  dashboard k9Fz...    # may only read
//
// With tokens, every write (single likes and bulk imports) needs
// "Authorization: Bearer <token>" of a write token: no token or an unknown
// one is 401, a read token 403. Reads need a token (read or write) only if
// the file holds at least one read token; otherwise they stay open. The
// name is what logs and per-client rate limits use, never the token. The
// admin routes never take tokens (probes carry none): keep them on
// --admin-addr.

// Scope is what a token allows.
type Scope uint8

const (
	ScopeRead  Scope = iota + 1 // reads
	ScopeWrite                  // reads and writes
)

// MinTokenBytes bounds a token from below: a short one is guessed.
const MinTokenBytes = 16

// maxTokens bounds a token file: every request's check compares against
// every token.
const maxTokens = 1024

// ErrTokens marks an invalid token file.
var ErrTokens = errors.New("api: invalid token file")

type token struct {
	name  string
	scope Scope
	sum   [sha256.Size]byte
}

// Tokens are the API tokens a Server accepts. Create them with
// ParseTokens.
type Tokens struct {
	tokens []token
	// readsNeedToken: the file has read tokens, so reads need one too.
	readsNeedToken bool
}

// ParseTokens reads a token file (the format is above).
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	sums := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return nil, fmt.Errorf(`%w: line %d: want "<read|write> <name> <token>"`, ErrTokens, line)
		}
		var scope Scope
		switch f[0] {
		case "read":
			scope, t.readsNeedToken = ScopeRead, true
		case "write":
			scope = ScopeWrite
		default:
			return nil, fmt.Errorf("%w: line %d: scope %q: want read or write", ErrTokens, line, f[0])
		}
		name, secret := f[1], f[2]
		switch {
		case names[name]:
			return nil, fmt.Errorf("%w: line %d: name %q is given twice", ErrTokens, line, name)
		case len(secret) < MinTokenBytes:
			return nil, fmt.Errorf("%w: line %d (%s): a token needs at least %d bytes (e.g. head -c 32 /dev/urandom | base64)", ErrTokens, line, name, MinTokenBytes)
		case strings.ContainsFunc(secret, func(c rune) bool { return c > unicode.MaxASCII || !unicode.IsPrint(c) }):
			return nil, fmt.Errorf("%w: line %d (%s): a token is printable ASCII", ErrTokens, line, name)
		}
		sum := sha256.Sum256([]byte(secret))
		if sums[sum] {
			return nil, fmt.Errorf("%w: line %d (%s): the same token is given twice", ErrTokens, line, name)
		}
		names[name], sums[sum] = true, true
		t.tokens = append(t.tokens, token{name: name, scope: scope, sum: sum})
		if len(t.tokens) > maxTokens {
			return nil, fmt.Errorf("%w: more than %d tokens", ErrTokens, maxTokens)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokens, err)
	}
	if len(t.tokens) == 0 {
		return nil, fmt.Errorf("%w: no tokens", ErrTokens)
	}
	return t, nil
}

// lookup finds the token presented. It compares the presented token's hash
// with every token's, all of them every time and each in constant time, so
// the time taken says nothing of how much of which token matched.
func (t *Tokens) lookup(presented string) (token, bool) {
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range t.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.tokens[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return token{}, false
	}
	return t.tokens[found], true
}

type tokenNameKey struct{}

// tokenName is the name of the token a request carried ("" without one).
func tokenName(ctx context.Context) string {
	name, _ := ctx.Value(tokenNameKey{}).(string)
	return name
}

// authorize serves h if the request carries a token of scope (or the
// tokens do not ask for one), else answers 401 or 403.
func (s *Server) authorize(scope Scope, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) *apiError {
		t := s.tokens
		if t == nil || (scope == ScopeRead && !t.readsNeedToken) {
			return h(w, r)
		}
		auth := r.Header.Get("Authorization")
		// The scheme is case-insensitive (RFC 7235); the token is not.
		const scheme = "Bearer "
		ok := len(auth) > len(scheme) && strings.EqualFold(auth[:len(scheme)], scheme)
		presented := ""
		if ok {
			presented = auth[len(scheme):]
		}
		if !ok || presented == "" {
			s.observe.ObserveRefused(RefusedAuth)
			w.Header().Set("WWW-Authenticate", `Bearer realm="likesd"`)
			return &apiError{http.StatusUnauthorized, codeUnauthorized, "this node needs an API token: send Authorization: Bearer <token>"}
		}
		tok, ok := t.lookup(presented)
		if !ok {
			s.observe.ObserveRefused(RefusedAuth)
			w.Header().Set("WWW-Authenticate", `Bearer realm="likesd", error="invalid_token"`)
			return &apiError{http.StatusUnauthorized, codeUnauthorized, "the API token is not one this node accepts"}
		}
		if tok.scope < scope {
			s.observe.ObserveRefused(RefusedAuth)
			return &apiError{http.StatusForbidden, codeForbidden, "token " + tok.name + " may only read; writes need a write token"}
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), tokenNameKey{}, tok.name)))
	}
}
