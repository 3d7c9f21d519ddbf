package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// Error codes: the stable, machine-readable part of an error reply.
const (
	codeBadJSON          = "bad_json"
	codeUnknownField     = "unknown_field"
	codeInvalidID        = "invalid_id"
	codeInvalidParam     = "invalid_param"
	codeBodyTooLarge     = "body_too_large"
	codeTooManyLikes     = "too_many_likes"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeInternal         = "internal"
	codeBadRequest       = "bad_request" // a request no route can take (a target of *)
	codeVersionNotSeen   = "version_not_seen"
	codeDiskUnwritable   = "disk_unwritable"
	codeOverloaded       = "overloaded"         // 429: a compartment is full (shed.go)
	codeRateLimited      = "rate_limited"       // 429: a client's bulk imports over its rate
	codeOverBudget       = "over_memory_budget" // 507: a new like past the memory budget
	codeUnauthorized     = "unauthorized"       // 401
	codeForbidden        = "forbidden"          // 403
	// Requests net/http rejects before any handler runs get the code of
	// their status (see netHTTPErrorReply): bad_request,
	// request_header_fields_too_large, not_implemented,
	// http_version_not_supported...
)

// apiError is a failure a handler reports; writeError turns it into the one
// JSON shape every error has: {"error":{"code":"...","message":"..."}}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

// handlerFunc is a handler that reports its failure instead of writing it,
// so every error reply is written in one place.
type handlerFunc func(w http.ResponseWriter, r *http.Request) *apiError

func (h handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e := h(w, r); e != nil {
		writeError(w, r, e)
	}
}

func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	// version_not_seen is replication lag the client retries, and
	// over_memory_budget a state the budget logs once: not faults, the
	// access log line is enough.
	if e.status >= 500 && e.code != codeVersionNotSeen && e.code != codeOverBudget {
		if t, ok := w.(*tracked); ok {
			t.log.Error().Str("req_id", requestOf(w)).Str("code", e.code).Msg(e.message)
		}
	}
	writeJSON(w, e.status, errorBody{errorDetail{e.code, e.message}})
}

// contentTypeJSON is every reply's Content-Type, one slice for all (Set
// would make one per reply; net/http only reads it).
var contentTypeJSON = []string{"application/json; charset=utf-8"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// bodyError maps a failure to read a JSON body (the decoder's, or the size
// limit's) to the reply the client gets. Messages name JSON, never Go types.
func bodyError(err error, maxBytes int64) *apiError {
	var tooBig *http.MaxBytesError
	var syntax *jsontext.SyntacticError
	switch {
	case errors.Is(err, errReadingFull):
		return errBulkReading
	case errors.As(err, &tooBig):
		return &apiError{http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			fmt.Sprintf("request body is larger than %d bytes", maxBytes)}
	case errors.Is(err, io.EOF):
		return badRequest(codeBadJSON, "request body is empty: expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(codeBadJSON, "request body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return badRequest(codeBadJSON, "request body is not valid JSON: %s", strings.TrimPrefix(err.Error(), "jsontext: "))
	}
	return badRequest(codeBadJSON, "request body could not be read: %v", err)
}
