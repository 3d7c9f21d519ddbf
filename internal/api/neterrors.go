package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// net/http answers some requests itself, before any handler runs: a
// request line or header it cannot parse (a bad escape such as
// /v1/posts/a%zz/likes, a missing Host), headers too large, an unknown
// transfer coding. It writes those replies in one Write on the connection,
// as text/plain and with this exact header block; netHTTPErrorsAsJSON
// rewrites them into the API's JSON error shape, with an X-Request-Id.
// Handler replies never match: net/http always adds Date (and a length or
// chunking) to them, between and after these two headers.
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// netHTTPErrorsAsJSON is the listener Serve uses: its connections rewrite
// net/http's own error replies.
type netHTTPErrorsAsJSON struct {
	net.Listener
	s *Server
}

func (l netHTTPErrorsAsJSON) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c, s: l.s}, nil
}

type jsonErrorConn struct {
	net.Conn
	s *Server
}

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	status, message, ok := parseNetHTTPError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	id := c.s.nextRequestID()
	c.s.log.Info().Str("req_id", id).Int("status", status).Str("remote", c.RemoteAddr().String()).
		Str("error", message).Msg("request rejected by net/http")
	if _, err := c.Conn.Write(netHTTPErrorReply(status, message, id)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite lets net/http half-close as it does on a plain TCP connection.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// parseNetHTTPError recognizes one of net/http's own error replies and
// returns its status and what it says.
func parseNetHTTPError(p []byte) (status int, message string, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !found {
		return 0, "", false
	}
	// The header block right after the status line; looked for there only,
	// so a handler's reply costs a scan of its status line.
	eol := bytes.Index(rest, []byte("\r\n"))
	if eol < 3 || !bytes.HasPrefix(rest[eol:], []byte(netHTTPErrorHeaders)) {
		return 0, "", false
	}
	statusLine, body := rest[:eol], rest[eol+len(netHTTPErrorHeaders):]
	status, err := strconv.Atoi(string(statusLine[:3]))
	if err != nil {
		return 0, "", false
	}
	// The body repeats the status line, with a reason after ": " for some.
	text := string(body)
	if _, reason, found := strings.Cut(text, ": "); found {
		text = reason
	} else if strings.HasPrefix(text, strconv.Itoa(status)+" ") {
		text = ""
	}
	switch {
	case text != "":
		message = text
	case status == http.StatusBadRequest:
		message = "malformed HTTP request: the request line, a header or the URL is not valid (in paths and queries escape % as %25)"
	case status == http.StatusRequestHeaderFieldsTooLarge:
		message = "request headers are too large"
	default:
		message = strings.ToLower(http.StatusText(status))
	}
	return status, message, true
}

// netHTTPErrorReply is a whole HTTP response carrying the API's error
// shape; the code is the status text in snake case (bad_request,
// request_header_fields_too_large, not_implemented...).
func netHTTPErrorReply(status int, message, requestID string) []byte {
	code := strings.ToLower(strings.NewReplacer(" ", "_", "-", "_").Replace(http.StatusText(status)))
	body, _ := json.Marshal(errorBody{errorDetail{code, message}})
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nX-Request-Id: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), requestID, len(body), body)
}
