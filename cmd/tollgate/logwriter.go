package main

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// logWriter takes `tollgate serve`'s log lines (the access log's one per
// request among them) into memory and writes them out in batches, every
// logFlushEvery or as soon as logFlushAt bytes wait, so that a request
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

	kick   chan struct{}
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
	w := &logWriter{out: out, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// Write copies p; slog hands each record to one Write.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.pending = append(w.pending, p...)
	n := len(w.pending)
	w.mu.Unlock()
	switch {
	case n >= logMaxPending, w.closed.Load():
		w.flush()
	case n >= logFlushAt:
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
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

func (w *logWriter) loop() {
	defer close(w.done)
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			w.flush()
			return
		case <-t.C:
		case <-w.kick:
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
