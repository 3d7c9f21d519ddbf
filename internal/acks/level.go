package acks

import (
	"errors"
	"fmt"
	"strconv"
)

// MaxLevel bounds a numeric write level: more replicas than any cluster
// likesd is built for is a typo, not a wish.
const MaxLevel = 64

// ErrLevel marks a write level that does not parse.
var ErrLevel = errors.New("acks: invalid write level")

type levelKind uint8

const (
	kindDefault levelKind = iota // the node's configured level
	kindCount                    // n replicas
	kindQuorum                   // a majority of the reachable cluster
	kindAll                      // every reachable member
)

// Level is how many replicas must hold a like before it is acknowledged
// (201/200); fewer when answered means 202. The zero Level is "the node's
// default".
type Level struct {
	kind levelKind
	n    int
}

// One is w=1: this node holds it.
var One = Level{kind: kindCount, n: 1}

// Count is w=n.
func Count(n int) Level { return Level{kind: kindCount, n: n} }

// Quorum is w=quorum.
var Quorum = Level{kind: kindQuorum}

// All is w=all.
var All = Level{kind: kindAll}

// ParseLevel reads "1" to "64", "quorum" or "all".
func ParseLevel(s string) (Level, error) {
	switch s {
	case "quorum":
		return Quorum, nil
	case "all":
		return All, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLevel {
		return Level{}, fmt.Errorf("%w: %q (want 1 to %d, quorum or all)", ErrLevel, s, MaxLevel)
	}
	return Count(n), nil
}

// IsDefault reports whether l is the zero Level.
func (l Level) IsDefault() bool { return l.kind == kindDefault }

func (l Level) String() string {
	switch l.kind {
	case kindCount:
		return strconv.Itoa(l.n)
	case kindQuorum:
		return "quorum"
	case kindAll:
		return "all"
	}
	return "default"
}

// Want is how many replicas (this node included) l asks for when size
// members, this node included, are reachable: alive or suspect, breaker
// not open. In a cluster (clustered) quorum and all never ask for fewer
// than 2: a node cut off from every peer must not call itself a majority.
func (l Level) Want(size int, clustered bool) int {
	w := 1
	switch l.kind {
	case kindCount:
		return l.n
	case kindQuorum:
		w = size/2 + 1
	case kindAll:
		w = size
	}
	if clustered && w < 2 {
		w = 2
	}
	return max(w, 1)
}
