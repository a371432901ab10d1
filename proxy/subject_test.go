package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSubject(t *testing.T) {
	user := Subject{Kind: SubjectUser, ID: "user_2abcXYZ"}
	org := Subject{Kind: SubjectOrg, ID: "org_2abc_9"}
	for _, tc := range []struct {
		in   string
		want Subject // zero: an error
	}{
		{"user:user_2abcXYZ", user},
		{"org:org_2abc_9", org},
		{"user_2abcXYZ", user}, // a bare Clerk ID: the prefix names the kind
		{"org_2abc_9", org},
		{"user_" + strings.Repeat("a", maxSubjectID-len("user_")), Subject{Kind: SubjectUser, ID: "user_" + strings.Repeat("a", maxSubjectID-len("user_"))}},
		{"user_" + strings.Repeat("a", maxSubjectID-len("user_")+1), Subject{}}, // too long
		{"", Subject{}},
		{"user:", Subject{}},
		{"user_", Subject{}}, // a prefix alone
		{"org_", Subject{}},
		{"user:org_1", Subject{}}, // the kind disagrees with the ID
		{"org:user_1", Subject{}},
		{"team:user_1", Subject{}},
		{":user_1", Subject{}},
		{"user:user_1:x", Subject{}},
		{"usr_1", Subject{}},
		{"ada", Subject{}},
		{"user_a-b", Subject{}}, // not a Clerk ID's letters
		{"user_a/b", Subject{}},
		{"user_a b", Subject{}},
		{" user_a", Subject{}},
		{"user_ä", Subject{}},
	} {
		got, err := ParseSubject(tc.in)
		if got != tc.want || (err == nil) != (tc.want != Subject{}) {
			t.Errorf("ParseSubject(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ParseSubject(%q): %v does not wrap ErrInvalidSubject", tc.in, err)
		}
		if err == nil {
			if back, err := ParseSubject(got.String()); err != nil || back != got {
				t.Errorf("ParseSubject(%q.String()) = %v, %v", got, back, err)
			}
		}
	}
}

func TestSubject_Valid(t *testing.T) {
	for s, want := range map[Subject]bool{
		{Kind: SubjectUser, ID: "user_1"}: true,
		{Kind: SubjectOrg, ID: "org_1"}:   true,
		{Kind: SubjectUser, ID: "org_1"}:  false,
		{Kind: SubjectOrg, ID: "user_1"}:  false,
		{Kind: "team", ID: "user_1"}:      false,
		{Kind: SubjectUser}:               false,
		{}:                                false,
	} {
		if got := s.Valid(); got != want {
			t.Errorf("%#v.Valid() = %v, want %v", s, got, want)
		}
	}
}
