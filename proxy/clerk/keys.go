package clerk

import (
	"errors"
	"fmt"
	"strings"

	"github.com/clerk/clerk-sdk-go/v2"

	"github.com/tollgate/tollgate/proxy"
)

// parsePEMKey loads CLERK_JWT_KEY, forgiving the shapes environment
// variables give it: literal "\n" escapes, CRLF, everything on one line, or
// the bare base64 body without the BEGIN/END lines.
func parsePEMKey(s string) (*clerk.JSONWebKey, error) {
	s = strings.ReplaceAll(s, `\n`, "\n")
	body := s
	if i := strings.Index(body, "-----BEGIN PUBLIC KEY-----"); i >= 0 {
		body = body[i+len("-----BEGIN PUBLIC KEY-----"):]
		if j := strings.Index(body, "-----END PUBLIC KEY-----"); j >= 0 {
			body = body[:j]
		}
	} else if strings.Contains(body, "-----BEGIN") {
		return nil, errors.New("clerk: jwt key must be a PEM PUBLIC KEY block")
	}
	body = strings.Join(strings.Fields(body), "")
	if body == "" {
		return nil, errors.New("clerk: jwt key is empty")
	}
	var b strings.Builder
	b.WriteString("-----BEGIN PUBLIC KEY-----\n")
	for len(body) > 64 {
		b.WriteString(body[:64])
		b.WriteByte('\n')
		body = body[64:]
	}
	b.WriteString(body)
	b.WriteString("\n-----END PUBLIC KEY-----\n")
	if err := proxy.CheckJWTKey(b.String()); err != nil {
		return nil, fmt.Errorf("clerk: jwt key %w", err)
	}
	jwk, err := clerk.JSONWebKeyFromPEM(b.String())
	if err != nil {
		return nil, fmt.Errorf("clerk: jwt key: %w", err)
	}
	return jwk, nil
}
