// Package ids owns the one rule every post and user id follows, so that
// the API (what clients send) and the cluster (what peers send) cannot
// drift apart: non-empty, at most a bound of bytes, valid UTF-8, and no
// control characters (NUL included: likes are keyed by post, NUL, user in
// places, and a NUL in an id would make two likes one key).
package ids

import (
	"unicode"
	"unicode/utf8"
)

// The control characters (unicode.IsControl) are C0, DEL and C1, all
// below U+00A0: Check finds them byte by byte, without decoding runes.

// DefaultMaxBytes is the bound the API and the cluster use unless told
// otherwise.
const DefaultMaxBytes = 256

// Problem is what is wrong with an id; OK when nothing is.
type Problem uint8

const (
	OK         Problem = iota
	Empty              // no bytes
	TooLong            // more than the bound
	NotUTF8            // not valid UTF-8
	HasControl         // holds a control character (Unicode Cc, NUL included)
)

func (p Problem) String() string {
	return [...]string{"ok", "empty", "too long", "not valid UTF-8", "holds a control character"}[p]
}

// Check reports what is wrong with id under a bound of maxBytes.
func Check(id string, maxBytes int) Problem {
	if p := bounds(id, maxBytes); p != OK {
		return p
	}
	if !utf8.ValidString(id) {
		return NotUTF8
	}
	return controls(id)
}

// CheckBytes is Check for an id in bytes, without making a string of it.
func CheckBytes(id []byte, maxBytes int) Problem {
	if p := bounds(id, maxBytes); p != OK {
		return p
	}
	if !utf8.Valid(id) {
		return NotUTF8
	}
	return controls(id)
}

func bounds[T string | []byte](id T, maxBytes int) Problem {
	switch {
	case len(id) == 0:
		return Empty
	case len(id) > maxBytes:
		return TooLong
	}
	return OK
}

// controls finds a control character in valid UTF-8.
func controls[T string | []byte](id T) Problem {
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c < 0x20 || c == 0x7f: // C0 and DEL
			return HasControl
		case c == 0xc2 && i+1 < len(id) && id[i+1] >= 0x80 && id[i+1] <= 0x9f: // C1: U+0080 to U+009F
			return HasControl
		}
	}
	return OK
}

// FirstControl is the first control character in id (for messages), and
// false if it has none.
func FirstControl(id string) (rune, bool) {
	for _, r := range id {
		if unicode.IsControl(r) {
			return r, true
		}
	}
	return 0, false
}
