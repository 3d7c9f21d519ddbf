package main

import (
	"fmt"
	"iter"
	"math"
	"strconv"

	"github.com/likesd/likesd/internal/loadgen"
)

// A dataset of the memory benchmark: posts, how many users like each, and
// which ones. Generation is deterministic (no seed to pass around), so the
// same likes go to likesd and to Redis, and a run can be repeated.
type dataset struct {
	name, desc string
	posts      int
	counts     []int // likers of each post
	total      int64
	user       func(n uint32) string // the text id of user number n
	idBytes    int                   // length of one user id
}

// userPool is the number of distinct users every dataset draws from.
const userPool = loadgen.UserPool

func shortUser(n uint32) string { return fmt.Sprintf("u%07d", n) }

// uuidUser is a version-4-shaped UUID in lower-case text, a pure function of n.
func uuidUser(n uint32) string {
	a, b := loadgen.Splitmix(uint64(n)), loadgen.Splitmix(uint64(n)^0x5851f42d4c957f2d)
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, a>>16&0xffff, a&0xfff, 0x8000|b>>48&0x3fff, b&0xffffffffffff)
}

func uniform(name, desc string, posts, per int, user func(uint32) string, idBytes int) dataset {
	d := dataset{name: name, desc: desc, posts: posts, counts: make([]int, posts), user: user, idBytes: idBytes}
	for i := range d.counts {
		d.counts[i] = per
	}
	d.total = int64(posts) * int64(per)
	return d
}

// zipf spreads total likes over posts with popularity 1/rank (s = 1): with
// 10,000 posts the first holds ~10% of the likes.
func zipf(name, desc string, posts int, total int64, user func(uint32) string, idBytes int) dataset {
	d := dataset{name: name, desc: desc, posts: posts, counts: make([]int, posts), user: user, idBytes: idBytes, total: total}
	h := 0.0
	for k := 1; k <= posts; k++ {
		h += 1 / float64(k)
	}
	var sum int64
	for k := range d.counts {
		d.counts[k] = max(1, int(math.Floor(float64(total)/(float64(k+1)*h))))
		sum += int64(d.counts[k])
	}
	for k := 0; sum < total; k = (k + 1) % posts { // the rounding remainder, to the top posts
		d.counts[k]++
		sum++
	}
	return d
}

func datasets() []dataset {
	return []dataset{
		uniform("S1", "1M likes: 10,000 posts × 100, 8-byte ids", 10_000, 100, shortUser, 8),
		uniform("S2", "10M likes: 100,000 posts × 100, 8-byte ids", 100_000, 100, shortUser, 8),
		zipf("S3", "10M likes, zipf (s=1) over 10,000 posts, 8-byte ids", 10_000, 10_000_000, shortUser, 8),
		uniform("S4", "10M likes: 100,000 posts × 100, 36-byte UUID ids", 100_000, 100, uuidUser, 36),
	}
}

func postID(k int) string { return "p" + strconv.Itoa(k) }

// likes yields every like of d in rounds: the r-th liker of every post that
// has more than r, so each batch touches many posts, as live traffic does.
// A post's likers are distinct users of the pool (a bijection of r keyed by
// the post), so the dataset holds exactly d.total likes.
func (d dataset) likes() iter.Seq2[string, string] {
	return func(yield func(post, user string) bool) {
		posts := make([]string, d.posts)
		for k := range posts {
			posts[k] = postID(k)
		}
		maxCount := 0
		for _, c := range d.counts {
			maxCount = max(maxCount, c)
		}
		active := make([]int, d.posts) // posts with more than r likers, shrinking
		for k := range active {
			active[k] = k
		}
		for r := 0; r < maxCount; r++ {
			next := active[:0]
			for _, k := range active {
				if d.counts[k] <= r {
					continue
				}
				next = append(next, k)
				if !yield(posts[k], d.user(loadgen.Permute(uint32(r), uint32(k)))) {
					return
				}
			}
			active = next
		}
	}
}
