package main

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/proxy/gateway"
)

// logWriter takes `tollgate serve`'s log lines (the access log's one per
// request among them) into memory and writes them out in batches, from a
// goroutine of its own: logFlushEvery after a batch's first line, or as soon
// as logFlushAt bytes wait (an idle gateway's flusher sleeps), so that a request
// costs no write(2) and holds no lock across one (README "Performance").
// Lines keep their order. When the output falls behind by logMaxPending
// bytes, the request that finds it so writes the batch itself, as every
// request did before: the log is slowed, never dropped. A kill -9 loses at
// most the last logFlushEvery of lines; Close writes out the rest.
type logWriter struct {
	out io.Writer

	mu      sync.Mutex // guards pending
	pending []byte

	flushMu sync.Mutex // one batch written at a time, in order
	spare   []byte     // the last batch's buffer, reused (under flushMu)

	kick   chan struct{} // a batch has begun
	urgent chan struct{} // logFlushAt bytes wait
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool // after Close every Write is written out at once
}

const (
	logFlushEvery = 20 * time.Millisecond
	logFlushAt    = 32 << 10
	logMaxPending = 1 << 20
)

func newLogWriter(out io.Writer) *logWriter {
	w := &logWriter{out: out, kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// Write copies p; slog hands each record to one Write.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.pending = append(w.pending, p...)
	n := len(w.pending)
	w.mu.Unlock()
	w.added(n, len(p))
	return len(p), nil
}

// AppendLine appends the access log's line straight into the pending batch
// (gateway.LineBuffer): no record, no copy. The line is encoded under the
// batch's lock, which no I/O is ever done under.
func (w *logWriter) AppendLine(l gateway.Line) {
	w.mu.Lock()
	before := len(w.pending)
	w.pending = l.AppendTo(w.pending)
	n := len(w.pending)
	w.mu.Unlock()
	w.added(n, n-before)
}

// added wakes the flusher, or flushes, after a line of size bytes brought
// the batch to n.
func (w *logWriter) added(n, size int) {
	switch {
	case n >= logMaxPending, w.closed.Load():
		w.flush()
	case n >= logFlushAt:
		notify(w.urgent)
	case n == size:
		notify(w.kick) // the first line of a batch: write it out within logFlushEvery
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (w *logWriter) flush() {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	b := w.pending
	w.pending = w.spare[:0]
	w.mu.Unlock()
	if len(b) > 0 {
		_, _ = w.out.Write(b)
	}
	if cap(b) <= logMaxPending*2 {
		w.spare = b
	} else {
		w.spare = nil
	}
}

// loop writes a batch out logFlushEvery after its first line, or sooner
// when logFlushAt bytes wait; an idle gateway's flusher sleeps.
func (w *logWriter) loop() {
	defer close(w.done)
	t := time.NewTimer(logFlushEvery)
	t.Stop()
	for {
		select {
		case <-w.stop:
			w.flush()
			return
		case <-w.kick:
		case <-w.urgent:
		}
		t.Reset(logFlushEvery)
		select {
		case <-w.stop:
			w.flush()
			return
		case <-t.C:
		case <-w.urgent:
			t.Stop()
		}
		w.flush()
	}
}

// Close writes out what is pending and stops the flusher; a later Write
// is written out at once.
func (w *logWriter) Close() {
	if w.closed.CompareAndSwap(false, true) {
		close(w.stop)
	}
	<-w.done
	w.flush()
}
