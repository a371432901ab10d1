package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// The binary records (accounts, customers, history) are a version byte
// and then fields in a fixed order, each as compact as it can be read
// back exactly: integers as varints, strings as a length and the bytes,
// times as unix seconds (nanoseconds only when there are any), and the
// strings that repeat across records (statuses, plans, prices,
// currencies, intervals) as numbers from the store's dictionary (dict.go).
// A record never begins with '{', so a JSON record of an older tollgate
// is told apart by its first byte.

// errCorrupt is a binary record that does not decode: cut short, or with
// bytes left over.
var errCorrupt = errors.New("corrupt record")

// enc builds a binary record; the first dictionary error sticks.
type enc struct {
	b   []byte
	err error
}

func (e *enc) byte1(c byte)     { e.b = append(e.b, c) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }

// dict writes the dictionary's number for s.
func (e *enc) dict(tx *bbolt.Tx, s string) {
	id, err := dictID(tx, s)
	if err != nil && e.err == nil {
		e.err = err
	}
	e.uvarint(id)
}

// bit is f when on, else 0: a record's flags are the OR of its bits.
func bit(on bool, f uint64) uint64 {
	if on {
		return f
	}
	return 0
}

// time writes 0 for the zero time, else 1 + (zigzag(unix seconds) << 1 |
// has nanoseconds), and the nanoseconds when there are any: five bytes for
// a time of this century to the second. Every time is read back in UTC.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.uvarint(0)
		return
	}
	s, ns := t.Unix(), t.Nanosecond()
	z := uint64(s<<1) ^ uint64(s>>63)
	v := z << 1
	if ns != 0 {
		v |= 1
	}
	e.uvarint(v + 1)
	if ns != 0 {
		e.uvarint(uint64(ns))
	}
}

// dec reads a binary record; the first error sticks and every later read
// returns a zero value.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *dec) byte1() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// raw returns the next length-prefixed bytes, aliasing the record.
func (d *dec) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

// str copies the next string out of the record (bbolt's memory is only
// valid inside its transaction).
func (d *dec) str() string { return string(d.raw()) }

func (d *dec) time() time.Time {
	v := d.uvarint()
	if v == 0 || d.err != nil {
		return time.Time{}
	}
	v--
	z := v >> 1
	s := int64(z>>1) ^ -int64(z&1)
	var ns uint64
	if v&1 != 0 {
		if ns = d.uvarint(); ns == 0 || ns >= uint64(time.Second) {
			d.fail()
			return time.Time{}
		}
	}
	return time.Unix(s, int64(ns)).UTC()
}

// dict reads a dictionary number and returns its string.
func (d *dec) dict(tx *bbolt.Tx) string {
	id := d.uvarint()
	if d.err != nil {
		return ""
	}
	s, err := dictString(tx, id)
	if err != nil {
		d.err, d.b = err, nil
	}
	return s
}

// end is the record's error: the first one, or bytes left over.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return d.err
}

// orderedUint appends v so that byte order is numeric order: its length,
// then its big-endian bytes without leading zeros.
func orderedUint(b []byte, v uint64) []byte {
	n := 0
	for x := v; x != 0; x >>= 8 {
		n++
	}
	b = append(b, byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// readOrderedUint reads what orderedUint wrote at the start of b and
// returns the rest.
func readOrderedUint(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 || int(b[0]) > 8 || len(b) < 1+int(b[0]) {
		return 0, nil, false
	}
	n := int(b[0])
	var v uint64
	for _, c := range b[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	return v, b[1+n:], true
}

// Fill percentages: how full bbolt leaves a page it splits. Where keys
// are put in increasing order (IDs handed out in time order, times,
// sequences), a page filled to the brim is never written in again, so a
// full split leaves no gaps; keys put anywhere fare best at bbolt's
// default, half (a page split full would split again at its next key).
const (
	fillAppend = 1.0
	// fillMixed is bbolt's default, once a transaction has put a key
	// anywhere: it keeps put from choosing again.
	fillMixed = bbolt.DefaultFillPercent - 1e-9
)

// put is b.Put, choosing the bucket's fill percentage for this
// transaction (a bucket handle lives as long as its transaction): full
// pages while every new key goes at the end of its range (the keys that
// share its first rangeLen bytes: an index's list, a kind of ID; 0: the
// whole bucket), half pages as soon as one does not. Replacing a key
// changes nothing.
func put(b *bbolt.Bucket, k, v []byte, rangeLen int) error {
	if b.FillPercent != fillMixed {
		next, _ := b.Cursor().Seek(k)
		switch {
		case bytes.Equal(next, k):
		case next == nil || rangeLen > 0 && !bytes.HasPrefix(next, k[:min(rangeLen, len(k))]):
			b.FillPercent = fillAppend
		default:
			b.FillPercent = fillMixed
		}
	}
	if err := b.Put(k, v); err != nil {
		return fmt.Errorf("put %q: %w", k, err)
	}
	return nil
}
