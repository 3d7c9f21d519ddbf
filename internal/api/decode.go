package api

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/likesd/likesd/internal/ids"
)

// Like bodies are read token by token with jsontext, not unmarshalled with
// encoding/json, which matches field names case-insensitively ("User" and
// "USER" would be user), keeps the last of duplicate fields, and replaces
// invalid UTF-8 and half surrogate pairs ("a\ud800b") with U+FFFD: a client
// would get a 201 for an id it never sent. Here field names are compared
// byte for byte, a field given twice is an error, and a string that is not
// exactly valid UTF-8 is rejected.
//
// The tokenizer lets duplicates and bad UTF-8 through (readLike catches
// them) so that one bad item of a bulk import is reported by its index
// instead of failing the whole body.
var decodeOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// span is where a value sits in an arena: arena[off:end].
type span struct{ off, end int }

// likeFields is one like as read: spans into the arena the values were
// unquoted into.
type likeFields struct {
	post, user span
}

// likeReader reads like objects; its buffers are reused from one like (and
// one request, see bulkPool) to the next.
type likeReader struct {
	dec   *jsontext.Decoder
	arena []byte // unquoted values of the likes read so far
	name  []byte // the member name being read
}

// readLike reads one JSON value that should be a like object: {"user":...}
// or, with withPost, {"post":...,"user":...}. A non-nil *apiError is about
// this like only: the decoder is past it and the body may go on. A non-nil
// error is the body's (malformed JSON, too large): it cannot be read on.
func (lr *likeReader) readLike(withPost bool) (likeFields, *apiError, error) {
	var got likeFields
	dec := lr.dec
	if dec.PeekKind() != '{' {
		if err := dec.SkipValue(); err != nil {
			return got, nil, err
		}
		want := `{"user":"alice"}`
		if withPost {
			want = `{"post":"p1","user":"alice"}`
		}
		return got, badRequest(codeBadJSON, "a like must be a JSON object like %s", want), nil
	}
	if _, err := dec.ReadToken(); err != nil {
		return got, nil, err
	}
	var bad *apiError // the first problem of this like; the rest is still read
	var seenPost, seenUser bool
	for dec.PeekKind() != '}' {
		rawName, err := dec.ReadValue()
		if err != nil {
			return got, nil, err
		}
		name, nameErr := jsontext.AppendUnquote(lr.name[:0], rawName)
		lr.name = name
		raw, err := dec.ReadValue()
		if err != nil {
			return got, nil, err
		}
		if bad != nil {
			continue
		}
		var dst *span
		var seen *bool
		var field string // a constant: string(name) would allocate per field
		switch {
		case nameErr != nil:
		case string(name) == "user":
			dst, seen, field = &got.user, &seenUser, "user"
		case withPost && string(name) == "post":
			dst, seen, field = &got.post, &seenPost, "post"
		}
		switch {
		case dst == nil:
			bad = unknownField(name, withPost)
		case *seen:
			bad = badRequest(codeBadJSON, "field %q appears more than once", name)
		default:
			*seen = true
			bad = lr.readString(field, raw, dst)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return got, nil, err
	}
	return got, bad, nil
}

// readString unquotes the string raw into the arena at *dst; null leaves
// *dst empty (as if the field were missing).
func (lr *likeReader) readString(field string, raw jsontext.Value, dst *span) *apiError {
	switch raw.Kind() {
	case 'n':
		return nil
	case '"':
	default:
		return badRequest(codeBadJSON, "field %q must be a string, not %s", field, kindName(raw.Kind()))
	}
	off := len(lr.arena)
	arena, err := jsontext.AppendUnquote(lr.arena, raw)
	if err != nil {
		lr.arena = arena[:off]
		return badRequest(codeInvalidID, "%s is not valid UTF-8 (an invalid byte, or a \\u escape of half a surrogate pair)", field)
	}
	lr.arena = arena
	*dst = span{off, len(arena)}
	return nil
}

// expectEnd reports what follows the body's one JSON value, if anything.
func (lr *likeReader) expectEnd(maxBytes int64) *apiError {
	_, err := lr.dec.ReadToken()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return badRequest(codeBadJSON, "request body holds more than one JSON value")
	}
	if e := bodyError(err, maxBytes); e.code != codeBadJSON {
		return e
	}
	return badRequest(codeBadJSON, "unexpected data after the JSON object")
}

func unknownField(name []byte, withPost bool) *apiError {
	known := []string{"user"}
	if withPost {
		known = []string{"post", "user"}
	}
	for _, k := range known {
		if strings.EqualFold(string(name), k) {
			return badRequest(codeUnknownField, "unknown field %q: field names are case-sensitive (did you mean %q?)", name, k)
		}
	}
	return badRequest(codeUnknownField, "unknown field %q: a like has only %s", name, strings.Join(quoteAll(known), " and "))
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = fmt.Sprintf("%q", w)
	}
	return out
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	}
	return "null"
}

// checkID enforces the rules every post and user id follows (package ids:
// the cluster checks what peers send by the same rule).
func checkID(name, v string, maxBytes int) *apiError {
	return idError(name, ids.Check(v, maxBytes), len(v), maxBytes, v)
}

// checkIDBytes is checkID for an id unquoted by readString, without making
// a string of it.
func checkIDBytes(name string, v []byte, maxBytes int) *apiError {
	p := ids.CheckBytes(v, maxBytes)
	if p == ids.OK {
		return nil
	}
	return idError(name, p, len(v), maxBytes, string(v))
}

// idError says what problem p of id v is.
func idError(name string, p ids.Problem, n, maxBytes int, v string) *apiError {
	switch p {
	case ids.OK:
		return nil
	case ids.Empty:
		return badRequest(codeInvalidID, "%s is required and must not be empty", name)
	case ids.TooLong:
		return badRequest(codeInvalidID, "%s is %d bytes, longer than %d", name, n, maxBytes)
	case ids.NotUTF8:
		return badRequest(codeInvalidID, "%s is not valid UTF-8", name)
	}
	c, _ := ids.FirstControl(v)
	return badRequest(codeInvalidID, "%s contains a control character (%U)", name, c)
}
