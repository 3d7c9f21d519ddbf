package antientropy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/wire"
)

// Kind is a message's type. Requests go from a session's initiator to its
// peer; every request gets exactly one response of the next kind.
type Kind uint8

const (
	KindExpand       Kind = iota + 1 // nodes with the sender's summaries: which differ, and their children?
	KindExpandResp                   // per node: equal, or the peer's summary and children
	KindExchange                     // small nodes with all the sender's likes in them
	KindExchangeResp                 // the likes the sender lacked there
	KindPull                         // a node and a cursor: send me your likes there
	KindPullResp                     // a chunk of likes, the next cursor, done
	KindPush                         // a chunk of the sender's likes
	KindPushResp                     // how many were new
	kindEnd
)

var kindNames = [...]string{"", "expand", "expand-resp", "exchange", "exchange-resp", "pull", "pull-resp", "push", "push-resp"}

func (k Kind) String() string {
	if k > 0 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// IsRequest reports whether k is answered by a response.
func (k Kind) IsRequest() bool { return k%2 == 1 }

// Flags describe the sender.
type Flags uint8

const (
	FlagSynced  Flags = 1 << iota // the sender holds what the cluster held when it joined
	FlagLeaving                   // the sender is handing off before it exits
	// FlagHolds: the sender is not synced, sees no synced peer, and
	// recovered likes from its disk: a founder candidate. Sent only then,
	// so peers of the version before it (which refuse unknown flags) never
	// see it in a rolling upgrade, where some peer is synced.
	FlagHolds
	// FlagPartial: as FlagHolds, for a sender whose disk was damaged.
	FlagPartial
	flagsAll = FlagSynced | FlagLeaving | FlagHolds | FlagPartial
	// flagKeyed is set on the wire when a key id follows the header
	// (Message.KeyID); Decode clears it from Flags. A node of the version
	// before it refuses the unknown flag and drops the message, which is
	// what it must do with digests it cannot read.
	flagKeyed Flags = 1 << 4
)

// Probe is one node of an expand request: the sender's summary of it and,
// for a bucket, where the listing of its posts resumes.
type Probe struct {
	Node      Node
	Sum       gset.Summary
	FromStart bool
	After     string
}

// Expansion answers one Probe: Equal, or the peer's summary and either the
// 16 children's summaries or a page of the bucket's posts.
type Expansion struct {
	Equal    bool
	Sum      gset.Summary
	Children [gset.Fanout]gset.Summary // not for buckets
	Posts    []store.PostSummary       // buckets only, in byte order
	More     bool                      // buckets: more posts follow the page
}

// Item is one node of an exchange with the sender's likes in it.
type Item struct {
	Node  Node
	Likes []store.Like
}

// Message is everything one node sends another. Which fields mean
// something depends on Kind.
type Message struct {
	Kind    Kind
	From    string // the sender's node name
	Flags   Flags
	Session uint64 // the initiator's session id
	Req     uint64 // the request this is or answers
	// KeyID names the digest key the summaries in this message are under
	// (gset.Key.ID, never the key). Expand and expand-resp carry it; 0
	// means none: a message of the unkeyed version, or one without
	// digests. Pull, push and exchange carry likes only, right under any
	// key, so they stay readable by nodes of the version before it.
	KeyID uint64

	Probes  []Probe     // expand
	Results []Expansion // expand-resp, one per probe
	Items   []Item      // exchange

	Node    Node         // pull, pull-resp, push, push-resp
	Cursor  store.Cursor // pull: where to resume; pull-resp: the next cursor
	Likes   []store.Like // exchange-resp, pull-resp, push
	Done    bool         // pull-resp: the node is finished
	Added   uint64       // exchange-resp, push-resp: likes new to the responder
	Partial []uint32     // exchange-resp: items the responder could not fit (pull them)
}

// Bounds applied when decoding.
const (
	// MaxIDLen bounds a post, user or node name. The API admits 256 bytes.
	MaxIDLen   = 4096
	maxEntries = 1 << 20
)

// Decoding errors; test with errors.Is.
var (
	ErrTruncated = errors.New("antientropy: truncated message")
	ErrInvalid   = errors.New("antientropy: invalid message")
)

// Append encodes m onto b.
func (m *Message) Append(b []byte) []byte {
	f := m.Flags &^ flagKeyed
	if m.KeyID != 0 {
		f |= flagKeyed
	}
	b = append(b, byte(m.Kind), byte(f))
	b = wire.AppendString(b, m.From)
	b = binary.AppendUvarint(b, m.Session)
	b = binary.AppendUvarint(b, m.Req)
	if m.KeyID != 0 {
		b = binary.BigEndian.AppendUint64(b, m.KeyID)
	}
	switch m.Kind {
	case KindExpand:
		b = binary.AppendUvarint(b, uint64(len(m.Probes)))
		for _, p := range m.Probes {
			b = appendNode(b, p.Node)
			b = appendSummary(b, p.Sum)
			b = appendBool(b, p.FromStart)
			b = wire.AppendString(b, p.After)
		}
	case KindExpandResp:
		b = binary.AppendUvarint(b, uint64(len(m.Results)))
		for _, r := range m.Results {
			b = appendBool(b, r.Equal)
			if r.Equal {
				continue
			}
			b = appendSummary(b, r.Sum)
			b = binary.AppendUvarint(b, uint64(len(r.Posts)))
			for _, p := range r.Posts {
				b = wire.AppendString(b, p.Post)
				b = appendSummary(b, p.Summary)
			}
			b = appendBool(b, r.More)
			if len(r.Posts) == 0 && !r.More {
				for _, c := range r.Children {
					b = appendSummary(b, c)
				}
			}
		}
	case KindExchange:
		b = binary.AppendUvarint(b, uint64(len(m.Items)))
		for _, it := range m.Items {
			b = appendNode(b, it.Node)
			b = appendLikes(b, it.Likes)
		}
	case KindExchangeResp:
		b = appendLikes(b, m.Likes)
		b = binary.AppendUvarint(b, m.Added)
		b = binary.AppendUvarint(b, uint64(len(m.Partial)))
		for _, p := range m.Partial {
			b = binary.AppendUvarint(b, uint64(p))
		}
	case KindPull:
		b = appendNode(b, m.Node)
		b = appendCursor(b, m.Cursor)
	case KindPullResp:
		b = appendNode(b, m.Node)
		b = appendCursor(b, m.Cursor)
		b = appendLikes(b, m.Likes)
		b = appendBool(b, m.Done)
	case KindPush:
		b = appendNode(b, m.Node)
		b = appendLikes(b, m.Likes)
	case KindPushResp:
		b = appendNode(b, m.Node)
		b = binary.AppendUvarint(b, m.Added)
	}
	return b
}

// Decode parses one message. It rejects anything Append would not produce.
func Decode(b []byte) (*Message, error) {
	d := decoder{b: b}
	m := &Message{Kind: Kind(d.byte()), Flags: Flags(d.byte())}
	if d.err == nil && (m.Kind == 0 || m.Kind >= kindEnd || m.Flags&^(flagsAll|flagKeyed) != 0) {
		return nil, fmt.Errorf("%w: kind %d flags %d", ErrInvalid, m.Kind, m.Flags)
	}
	keyed := m.Flags&flagKeyed != 0
	m.Flags &^= flagKeyed
	m.From = d.str()
	m.Session = d.uvarint()
	m.Req = d.uvarint()
	if keyed {
		if m.KeyID = d.uint64(); d.err == nil && m.KeyID == 0 {
			d.fail(ErrInvalid, "key id 0") // Append writes none
		}
	}
	switch m.Kind {
	case KindExpand:
		n := d.count()
		m.Probes = make([]Probe, 0, min(n, 1024))
		for range n {
			p := Probe{Node: d.node(), Sum: d.summary(), FromStart: d.bool(), After: d.str()}
			if d.err != nil {
				break
			}
			m.Probes = append(m.Probes, p)
		}
	case KindExpandResp:
		n := d.count()
		m.Results = make([]Expansion, 0, min(n, 1024))
		for range n {
			var r Expansion
			if r.Equal = d.bool(); !r.Equal {
				r.Sum = d.summary()
				np := d.count()
				for range np {
					r.Posts = append(r.Posts, store.PostSummary{Post: d.str(), Summary: d.summary()})
					if d.err != nil {
						break
					}
				}
				r.More = d.bool()
				if len(r.Posts) == 0 && !r.More {
					for i := range r.Children {
						r.Children[i] = d.summary()
					}
				}
			}
			if d.err != nil {
				break
			}
			m.Results = append(m.Results, r)
		}
	case KindExchange:
		n := d.count()
		for range n {
			it := Item{Node: d.node(), Likes: d.likes()}
			if d.err != nil {
				break
			}
			m.Items = append(m.Items, it)
		}
	case KindExchangeResp:
		m.Likes = d.likes()
		m.Added = d.uvarint()
		n := d.count()
		for range n {
			p := d.uvarint()
			if p > maxEntries {
				d.fail(ErrInvalid, "partial index")
			}
			if d.err != nil {
				break
			}
			m.Partial = append(m.Partial, uint32(p))
		}
	case KindPull:
		m.Node, m.Cursor = d.node(), d.cursor()
	case KindPullResp:
		m.Node, m.Cursor, m.Likes, m.Done = d.node(), d.cursor(), d.likes(), d.bool()
	case KindPush:
		m.Node, m.Likes = d.node(), d.likes()
	case KindPushResp:
		m.Node, m.Added = d.node(), d.uvarint()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(ErrInvalid, "trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendSummary(b []byte, s gset.Summary) []byte {
	b = binary.BigEndian.AppendUint64(b, s.Digest)
	return binary.AppendUvarint(b, uint64(s.Count))
}

func appendNode(b []byte, n Node) []byte {
	if n.IsPost {
		b = append(b, 1)
		b = wire.AppendString(b, n.Post)
		b = append(b, n.Bits)
		return binary.AppendUvarint(b, n.Prefix)
	}
	b = append(b, 0, n.Level)
	return binary.AppendUvarint(b, uint64(n.Index))
}

func appendCursor(b []byte, c store.Cursor) []byte {
	b = appendBool(b, c.Started)
	if !c.Started {
		return b
	}
	b = wire.AppendString(b, c.Post)
	return wire.AppendString(b, c.User)
}

// appendLikes groups consecutive likes of one post: count of groups, then
// per group the post, its user count and the users.
func appendLikes(b []byte, likes []store.Like) []byte {
	groups := 0
	for i := range likes {
		if i == 0 || likes[i].Post != likes[i-1].Post {
			groups++
		}
	}
	b = binary.AppendUvarint(b, uint64(groups))
	for i := 0; i < len(likes); {
		j := i + 1
		for j < len(likes) && likes[j].Post == likes[i].Post {
			j++
		}
		b = wire.AppendString(b, likes[i].Post)
		b = binary.AppendUvarint(b, uint64(j-i))
		for _, l := range likes[i:j] {
			b = wire.AppendString(b, l.User)
		}
		i = j
	}
	return b
}

// decoder reads fields in order and keeps the first error; after an error
// every read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(sentinel error, what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", sentinel, what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(ErrTruncated, "byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(ErrInvalid, "bool")
	return false
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, rest, err := wire.Uvarint(d.b)
	if err != nil {
		d.fail(ErrTruncated, err.Error())
		return 0
	}
	d.b = rest
	return v
}

// count reads a number of entries, each at least one byte long, so a count
// beyond what is left is rejected before anything is allocated for it.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && (n > uint64(len(d.b)) || n > maxEntries) {
		d.fail(ErrTruncated, "count")
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	s, rest, err := wire.String(d.b, MaxIDLen)
	if err != nil {
		d.fail(ErrTruncated, err.Error())
		return ""
	}
	d.b = rest
	return s
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(ErrTruncated, "uint64")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) summary() gset.Summary {
	if d.err != nil {
		return gset.Summary{}
	}
	if len(d.b) < 8 {
		d.fail(ErrTruncated, "digest")
		return gset.Summary{}
	}
	s := gset.Summary{Digest: binary.BigEndian.Uint64(d.b)}
	d.b = d.b[8:]
	c := d.uvarint()
	if c > 1<<62 {
		d.fail(ErrInvalid, "count")
	}
	s.Count = int(c)
	return s
}

func (d *decoder) node() Node {
	var n Node
	switch d.byte() {
	case 0:
		n.Level = d.byte()
		idx := d.uvarint()
		if idx > 1<<32-1 {
			d.fail(ErrInvalid, "node index")
		}
		n.Index = uint32(idx)
	case 1:
		n = Node{IsPost: true, Post: d.str(), Bits: d.byte(), Prefix: d.uvarint()}
	default:
		d.fail(ErrInvalid, "node kind")
	}
	if d.err == nil && !n.valid() {
		d.fail(ErrInvalid, "node "+n.String())
	}
	return n
}

func (d *decoder) cursor() store.Cursor {
	if !d.bool() {
		return store.Cursor{}
	}
	return store.Cursor{Started: true, Post: d.str(), User: d.str()}
}

func (d *decoder) likes() []store.Like {
	groups := d.count()
	var out []store.Like
	prev := ""
	for g := range groups {
		post := d.str()
		if g > 0 && post == prev {
			d.fail(ErrInvalid, "split group")
		}
		users := d.count()
		if users == 0 {
			d.fail(ErrInvalid, "empty group")
		}
		for range users {
			u := d.str()
			if d.err != nil {
				return nil
			}
			out = append(out, store.Like{Post: post, User: u})
		}
		prev = post
	}
	if d.err != nil {
		return nil
	}
	return out
}
