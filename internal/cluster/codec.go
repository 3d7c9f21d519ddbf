package cluster

import (
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wire"
)

// Message types: the first byte of every gossip message.
const (
	msgLikes byte = iota + 1 // a frame of likes: (post, user) pairs to the end
)

// State types: the first byte of every push/pull state.
const (
	stateFull byte = iota + 1 // every post with its encoded gset, to the end
)

// maxIDLen bounds a post or user id on decode. The API admits 256 bytes; the
// margin lets that limit grow without a wire change.
const maxIDLen = 4096

// Decoding errors; test with errors.Is.
var (
	errEmpty     = errors.New("cluster: empty message")
	errType      = errors.New("cluster: unknown message type")
	errTruncated = errors.New("cluster: truncated message")
	errIDLen     = errors.New("cluster: id too long")
)

// frameBuilder packs likes into one frame no larger than max bytes.
type frameBuilder struct {
	max   int
	buf   []byte
	count int
}

func newFrameBuilder(max int) *frameBuilder {
	return &frameBuilder{max: max, buf: append(make([]byte, 0, max), msgLikes)}
}

// likeSize is the encoded size of l.
func likeSize(l store.Like) int {
	return wire.StringLen(l.Post) + wire.StringLen(l.User)
}

// fits reports whether l can be added without passing max.
func (f *frameBuilder) fits(l store.Like) bool { return len(f.buf)+likeSize(l) <= f.max }

func (f *frameBuilder) add(l store.Like) {
	f.buf = appendString(f.buf, l.Post)
	f.buf = appendString(f.buf, l.User)
	f.count++
}

// take returns the frame and starts a new one.
func (f *frameBuilder) take() (frame []byte, count int) {
	frame, count = f.buf, f.count
	f.buf = append(make([]byte, 0, f.max), msgLikes)
	f.count = 0
	return frame, count
}

// decodeLikes decodes a msgLikes frame.
func decodeLikes(b []byte) ([]store.Like, error) {
	if len(b) == 0 {
		return nil, errEmpty
	}
	if b[0] != msgLikes {
		return nil, fmt.Errorf("%w: %d", errType, b[0])
	}
	b = b[1:]
	var likes []store.Like
	for len(b) > 0 {
		var l store.Like
		var err error
		if l.Post, b, err = readString(b); err != nil {
			return nil, err
		}
		if l.User, b, err = readString(b); err != nil {
			return nil, err
		}
		likes = append(likes, l)
	}
	return likes, nil
}

// encodeState encodes every post of r for push/pull.
func encodeState(r Replica) []byte {
	b := []byte{stateFull}
	r.Snapshot(func(post string, users gset.Set) bool {
		b = appendString(b, post)
		b, _ = users.AppendBinary(b) // cannot fail: appends to memory
		return true
	})
	return b
}

// decodeState calls fn for each post in a push/pull state. It validates the
// whole buffer first, so a corrupt state applies nothing.
func decodeState(b []byte, fn func(post string, users gset.Set)) error {
	if len(b) == 0 {
		return errEmpty
	}
	if b[0] != stateFull {
		return fmt.Errorf("%w: state %d", errType, b[0])
	}
	type entry struct {
		post  string
		users gset.Set
	}
	var entries []entry
	rest := b[1:]
	for len(rest) > 0 {
		var e entry
		var err error
		if e.post, rest, err = readString(rest); err != nil {
			return err
		}
		if e.users, rest, err = gset.Decode(rest); err != nil {
			return fmt.Errorf("cluster: post %q: %w", e.post, err)
		}
		entries = append(entries, e)
	}
	for _, e := range entries {
		fn(e.post, e.users)
	}
	return nil
}

func appendString(b []byte, s string) []byte { return wire.AppendString(b, s) }

// readString reads an id, folding wire's errors into this package's.
func readString(b []byte) (string, []byte, error) {
	s, rest, err := wire.String(b, maxIDLen)
	switch {
	case errors.Is(err, wire.ErrTooLong):
		return "", nil, fmt.Errorf("%w: %w", errIDLen, err)
	case err != nil:
		return "", nil, fmt.Errorf("%w: %w", errTruncated, err)
	}
	return s, rest, nil
}
