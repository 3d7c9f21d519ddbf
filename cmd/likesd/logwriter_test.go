package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuf is an io.Writer safe for the writer goroutine and the test.
type lockedBuf struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

// Every line written by many goroutines comes out whole, each goroutine's
// in its order, and nothing is left behind by Close; lines after Close are
// written at once.
func TestBatchWriterKeepsEveryLineWholeAndInOrder(t *testing.T) {
	var out lockedBuf
	w := newBatchWriter(&out)
	const goroutines, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				_, err := fmt.Fprintf(w, "g%d line %d %s\n", g, i, strings.Repeat("x", i%300))
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())
	require.NoError(t, w.Close())
	_, err := fmt.Fprintf(w, "after close\n")
	require.NoError(t, err)

	got := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	require.Len(t, got, goroutines*lines+1)
	assert.Equal(t, "after close", got[len(got)-1])
	next := make([]int, goroutines)
	for _, line := range got[:len(got)-1] {
		var g, i int
		var pad string
		_, err := fmt.Sscanf(line, "g%d line %d %s", &g, &i, &pad)
		if i%300 == 0 {
			_, err = fmt.Sscanf(line, "g%d line %d", &g, &i)
		}
		require.NoError(t, err, line)
		require.Equal(t, next[g], i, "goroutine %d's lines in order", g)
		require.Equal(t, i%300, len(pad), line)
		next[g]++
	}
}

// A line larger than the bound is still written, alone.
func TestBatchWriterTakesALineOverTheBound(t *testing.T) {
	var out lockedBuf
	w := newBatchWriter(&out)
	big := strings.Repeat("y", maxPendingLog+10) + "\n"
	for range 3 {
		_, err := w.Write([]byte(big))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	assert.Equal(t, 3*len(big), out.b.Len())
}
