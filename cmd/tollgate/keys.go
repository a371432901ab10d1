package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/admin"
)

// tollgate keys list|create|revoke: a subject's API keys, through the
// running gateway's admin API, as `tollgate users` is. The gateway makes
// and audits keys; the CLI prints a made key once and keeps no copy.

const keysSummary = `Lists, makes and revokes the API keys of a user or an organisation, through the running
gateway's admin listener (found from the config). Actions:

  list   -subject user_…|org_…                       the subject's keys, revoked ones too
  create -subject user_…|org_… -name NAME -scope S [-expires DAYS]
                                                     make a key; it is printed once, never again
  revoke -id key_…                                   revoke a key (refused from the next request on)`

// runKeys dispatches tollgate keys ACTION [flags]; the action may also
// follow the flags.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tollgate keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tollgate keys list|create|revoke [flags]\n\n%s\n\nFlags:\n", keysSummary)
		fs.PrintDefaults()
	}
	src := configFlags(fs, "path to the YAML config (for admin.listen and admin.token)")
	subject := fs.String("subject", "", "whose keys: a Clerk user (user_…) or organisation (org_…) (list, create)")
	name := fs.String("name", "", "the new key's name, 1 to 100 characters (create)")
	scope := fs.String("scope", "", `the routes the new key opens: route IDs, comma-separated, or "*" for all (create)`)
	days := fs.Int("expires", 0, "the new key expires after this many days, 1 to 3650 (create; 0: never)")
	id := fs.String("id", "", "the key to revoke (key_…) (revoke)")
	asJSON := fs.Bool("json", false, "print JSON (create: the key and its record)")

	action := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if action == "" && fs.NArg() > 0 {
		action = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	only := func(allowed ...string) error {
		for n := range set {
			if n != "config" && n != "env-file" && n != "json" && !slices.Contains(allowed, n) {
				return fmt.Errorf("%w: keys %s takes no -%s", errUsage, action, n)
			}
		}
		return nil
	}
	var sub proxy.Subject
	if action == "list" || action == "create" {
		s, err := proxy.ParseSubject(*subject)
		if err != nil || strings.Contains(*subject, ":") {
			return fmt.Errorf("%w: keys %s needs -subject user_… or org_…", errUsage, action)
		}
		sub = s
	}
	switch action {
	case "list":
		if err := only("subject"); err != nil {
			return err
		}
	case "create":
		if err := only("subject", "name", "scope", "expires"); err != nil {
			return err
		}
		if strings.TrimSpace(*name) == "" {
			return fmt.Errorf("%w: keys create needs -name", errUsage)
		}
		if strings.TrimSpace(*scope) == "" {
			return fmt.Errorf(`%w: keys create needs -scope: route IDs, comma-separated, or "*" for all routes`, errUsage)
		}
	case "revoke":
		if err := only("id"); err != nil {
			return err
		}
		if !proxy.ValidAPIKeyID(*id) {
			return fmt.Errorf("%w: keys revoke needs -id key_… (the ID keys list shows, not the key)", errUsage)
		}
	case "":
		fs.Usage()
		return fmt.Errorf("%w: keys needs an action: list, create or revoke", errUsage)
	default:
		fs.Usage()
		return fmt.Errorf("%w: keys: unknown action %q (want list, create or revoke)", errUsage, action)
	}

	c, err := newAdminClient(*src)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch action {
	case "list":
		var keys []admin.APIKey
		if err := c.getJSON(ctx, "/api/users/"+url.PathEscape(sub.ID)+"/keys", &keys); err != nil {
			return err
		}
		if *asJSON {
			return writeIndentedJSON(stdout, keys)
		}
		return writeKeysTable(stdout, keys)
	case "create":
		return createKey(ctx, c, sub, admin.KeyRequest{Name: *name, Scopes: splitScopes(*scope), Days: *days}, *asJSON, stdout, stderr)
	}
	return revokeKey(ctx, c, *id, *asJSON, stdout)
}

// splitScopes reads "a, b,c" as [a b c]; "*" stays itself.
func splitScopes(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeKeysTable(w io.Writer, keys []admin.APIKey) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tSCOPES\tCREATED\tLAST USED\tEXPIRES\tREVOKED")
	usable := 0
	for _, k := range keys {
		if k.Usable {
			usable++
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, strings.Join(k.Scopes, ","),
			formatTime(k.CreatedAt, "2006-01-02 15:04"), orDash(formatTime(k.LastUsedAt, "2006-01-02 15:04")),
			orDash(formatTime(k.ExpiresAt, "2006-01-02")), orDash(formatTime(k.RevokedAt, "2006-01-02 15:04")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d keys, %d usable\n", len(keys), usable)
	return err
}

// createKey asks the gateway for a key and prints it once. The notice
// that it will not be shown again goes to stderr with --json, so stdout
// stays one JSON document.
func createKey(ctx context.Context, c *adminClient, sub proxy.Subject, req admin.KeyRequest, asJSON bool, stdout, stderr io.Writer) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	path := "/api/users/" + url.PathEscape(sub.ID) + "/keys"
	resp, err := c.send(ctx, http.MethodPost, path, "application/json", bytes.NewReader(body), http.StatusCreated)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var nk admin.NewKey
	if err := json.NewDecoder(resp.Body).Decode(&nk); err != nil {
		return fmt.Errorf("admin API: %s: %w", path, err)
	}
	const notShownAgain = "Copy it now: it will not be shown again (the gateway keeps only its hash)."
	if asJSON {
		fmt.Fprintln(stderr, notShownAgain)
		return writeIndentedJSON(stdout, nk)
	}
	expires := "never expires"
	if !nk.Record.ExpiresAt.IsZero() {
		expires = "expires " + formatTime(nk.Record.ExpiresAt, "2006-01-02")
	}
	_, err = fmt.Fprintf(stdout, "made %s for %s: %q, scopes %s, %s\n\n  %s\n\n%s\n",
		nk.Record.ID, nk.Record.Subject, nk.Record.Name, strings.Join(nk.Record.Scopes, ","), expires, nk.Key, notShownAgain)
	return err
}

func revokeKey(ctx context.Context, c *adminClient, id string, asJSON bool, stdout io.Writer) error {
	path := "/api/keys/" + url.PathEscape(id)
	resp, err := c.do(ctx, http.MethodDelete, path, nil, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var k admin.APIKey
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil {
		return fmt.Errorf("admin API: %s: %w", path, err)
	}
	if asJSON {
		return writeIndentedJSON(stdout, k)
	}
	_, err = fmt.Fprintf(stdout, "revoked %s (%q of %s) at %s; it is refused from the next request on\n",
		k.ID, k.Name, k.Subject, formatTime(k.RevokedAt, time.RFC3339))
	return err
}
