package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/admin"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/gateway"
)

// The admin commands (users, sync, backup) talk to a running gateway's
// admin listener, found from its config (admin.listen, admin.token): the
// store has one writer, the gateway.

// usersPageSize is how many users the CLI asks for per request.
const usersPageSize = 500

// usersPageTimeout bounds one page of `tollgate users`.
const usersPageTimeout = 30 * time.Second

// adminClient calls the admin API of a running gateway.
type adminClient struct {
	base   string // http://host:port
	token  string
	config string // the config file, for messages
	hc     *http.Client
}

// newAdminClient reads the config for the admin listener's address and
// token.
func newAdminClient(src configSource) (*adminClient, error) {
	configPath := src.path
	cfg, err := src.load()
	if err != nil {
		return nil, err
	}
	if cfg.Admin.Listen == "" {
		return nil, fmt.Errorf("%s: admin.listen is not set: this command talks to a running gateway's admin listener", configPath)
	}
	if cfg.Admin.Token == "" {
		return nil, fmt.Errorf("%s: admin.token is empty (if it names an environment variable, set it in this shell too, or pass -env-file): the admin API needs it", configPath)
	}
	return &adminClient{base: "http://" + dialable(cfg.Admin.Listen), token: cfg.Admin.Token, config: configPath, hc: &http.Client{}}, nil
}

// cliActor names the person at the terminal in the gateway's audit trail.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// do sends one request and returns the response when its status is want;
// any other status becomes an error carrying the API's message.
func (c *adminClient) do(ctx context.Context, method, path string, body io.Reader, want int) (*http.Response, error) {
	return c.send(ctx, method, path, "application/x-www-form-urlencoded", body, want)
}

// send is do with the body's content type.
func (c *adminClient) send(ctx context.Context, method, path, contentType string, body io.Reader, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(admin.ActorHeader, cliActor())
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s (is the gateway running? admin.listen in %s): %w", c.base, c.config, err)
	}
	if resp.StatusCode == want {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if resp.StatusCode == http.StatusUnauthorized {
		msg += fmt.Sprintf(" (is admin.token in %s the running gateway's?)", c.config)
	}
	return nil, fmt.Errorf("admin API: %s %s: %d %s: %s", method, path, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
}

// getJSON GETs path and decodes the JSON answer into v.
func (c *adminClient) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("admin API: %s: %w", path, err)
	}
	return nil
}

// users fetches every user matching status and plan, page after page,
// handing each page to emit as it arrives, so a million users stream in
// pages of pageSize instead of waiting in memory. Each page has its own
// deadline; the listing as a whole has none.
func (c *adminClient) users(ctx context.Context, status, plan string, pageSize int, emit func([]admin.User) error) error {
	after := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		for k, v := range map[string]string{"status": status, "plan": plan, "after": after} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var page admin.UsersPage
		pageCtx, cancel := context.WithTimeout(ctx, usersPageTimeout)
		err := c.getJSON(pageCtx, "/api/users?"+q.Encode(), &page)
		cancel()
		if err != nil {
			return err
		}
		if err := emit(page.Users); err != nil {
			return err
		}
		if page.Next == "" || page.Next == after {
			return nil
		}
		after = page.Next
	}
}

// runUsers lists the gateway's users with their Stripe customer, plans and
// status: a table, or --json / --csv, written page by page.
func runUsers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("users", "Lists users with their Stripe customer, plan and status, asking the running gateway's admin listener (found from the config).", stderr)
	src := configFlags(fs, "path to the YAML config (for admin.listen and admin.token)")
	status := fs.String("status", "", "only users whose best subscription status is this (active, trialing, past_due, canceled, …, or none)")
	plan := fs.String("plan", "", "only users holding this plan (its config key)")
	asJSON := fs.Bool("json", false, "print JSON")
	asCSV := fs.Bool("csv", false, "print CSV")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *asJSON && *asCSV {
		return fmt.Errorf("%w: --json and --csv exclude each other", errUsage)
	}
	c, err := newAdminClient(*src)
	if err != nil {
		return err
	}
	var out usersWriter
	switch {
	case *asJSON:
		out = &usersJSON{w: stdout}
	case *asCSV:
		out = &usersCSV{w: csv.NewWriter(stdout)}
	default:
		out = &usersTable{w: stdout}
	}
	if err := c.users(ctx, *status, *plan, usersPageSize, out.page); err != nil {
		return err
	}
	return out.end()
}

// usersWriter writes a listing page by page: page for each page as it
// arrives, end once after the last.
type usersWriter interface {
	page([]admin.User) error
	end() error
}

// usersJSON writes one JSON array, element by element.
type usersJSON struct {
	w     io.Writer
	begun bool
}

