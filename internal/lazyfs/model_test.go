package lazyfs

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// refFS is the crash model written the other way round: lazyfs applies
// directory operations at once and undoes the uncommitted ones at a cut;
// refFS keeps the committed namespace and replays the journal forward
// into it at each directory fsync. Files are inodes with what a reader
// sees and what is durable.
type refFS struct {
	durableDirOps bool
	visible       map[string]int // name to inode
	committed     map[string]int // the namespace a cut leaves
	journal       []refOp
	content       map[int][]byte // by inode: what a reader sees
	durable       map[int][]byte // by inode: what its last fsync made durable
	next          int
}

type refOp struct {
	from, to string // a create has only to; an unlink only from
	ino      int
}

func (op refOp) changed(dir string) bool {
	return (op.from != "" && filepath.Dir(op.from) == dir) || (op.to != "" && filepath.Dir(op.to) == dir)
}

func (op refOp) apply(ns map[string]int) {
	if op.from != "" {
		delete(ns, op.from)
	}
	if op.to != "" {
		ns[op.to] = op.ino
	}
}

func (m *refFS) do(op refOp) {
	op.apply(m.visible)
	if m.durableDirOps {
		op.apply(m.committed)
		return
	}
	m.journal = append(m.journal, op)
}

func (m *refFS) syncDir(dir string) {
	n := 0
	for i, op := range m.journal {
		if op.changed(dir) {
			n = i + 1
		}
	}
	for _, op := range m.journal[:n] {
		op.apply(m.committed)
	}
	m.journal = m.journal[n:]
}

func (m *refFS) cut() {
	m.visible = maps.Clone(m.committed)
	m.journal = nil
	for ino, b := range m.durable {
		m.content[ino] = bytes.Clone(b)
	}
}

// TestDirModelAgainstReference runs seeded random creates, appends,
// fsyncs, directory fsyncs, renames (also over other files and across
// directories), unlinks and power cuts on a mount and on refFS, on a few
// names in two directories so that they collide, and compares the names
// and contents after every cut and at the end.
func TestDirModelAgainstReference(t *testing.T) {
	for _, durableDirOps := range []bool{false, true} {
		for seed := range uint64(25) {
			t.Run(fmt.Sprintf("durable=%v/seed%d", durableDirOps, seed), func(t *testing.T) {
				testDirModel(t, seed, durableDirOps)
			})
		}
	}
}

func testDirModel(t *testing.T, seed uint64, durableDirOps bool) {
	rng := rand.New(rand.NewPCG(seed, 3))
	r := newRig(t, Options{DurableDirOps: durableDirOps})
	for _, d := range []string{"a", "b"} {
		require.NoError(t, os.Mkdir(r.path(d), 0o755))
	}
	r.syncDir(".")
	m := &refFS{
		durableDirOps: durableDirOps,
		visible:       map[string]int{},
		committed:     map[string]int{},
		content:       map[int][]byte{},
		durable:       map[int][]byte{},
	}
	names := []string{"a/0", "a/1", "a/2", "b/0", "b/1", "b/2"}
	pick := func() string { return names[rng.IntN(len(names))] }
	var log []string // the ops so far, for a failure message
	for step := range 80 {
		switch k := rng.IntN(20); {
		case k < 4: // create, with content
			name := pick()
			if _, ok := m.visible[name]; ok {
				continue
			}
			p := randBytes(rng, 1+rng.IntN(8))
			require.NoError(t, os.WriteFile(r.path(name), p, 0o644))
			m.do(refOp{to: name, ino: m.next})
			m.content[m.next], m.durable[m.next] = p, []byte{}
			m.next++
			log = append(log, "create "+name)
		case k < 7: // append
			name := pick()
			ino, ok := m.visible[name]
			if !ok {
				continue
			}
			p := randBytes(rng, 1+rng.IntN(8))
			f, err := os.OpenFile(r.path(name), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			write(t, f, string(p))
			require.NoError(t, f.Close())
			m.content[ino] = append(m.content[ino], p...)
			log = append(log, "append "+name)
		case k < 10: // fsync a file
			name := pick()
			ino, ok := m.visible[name]
			if !ok {
				continue
			}
			f, err := os.Open(r.path(name))
			require.NoError(t, err)
			require.NoError(t, f.Sync())
			require.NoError(t, f.Close())
			m.durable[ino] = bytes.Clone(m.content[ino])
			log = append(log, "fsync "+name)
		case k < 12:
			dir := []string{"a", "b", "."}[rng.IntN(3)]
			r.syncDir(dir)
			m.syncDir(dir)
			log = append(log, "fsync dir "+dir)
		case k < 15:
			from, to := pick(), pick()
			ino, ok := m.visible[from]
			if !ok || from == to {
				continue
			}
			require.NoError(t, os.Rename(r.path(from), r.path(to)))
			m.do(refOp{from: from, to: to, ino: ino})
			log = append(log, "rename "+from+" "+to)
		case k < 17:
			name := pick()
			if _, ok := m.visible[name]; !ok {
				continue
			}
			require.NoError(t, os.Remove(r.path(name)))
			m.do(refOp{from: name})
			log = append(log, "unlink "+name)
		case k < 18:
			r.cut()
			m.cut()
			log = append(log, "cut")
			compareModel(t, r, m, names, step, log)
		default:
			compareModel(t, r, m, names, step, log)
		}
	}
	r.cut()
	m.cut()
	compareModel(t, r, m, names, -1, append(log, "cut"))
}

// compareModel checks that the mount shows the model's names, each with
// its content.
func compareModel(t *testing.T, r *rig, m *refFS, names []string, step int, log []string) {
	t.Helper()
	for _, name := range names {
		got, err := os.ReadFile(r.path(name))
		ino, ok := m.visible[name]
		if !ok {
			require.Truef(t, errors.Is(err, os.ErrNotExist), "step %d: %s exists (%q), want not; ops:\n%s", step, name, got, join(log))
			continue
		}
		require.NoErrorf(t, err, "step %d: ops:\n%s", step, join(log))
		require.Equalf(t, string(m.content[ino]), string(got), "step %d: %s; ops:\n%s", step, name, join(log))
	}
	for _, d := range []string{"a", "b"} {
		ents, err := os.ReadDir(r.path(d))
		require.NoError(t, err)
		for _, e := range ents {
			require.Truef(t, slices.Contains(names, d+"/"+e.Name()), "step %d: stray %s/%s", step, d, e.Name())
		}
	}
}

func join(log []string) string {
	var b bytes.Buffer
	for _, l := range log {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
