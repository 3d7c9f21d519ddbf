package api

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/vclock"
	"github.com/likesd/likesd/internal/wire"
)

// Version is what a like reply's version token stands for: the like (Post,
// User) and the dot it got. A node has seen a version when it holds the
// like itself: anti-entropy repairs likes without their dots, so the like,
// not the dot, is what "seen" is checked by. The dot is kept for
// diagnostics and for a future unlike. Dot.Seq 0 means no dot was assigned.
type Version struct {
	Dot        vclock.Dot
	Post, User string
}

// versionFormat is the token's first byte: another layout gets another
// value, and a node that does not know it rejects the token.
const versionFormat = 1

// ErrBadVersion marks a version token this API could not have given.
var ErrBadVersion = errors.New("api: bad version token")

// String encodes v as an opaque, URL-safe token: unpadded base64url of the
// format byte, Origin as 8 bytes big-endian, Seq as a uvarint, then Post
// and User length-prefixed (internal/wire).
func (v Version) String() string {
	// On the stack for the usual ids; the token is the one allocation.
	var raw [160]byte
	b := raw[:0]
	b = append(b, versionFormat)
	b = binary.BigEndian.AppendUint64(b, v.Dot.Origin)
	b = binary.AppendUvarint(b, v.Dot.Seq)
	b = wire.AppendString(b, v.Post)
	b = wire.AppendString(b, v.User)
	var enc [216]byte // EncodedLen(160)
	return string(base64.RawURLEncoding.AppendEncode(enc[:0], b))
}

// maxVersionLen is the longest token String gives for ids of at most
// maxIDBytes: anything longer is rejected before it is decoded.
func maxVersionLen(maxIDBytes int) int {
	id := wire.UvarintLen(uint64(maxIDBytes)) + maxIDBytes
	return base64.RawURLEncoding.EncodedLen(1 + 8 + binary.MaxVarintLen64 + 2*id)
}

// strictBase64 rejects set padding bits, which would let two tokens name
// one version.
var strictBase64 = base64.RawURLEncoding.Strict()

// ParseVersion decodes a token String made, strictly: exactly one token
// decodes to a version (it re-encodes to s), and its ids follow the rules
// of every id, at most maxIDBytes each.
func ParseVersion(s string, maxIDBytes int) (Version, error) {
	var v Version
	if max := maxVersionLen(maxIDBytes); len(s) > max {
		return v, fmt.Errorf("%w: %d characters, at most %d", ErrBadVersion, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		// The decoder skips \r and \n: check the alphabet first.
		if c := s[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return v, fmt.Errorf("%w: %q at %d is not unpadded URL-safe base64", ErrBadVersion, c, i)
		}
	}
	b, err := strictBase64.DecodeString(s)
	if err != nil {
		return v, fmt.Errorf("%w: not base64: %v", ErrBadVersion, err)
	}
	if len(b) == 0 {
		return v, fmt.Errorf("%w: empty", ErrBadVersion)
	}
	if b[0] != versionFormat {
		return v, fmt.Errorf("%w: unknown format %d", ErrBadVersion, b[0])
	}
	if len(b) < 1+8 {
		return v, fmt.Errorf("%w: truncated", ErrBadVersion)
	}
	v.Dot.Origin = binary.BigEndian.Uint64(b[1:9])
	if v.Dot.Seq, b, err = wire.Uvarint(b[9:]); err != nil {
		return Version{}, fmt.Errorf("%w: seq: %w", ErrBadVersion, err)
	}
	if v.Post, b, err = wire.String(b, maxIDBytes); err != nil {
		return Version{}, fmt.Errorf("%w: post: %w", ErrBadVersion, err)
	}
	if v.User, b, err = wire.String(b, maxIDBytes); err != nil {
		return Version{}, fmt.Errorf("%w: user: %w", ErrBadVersion, err)
	}
	if len(b) > 0 {
		return Version{}, fmt.Errorf("%w: %d bytes after the user", ErrBadVersion, len(b))
	}
	// A like with an id no client may send is none this API gave a token for.
	for _, id := range [...]struct{ name, v string }{{"post", v.Post}, {"user", v.User}} {
		if e := checkID(id.name, id.v, maxIDBytes); e != nil {
			return Version{}, fmt.Errorf("%w: %s", ErrBadVersion, e.message)
		}
	}
	return v, nil
}