func (j *usersJSON) page(users []admin.User) error {
	for _, u := range users {
		b, err := json.MarshalIndent(u, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if !j.begun {
			sep, j.begun = "[\n  ", true
		}
		if _, err := io.WriteString(j.w, sep); err != nil {
			return err
		}
		if _, err := j.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (j *usersJSON) end() error {
	end := "\n]\n"
	if !j.begun {
		end = "[]\n"
	}
	_, err := io.WriteString(j.w, end)
	return err
}

// usersCSV writes a header, then each page's rows.
type usersCSV struct {
	w     *csv.Writer
	begun bool
}

func (c *usersCSV) page(users []admin.User) error {
	if !c.begun {
		c.begun = true
		_ = c.w.Write([]string{"id", "kind", "email", "org_ids", "customer_id", "plans", "status", "period_end", "comp", "first_seen", "last_seen"})
	}
	for _, u := range users {
		_ = c.w.Write([]string{u.ID, u.Kind, u.Email, strings.Join(u.OrgIDs, ";"), u.CustomerID, strings.Join(u.Plans, ";"), u.Status,
			rfc3339(u.PeriodEnd), strconv.FormatBool(u.Comp), rfc3339(u.FirstSeen), rfc3339(u.LastSeen)})
	}
	c.w.Flush()
	return c.w.Error()
}

func (c *usersCSV) end() error {
	if !c.begun {
		return c.page(nil)
	}
	return nil
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// usersTable writes aligned columns, a page at a time (columns align
// within a page), then the count.
type usersTable struct {
	w     io.Writer
	begun bool
	n     int
}

func (t *usersTable) page(users []admin.User) error {
	tw := tabwriter.NewWriter(t.w, 0, 0, 2, ' ', 0)
	if !t.begun {
		t.begun = true
		fmt.Fprintln(tw, "USER\tEMAIL\tCUSTOMER\tPLANS\tSTATUS\tPERIOD END\tLAST SEEN")
	}
	for _, u := range users {
		plans := strings.Join(u.Plans, ",")
		if u.Comp {
			plans += " (comp)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, orDash(u.Email), orDash(u.CustomerID), orDash(plans), orDash(u.Status),
			orDash(formatTime(u.PeriodEnd, "2006-01-02")), orDash(formatTime(u.LastSeen, "2006-01-02 15:04")))
	}
	t.n += len(users)
	return tw.Flush()
}

func (t *usersTable) end() error {
	if !t.begun {
		if err := t.page(nil); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(t.w, "%d users\n", t.n)
	return err
}

func formatTime(t time.Time, layout string) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(layout)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runSync asks the gateway to re-read one customer from Stripe now, or to
// start a sync of all customers.
func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sync", "Re-reads one customer, or every customer, from Stripe into the store, through the running gateway.", stderr)
	src := configFlags(fs, "path to the YAML config (for admin.listen and admin.token)")
	customer := fs.String("customer", "", "sync this Stripe customer (cus_…)")
	userID := fs.String("user", "", "sync the Stripe customer of this Clerk user (user_…) or organisation (org_…)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *customer != "" && *userID != "" {
		return fmt.Errorf("%w: -customer and -user exclude each other", errUsage)
	}
	c, err := newAdminClient(*src)
	if err != nil {
		return err
	}
	form := url.Values{}
	want := http.StatusOK
	switch {
	case *customer != "":
		form.Set("customer", *customer)
	case *userID != "":
		form.Set("user", *userID)
	default:
		want = http.StatusAccepted
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPost, "/api/sync", strings.NewReader(form.Encode()), want)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res admin.SyncResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("admin API: /api/sync: %w", err)
	}
	if want == http.StatusAccepted {
		fmt.Fprintln(stdout, "sync of all customers started in the gateway; its log reports when it ends")
		return nil
	}
	fmt.Fprintf(stdout, "synced %s\n", res.Customer)
	return nil
}

// runBackup saves a consistent copy of the running gateway's store to a
// file: written to a temporary file beside it, checked to open as a store,
// then renamed into place, so FILE is never a partial copy.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlagSet("backup", "Writes a consistent copy of the store to a file, through the running gateway.", stderr)
	src := configFlags(fs, "path to the YAML config (for admin.listen and admin.token)")
	out := fs.String("o", "", "the file to write (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: -o FILE is required", errUsage)
	}
	c, err := newAdminClient(*src)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodGet, "/api/backup", nil, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	dir, base := filepath.Split(*out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, resp.Body)
	if err != nil {
		return fmt.Errorf("backup: download cut short after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("backup: got %d of %d bytes", n, resp.ContentLength)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	counts, err := verifyBackup(ctx, tmp.Name())
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(dir); err == nil { // make the rename durable
		_ = d.Sync()
		d.Close()
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes: %d customers, %d users)\n", *out, n, counts.Customers, counts.Users)
	return nil
}

// verifyBackup opens a downloaded copy as a store and reads it.
func verifyBackup(ctx context.Context, path string) (bolt.Counts, error) {
	s, err := bolt.Open(path, bolt.Options{Timeout: time.Second})
	if err != nil {
		return bolt.Counts{}, fmt.Errorf("backup: the copy does not open as a store: %w", err)
	}
	counts, err := s.Counts(ctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return bolt.Counts{}, fmt.Errorf("backup: the copy does not read: %w", err)
	}
	return counts, nil
}

// adminHandler builds the admin listener's handler for a wired gateway:
// health, readiness of what the gateway uses, metrics, and the admin API.
// Syncs it starts in the background run under ctx and through background.
func (g *app) adminHandler(ctx context.Context, cfg *proxy.Config, logger *slog.Logger, background func(func())) (http.Handler, error) {
	ac := admin.Config{
		Token:      cfg.Admin.Token,
		Plans:      g.currentPlans,
		Access:     g.currentAccess,
		Logger:     logger.With("component", "admin"),
		Context:    ctx,
		Background: background,
	}
	if g.Metrics != nil {
		ac.Metrics = g.Metrics.Handler()
	}
	if g.Store != nil {
		ac.Store = g.Store
		if cfg.APIKeys.Enabled && g.Keys != nil {
			// The gateway's own cached store, so a revocation here drops
			// the key from its cache at once.
			ac.Keys, ac.LiveKeys = g.Keys, cfg.LiveMode()
		}
		ac.Outbox = g.Store // every store keeps the usage outbox (appStore)
		ac.Ready = append(ac.Ready, admin.Check{Name: "store", Run: g.Store.Ping})
	}
	if g.listener != nil {
		// Several replicas: not ready while this one does not follow what
		// the others commit (its misses are refused meanwhile).
		l := g.listener
		ac.Ready = append(ac.Ready, admin.Check{Name: "change_log", Run: func(context.Context) error { return l.Fresh() }})
	}
	if g.Replicas != nil {
		// No heartbeat for the TTL: the others no longer count this
		// replica, and the rates' total is over by its share. Advisory:
		// the store check fails too when the database is away from this
		// replica alone, and a database slow for every replica must not
		// take them all out of the balancer.
		ac.Ready = append(ac.Ready, admin.Check{Name: "replica_heartbeat", Advisory: true, Run: g.Replicas.Check})
		ac.Replicas = g.Replicas
	}
	if g.Cache != nil {
		ac.Cache = g.Cache
	}
	if g.Limiter != nil {
		ac.Usage = g.Limiter
		ac.Free = func() *proxy.Plan { return g.config().Free }
	}
	if g.Clerk != nil {
		ac.Ready = append(ac.Ready, admin.Check{Name: "clerk", Run: g.Clerk.Ready})
	}
	if g.Billing != nil {
		ac.Billing = g.Billing
		ac.Ready = append(ac.Ready, admin.Check{Name: "stripe", Run: g.Billing.ReadyCheck()},
			// Deferred syncs far behind (10 minutes) are a warning in
			// /readyz's body, never a failure: every replica shares the
			// backlog, and the worker drains it whatever traffic a
			// replica gets (README, "Admin listener").
			admin.Check{Name: "webhook_backlog", Advisory: true, Run: g.Billing.BacklogCheck(0)})
	}
	h, err := admin.New(ac)
	if err != nil {
		return nil, err
	}
	// The API's bodies arrive whole within seconds, as on the public
	// listener; its answers (a backup) may stream for long.
	return gateway.WithBodyDeadline(h, g.ownBody), nil
}

// currentPlans are the plans of the config now serving (a reload may
// change them).
func (g *app) currentPlans() []proxy.Plan {
	if cfg := g.config(); cfg != nil {
		return cfg.Plans
	}
	return nil
}

// currentAccess is the access policy of the config now serving (a
// reload may change it), for the admin API's listing.
func (g *app) currentAccess() proxy.AccessPolicy {
	if cfg := g.config(); cfg != nil {
		return cfg.Access()
	}
	return proxy.AccessPolicy{}
}

// serveAdmin serves the admin API on ln until ctx ends or stop is called;
// with a nil ln (no admin.listen) it does nothing. stop shuts the listener
// down and waits for the syncs it started, so call it before the gateway
// closes its store.
func serveAdmin(ctx context.Context, ln net.Listener, cfg *proxy.Config, g *app, logger *slog.Logger) (stop func() error, err error) {
	if ln == nil {
		return func() error { return nil }, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	h, err := g.adminHandler(ctx, cfg, logger, func(fn func()) { bg.Go(fn) })
	if err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	logger.Info("admin listener", "addr", ln.Addr().String(), "api", cfg.Admin.Token != "")
	errc := make(chan error, 1)
	go func() {
		err := serveUntilDone(ctx, ln, h, nil, logger.With("component", "admin"))
		if err != nil && ctx.Err() == nil {
			logger.Error("admin listener stopped", "err", err)
		}
		errc <- err
	}()
	var once sync.Once
	return func() error {
		once.Do(cancel)
		err := <-errc
		bg.Wait()
		errc <- err // a second stop returns the same
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}, nil
}
