package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/rs/zerolog/hlog"
)

// Error codes: the stable, machine-readable part of an error reply.
const (
	codeBadJSON          = "bad_json"
	codeUnknownField     = "unknown_field"
	codeInvalidID        = "invalid_id"
	codeInvalidParam     = "invalid_param"
	codeBodyTooLarge     = "body_too_large"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeInternal         = "internal"
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

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	var body errorBody
	body.Error.Code, body.Error.Message = e.code, e.message
	if e.status >= 500 {
		hlog.FromRequest(r).Error().Str("code", e.code).Msg(e.message)
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// decodeError maps a JSON body decoding failure to the reply the client gets.
func decodeError(err error, maxBytes int64) *apiError {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			fmt.Sprintf("request body is larger than %d bytes", maxBytes)}
	case errors.Is(err, io.EOF):
		return badRequest(codeBadJSON, "request body is empty: expected a JSON object")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(codeBadJSON, "request body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		return badRequest(codeBadJSON, "field %q must be a %s", typ.Field, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		// encoding/json has no typed error for this one.
		return badRequest(codeUnknownField, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return badRequest(codeBadJSON, "request body could not be read: %v", err)
}
