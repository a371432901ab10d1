package proxy

import (
	"errors"
	"fmt"
	"strings"
)

// SubjectKind says whether a billing subject is a user or an organisation.
type SubjectKind string

const (
	SubjectUser SubjectKind = "user"
	SubjectOrg  SubjectKind = "org"
)

// Subject is who pays: a Clerk user or a Clerk organisation.
type Subject struct {
	Kind SubjectKind
	ID   string // user_… or org_…
}

func (s Subject) String() string { return string(s.Kind) + ":" + s.ID }

// maxSubjectID bounds a Clerk ID (Clerk's are about 32 characters).
const maxSubjectID = 100

// ErrInvalidSubject is wrapped by ParseSubject's error.
var ErrInvalidSubject = errors.New("not a Clerk user (user_…) or organisation (org_…) ID")

// Valid reports whether s names a Clerk user or organisation: the ID is
// "user_" (for SubjectUser) or "org_" (for SubjectOrg) and then letters,
// digits and underscores, at most 100 bytes in all. It is the one rule for
// what may be a subject, wherever one is read or stored.
func (s Subject) Valid() bool {
	return s.Kind != "" && subjectKindOf(s.ID) == s.Kind && len(s.ID) <= maxSubjectID &&
		strings.IndexFunc(s.ID, func(r rune) bool {
			return !(r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
		}) < 0
}

// subjectKindOf is the kind a Clerk ID's prefix names ("" for neither, and
// for a bare prefix).
func subjectKindOf(id string) SubjectKind {
	switch {
	case len(id) > len("user_") && strings.HasPrefix(id, "user_"):
		return SubjectUser
	case len(id) > len("org_") && strings.HasPrefix(id, "org_"):
		return SubjectOrg
	}
	return ""
}

// ParseSubject reads a subject written as Subject.String() does
// ("user:user_…", "org:org_…"), or a bare Clerk ID ("user_…", "org_…"),
// whose prefix names its kind. Either way the result is Valid; an error
// wraps ErrInvalidSubject.
func ParseSubject(s string) (Subject, error) {
	id := s
	kind, rest, qualified := strings.Cut(s, ":")
	if qualified {
		id = rest
	}
	sub := Subject{Kind: subjectKindOf(id), ID: id}
	if !sub.Valid() || qualified && SubjectKind(kind) != sub.Kind {
		return Subject{}, fmt.Errorf("subject %.40q: %w", s, ErrInvalidSubject)
	}
	return sub, nil
}
