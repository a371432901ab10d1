package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedOut is an io.Writer the flusher and the test may share.
type lockedOut struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedOut) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedOut) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// textLine is a gateway.Line.
type textLine string

func (l textLine) AppendTo(b []byte) []byte { return append(b, l...) }

// Every line written by many goroutines, through Write (slog) or
// AppendLine (the access log), comes out whole, once, each goroutine's in
// its order, by Close at the latest.
func TestLogWriter_KeepsEveryLineInOrder(t *testing.T) {
	var out lockedOut
	w := newLogWriter(&out)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				line := fmt.Sprintf("g%d line %d %s\n", g, i, strings.Repeat("x", i%300))
				if g%2 == 0 {
					w.Write([]byte(line))
				} else {
					w.AppendLine(textLine(line))
				}
			}
		})
	}
	wg.Wait()
	w.Close()
	next := make([]int, writers)
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d line %d", &g, &i); err != nil {
			t.Fatalf("a torn line: %q", l)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines out, want %d", g, n, lines)
		}
	}
}

// A writer whose output falls behind by logMaxPending writes the batch
// itself: the log is slowed, never dropped nor grown without bound.
func TestLogWriter_BackPressure(t *testing.T) {
	var out lockedOut
	// No flusher: the output is as far behind as it gets.
	w := &logWriter{out: &out, kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
	line := []byte(strings.Repeat("y", 1023) + "\n")
	for range logMaxPending/len(line) - 1 {
		w.Write(line)
	}
	if got := len(out.String()); got != 0 {
		t.Fatalf("%d bytes out before the mark", got)
	}
	w.Write(line) // at the mark: written out before Write returns
	if got := len(out.String()); got != logMaxPending {
		t.Errorf("%d bytes out at the mark, want %d", got, logMaxPending)
	}
}

// After Close, a line is written out at once.
func TestLogWriter_AfterClose(t *testing.T) {
	var out lockedOut
	w := newLogWriter(&out)
	w.Write([]byte("before\n"))
	w.Close()
	w.Write([]byte("after\n"))
	w.AppendLine(textLine("appended\n"))
	if got := out.String(); got != "before\nafter\nappended\n" {
		t.Errorf("out = %q", got)
	}
}

// chanOut hands every write to a channel.
type chanOut chan string

func (c chanOut) Write(p []byte) (int, error) { c <- string(p); return len(p), nil }

// A line is written out without Close, by the flusher, soon after it
// was written: a batch does not wait for the next line.
func TestLogWriter_FlushesALoneLine(t *testing.T) {
	out := make(chanOut, 1)
	w := newLogWriter(out)
	defer w.Close()
	w.Write([]byte("alone\n"))
	select {
	case got := <-out:
		if got != "alone\n" {
			t.Errorf("out = %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone line was not written out")
	}
}
