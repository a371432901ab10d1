package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// auditRecord is the audit bucket's value.
type auditRecord struct {
	V       int       `json:"v"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor,omitempty"`
	Action  string    `json:"action"`
	Subject string    `json:"subject,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

func (r *auditRecord) version() int { return r.V }

// timeKey is prefix, then at as big-endian nanoseconds, then a sequence
// number that keeps two keys of the same instant apart: in key order is in
// time order.
func timeKey(prefix string, at time.Time, seq uint64) []byte {
	k := make([]byte, len(prefix)+16)
	copy(k, prefix)
	binary.BigEndian.PutUint64(k[len(prefix):], uint64(at.UnixNano()))
	binary.BigEndian.PutUint64(k[len(prefix)+8:], seq)
	return k
}

// Audit appends an entry to the audit trail. At defaults to now; Action is
// required.
func (s *Store) Audit(ctx context.Context, e proxy.AuditEntry) error {
	if e.Action == "" {
		return fmt.Errorf("bolt: audit: empty action")
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	rec := auditRecord{V: recordVersion, At: e.At.UTC(), Actor: e.Actor, Action: e.Action, Detail: e.Detail}
	if e.Subject != (proxy.Subject{}) {
		if err := checkSubject(e.Subject); err != nil {
			return fmt.Errorf("bolt: audit %s: %w", e.Action, err)
		}
		rec.Subject = e.Subject.String()
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := createdBucket(tx, bucketAudit)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return putRecord(b, string(timeKey("", e.At, seq)), &rec)
	})
	if err != nil {
		return fmt.Errorf("bolt: audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditLog returns up to limit entries about subject (every entry for the
// zero subject), newest first. limit <= 0 or above proxy.MaxAuditPage means
// proxy.MaxAuditPage.
func (s *Store) AuditLog(ctx context.Context, subject proxy.Subject, limit int) ([]proxy.AuditEntry, error) {
	var out []proxy.AuditEntry
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		out, err = auditOf(tx, subject, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: audit log %s: %w", subject, err)
	}
	return out, nil
}

func auditOf(tx *bbolt.Tx, subject proxy.Subject, limit int) ([]proxy.AuditEntry, error) {
	if limit <= 0 || limit > proxy.MaxAuditPage {
		limit = proxy.MaxAuditPage
	}
	b := optionalBucket(tx, bucketAudit)
	if b == nil {
		return nil, nil
	}
	want := ""
	if subject != (proxy.Subject{}) {
		want = subject.String()
	}
	var out []proxy.AuditEntry
	c := b.Cursor()
	for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
		var rec auditRecord
		if err := decodeRecord(v, &rec); err != nil {
			return nil, fmt.Errorf("audit entry %x: %w", k, err)
		}
		if want != "" && rec.Subject != want {
			continue
		}
		e := proxy.AuditEntry{At: rec.At, Actor: rec.Actor, Action: rec.Action, Detail: rec.Detail}
		if rec.Subject != "" {
			subj, err := proxy.ParseSubject(rec.Subject)
			if err != nil {
				return nil, fmt.Errorf("audit entry %x: %w", k, err)
			}
			e.Subject = subj
		}
		out = append(out, e)
	}
	return out, nil
}
