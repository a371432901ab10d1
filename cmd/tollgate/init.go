package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// initOptions are init's flags: one per question, and how to ask.
type initOptions struct {
	dir, envFile, publicURL        string
	upstream                       string
	clerkPK, clerkSK, clerkWebhook string
	stripeSK, stripeWebhook        string
	clerkAPIURL, stripeAPIURL      string
	plans                          planFlags
	yes, force                     bool
	onlineTimeout                  time.Duration
	internalPrefix                 string // the config's, under which the webhooks are served
}

// planFlags collects -plan NAME=price_…[,price_…].
type planFlags []string

func (p *planFlags) String() string     { return strings.Join(*p, " ") }
func (p *planFlags) Set(v string) error { *p = append(*p, v); return nil }

func runInit(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("init", "Sets up tollgate in front of an app: asks for the public URL, the app's address, the Clerk and Stripe keys "+
		"(checked online) and the plans (chosen among the Stripe account's active recurring prices), makes or updates the Stripe "+
		"webhook endpoint, and writes config.yaml and tollgate.env. Every question has a flag; -yes asks nothing and fails on an "+
		"answer that no flag, and no config.yaml or tollgate.env already in -dir, gives. A file there is overwritten only when you "+
		"say so (-force with -yes).", stderr)
	o := initOptions{onlineTimeout: 30 * time.Second, internalPrefix: config.DefaultInternalPrefix}
	fs.StringVar(&o.dir, "dir", ".", "the directory to write config.yaml and tollgate.env to")
	fs.StringVar(&o.envFile, "env-file", "", "where to write the env file instead (default DIR/tollgate.env); compose.yaml expects it next to DIR")
	fs.StringVar(&o.publicURL, "public-url", "", "the origin visitors use, e.g. https://app.example.com")
	fs.StringVar(&o.upstream, "upstream", "", "your app as tollgate reaches it, e.g. http://app:3000")
	fs.StringVar(&o.clerkPK, "clerk-publishable-key", "", "Clerk's publishable key (pk_live_… or pk_test_…)")
	fs.StringVar(&o.clerkSK, "clerk-secret-key", "", "Clerk's secret key (sk_live_… or sk_test_…)")
	fs.StringVar(&o.clerkWebhook, "clerk-webhook-secret", "", "the Clerk webhook endpoint's signing secret (whsec_…); may be added to tollgate.env later")
	fs.StringVar(&o.stripeSK, "stripe-secret-key", "", "Stripe's secret key (sk_…), or a restricted key (rk_…) that may also write webhook endpoints")
	fs.StringVar(&o.stripeWebhook, "stripe-webhook-secret", "", "the signing secret of the Stripe webhook endpoint when init cannot get it: the endpoint "+
		"already exists (Stripe shows a secret only when it makes the endpoint), or public_url is on this machine (stripe listen's secret)")
	fs.Var(&o.plans, "plan", "a plan, `NAME=price_…[,price_…]` (repeatable); each price an active recurring price of the account")
	fs.BoolVar(&o.yes, "yes", false, "ask nothing: every answer comes from a flag or the files already in -dir")
	fs.BoolVar(&o.force, "force", false, "overwrite config.yaml and tollgate.env in -dir without asking")
	fs.StringVar(&o.clerkAPIURL, "clerk-api-url", "", "Clerk's Backend API base with /v1, for a stand-in (written to clerk.api_url; default Clerk's own)")
	fs.StringVar(&o.stripeAPIURL, "stripe-api-url", "", "Stripe's API base, for a stand-in (written to stripe.api_url; default Stripe's own)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p := newPrompter(ctx, stdin, stdout, !o.yes)
	defer p.close()
	r := &initRun{o: o, p: p, out: stdout,
		cfgPath: filepath.Join(o.dir, "config.yaml"), envPath: cmp.Or(o.envFile, filepath.Join(o.dir, "tollgate.env"))}
	return r.run(ctx)
}

// initRun is one run of init: the answers so far and what is to be
// written.
type initRun struct {
	o                initOptions
	p                *prompter
	out              io.Writer
	cfgPath, envPath string
	writeCfg         bool
	env              *envFile    // the tollgate.env already there (empty if none)
	prior            priorConfig // defaults from the config.yaml already there
	public           *url.URL
	cfg              initConfig
	vars             map[string]string // tollgate.env to be
	secretsKept      []string          // variables kept from the tollgate.env already there
	madeEndpoint     string            // the Stripe endpoint this run made, if it did
	notes            []string          // said again at the end
}

func (r *initRun) run(ctx context.Context) error {
	var err error
	if r.env, err = readEnvFile(r.envPath); err != nil {
		return fmt.Errorf("read %s: %w", r.envPath, err)
	}
	if r.prior, err = readPriorConfig(r.cfgPath); err != nil {
		fmt.Fprintf(r.out, "warning: %s: %v; nothing of it is reused\n", r.cfgPath, err)
	}
	if err := r.decideFiles(); err != nil {
		return err
	}
	r.vars = map[string]string{}
	steps := []func(context.Context) error{r.askSite, r.askClerk, r.askStripe, r.askPlans, r.clerkWebhook}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	r.vars[envSessionSecret] = r.env.get(envSessionSecret)
	if len(r.vars[envSessionSecret]) < 32 {
		b := make([]byte, 32)
		_, _ = rand.Read(b) // crypto/rand.Read never fails
		r.vars[envSessionSecret] = hex.EncodeToString(b)
	} else {
		r.secretsKept = append(r.secretsKept, envSessionSecret)
	}
	cfgData, err := r.configFile()
	if err != nil {
		return err
	}
	// The endpoint comes last: a new one's secret is shown once, so after
	// it nothing may fail on an answer or on a config init cannot write.
	if err := r.stripeWebhook(ctx); err != nil {
		return err
	}
	return r.write(cfgData)
}

// decideFiles settles which files may be written: a file not there yet,
// or one the user agreed to overwrite (-force, or yes to the question).
// tollgate.env must be writable, as a new Stripe endpoint's secret can be
// kept nowhere else; config.yaml may be kept as it is.
func (r *initRun) decideFiles() error {
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	cfgThere, envThere := exists(r.cfgPath), exists(r.envPath)
	r.writeCfg = !cfgThere || r.o.force
	if r.o.force || !cfgThere && !envThere {
		return nil
	}
	if !r.p.interactive {
		var there []string
		for _, f := range []struct {
			path string
			ok   bool
		}{{r.cfgPath, cfgThere}, {r.envPath, envThere}} {
			if f.ok {
				there = append(there, f.path)
			}
		}
		return fmt.Errorf("%w: %s already there; pass -force to overwrite (nothing was written, and nothing asked of Clerk or Stripe)",
			errUsage, strings.Join(there, " and "))
	}
	if cfgThere {
		ok, err := r.p.confirm(r.cfgPath+" exists. Overwrite it with a new one (its routes and other edits are lost)?", false)
		if err != nil {
			return err
		}
		r.writeCfg = ok
		if !ok {
			fmt.Fprintln(r.out, "  Kept as it is; it must name the variables tollgate.env holds.")
		}
	}
	if envThere {
		ok, err := r.p.confirm(r.envPath+" exists. Overwrite it (variables init does not write are kept)?", false)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("init needs to write tollgate.env; nothing was written")
		}
	}
	return nil
}

func (r *initRun) online(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.o.onlineTimeout)
}

func (r *initRun) askSite(context.Context) error {
	pub, err := r.p.ask(question{label: "Public URL", hint: "\nThe origin visitors use, e.g. https://app.example.com.",
		flag: "public-url", given: r.o.publicURL, def: r.prior.PublicURL, check: checkPublicURL})
	if err != nil {
		return err
	}
	r.cfg.PublicURL = pub
	r.public, _ = url.Parse(pub)
	up, err := r.p.ask(question{label: "Upstream", hint: "Your app, as tollgate reaches it, e.g. http://app:3000 (the app's container on a Docker network).",
		flag: "upstream", given: r.o.upstream, def: r.prior.Upstream, check: checkHTTPURL})
	if err != nil {
		return err
	}
	r.cfg.Upstream = up
	if r.cfg.ClerkAPIURL, err = apiURLFlag("clerk-api-url", r.o.clerkAPIURL, r.prior.ClerkAPIURL, proxy.DefaultClerkAPIURL); err != nil {
		return err
	}
	r.cfg.StripeAPIURL, err = apiURLFlag("stripe-api-url", r.o.stripeAPIURL, r.prior.StripeAPIURL, proxy.DefaultStripeAPIURL)
	return err
}

// apiURLFlag is a service's API base: the flag, else the config's, and
// "" when that is the service's own.
func apiURLFlag(flag, given, prior, def string) (string, error) {
	v := cmp.Or(given, prior)
	if v == "" {
		return "", nil
	}
	v, err := checkHTTPURL(v)
	if err != nil {
		return "", fmt.Errorf("%w: -%s: %w", errUsage, flag, err)
	}
	if v == def {
		return "", nil
	}
	return v, nil
}

// secretDefault is a question's default from tollgate.env, shown without
// its value.
func (r *initRun) secretDefault(q question, name string) question {
	if v := r.env.get(name); v != "" {
		q.def, q.defLabel = v, "the one in tollgate.env"
	}
	return q
}

func (r *initRun) askClerk(ctx context.Context) error {
	pk, err := r.p.ask(question{label: "Clerk publishable key",
		hint: "\nClerk dashboard → API keys, both from the same instance (pk_live_…/sk_live_… in production, pk_test_…/sk_test_… in development).",
		flag: "clerk-publishable-key", given: r.o.clerkPK, def: r.env.get(envClerkPublishable),
		check: func(s string) (string, error) { _, err := proxy.ParsePublishableKey(s); return s, err }})
	if err != nil {
		return err
	}
	live := strings.HasPrefix(pk, "pk_live_")
	sk, err := r.p.ask(r.secretDefault(question{label: "Clerk secret key", flag: "clerk-secret-key", given: r.o.clerkSK,
		check: func(s string) (string, error) {
			if err := checkSecret(s, "sk_"); err != nil {
				return "", err
			}
			if strings.HasPrefix(s, "sk_live_") != live {
				return "", fmt.Errorf("a %s secret key with a %s publishable key; both must come from the same Clerk instance",
					liveOrTest(!live), liveOrTest(live))
			}
			return s, nil
		}}, envClerkSecret))
	if err != nil {
		return err
	}
	cc, err := clerk.New(clerk.Config{PublishableKey: pk, SecretKey: sk, APIURL: cmp.Or(r.cfg.ClerkAPIURL, proxy.DefaultClerkAPIURL), PublicURL: r.public})
	if err != nil {
		return fmt.Errorf("clerk: %w", err)
	}
	octx, cancel := r.online(ctx)
	defer cancel()
	if err := cc.Ready(octx); err != nil {
		return fmt.Errorf("the Clerk keys do not work (nothing was written): %w", err)
	}
	instance := "development"
	if live {
		instance = "production"
	}
	fmt.Fprintf(r.out, "Clerk: the keys work (a %s instance).\n", instance)
	r.vars[envClerkPublishable], r.vars[envClerkSecret] = pk, sk
	return nil
}

// stripeConfig is what the setup calls need of Stripe.
func (r *initRun) stripeConfig() stripe.Config {
	return stripe.Config{SecretKey: r.vars[envStripeSecret], APIURL: cmp.Or(r.cfg.StripeAPIURL, proxy.DefaultStripeAPIURL),
		PublicURL: r.public, InternalPrefix: r.o.internalPrefix}
}

func (r *initRun) askStripe(ctx context.Context) error {
	sk, err := r.p.ask(r.secretDefault(question{label: "Stripe secret key",
		hint: "\nStripe dashboard → Developers → API keys: the secret key, or a restricted key that may also write webhook endpoints.",
		flag: "stripe-secret-key", given: r.o.stripeSK,
		check: func(s string) (string, error) {
			if !strings.HasPrefix(s, "sk_") && !strings.HasPrefix(s, "rk_") {
				return "", errors.New("not a Stripe secret key; want sk_live_…, sk_test_… or a restricted rk_… key")
			}
			return s, checkSecret(s, "")
		}}, envStripeSecret))
	if err != nil {
		return err
	}
	r.vars[envStripeSecret] = sk
	octx, cancel := r.online(ctx)
	defer cancel()
	if err := stripe.CheckKey(octx, r.stripeConfig()); err != nil {
		return fmt.Errorf("the Stripe key does not work (nothing was written): %w", err)
	}
	stripeLive, clerkLive := strings.Contains(sk, "_live_"), strings.HasPrefix(r.vars[envClerkPublishable], "pk_live_")
	fmt.Fprintf(r.out, "Stripe: the key works (%s mode).\n", liveOrTest(stripeLive))
	if stripeLive != clerkLive {
		r.note(fmt.Sprintf("keys mixed: a Clerk %s instance with a Stripe %s key", instanceKind(clerkLive), liveOrTest(stripeLive)))
	}
	return nil
}

func instanceKind(live bool) string {
	if live {
		return "production"
	}
	return "development"
}

// note prints a warning now and again at the end.
func (r *initRun) note(s string) {
	fmt.Fprintln(r.out, "warning:", s)
	r.notes = append(r.notes, s)
}

// stripeWebhook makes or updates the Stripe endpoint and settles
// STRIPE_WEBHOOK_SECRET.
func (r *initRun) stripeWebhook(ctx context.Context) error {
	whURL := r.cfg.PublicURL + r.o.internalPrefix + stripe.WebhookPath
	q := question{label: "Stripe webhook signing secret", flag: "stripe-webhook-secret", given: r.o.stripeWebhook,
		optional: true, check: func(s string) (string, error) { return s, checkSecret(s, "whsec_") }}
	if onThisMachine(r.public) {
		fmt.Fprintf(r.out, "\nStripe cannot deliver webhooks to %s, which is on this machine, so no endpoint was made. To try them here, run\n"+
			"  stripe listen --forward-to %s\nwhich prints the signing secret to use.\n", r.cfg.PublicURL, whURL)
		return r.stripeSecret(r.secretDefault(q, envStripeWebhook),
			"public_url is on this machine: pass stripe listen's signing secret with -stripe-webhook-secret")
	}
	octx, cancel := r.online(ctx)
	defer cancel()
	we, err := stripe.EnsureWebhookEndpoint(octx, r.stripeConfig())
	if err != nil {
		return fmt.Errorf("the Stripe webhook endpoint (nothing was written): %w", err)
	}
	n := len(stripe.HandledEvents())
	for _, id := range we.Others {
		r.note(fmt.Sprintf("Stripe endpoint %s has the same URL as %s: it delivers the same events, signed with another secret; delete it in the dashboard (Developers → Webhooks)", id, we.ID))
	}
	if we.Created {
		fmt.Fprintf(r.out, "Stripe: made the webhook endpoint %s at %s, subscribed to the %d events tollgate handles; its signing secret goes to %s.\n",
			we.ID, we.URL, n, envStripeWebhook)
		if r.o.stripeWebhook != "" {
			r.note("-stripe-webhook-secret is not used: the endpoint was made now, with a secret of its own")
		}
		r.vars[envStripeWebhook], r.madeEndpoint = we.Secret, we.ID
		return nil
	}
	did := "its events are already the %d tollgate handles"
	if we.Updated {
		did = "its events are now the %d tollgate handles"
	}
	fmt.Fprintf(r.out, "Stripe: the webhook endpoint %s at %s is there already; "+did+".\n", we.ID, we.URL, n)
	if r.o.stripeWebhook == "" && r.env.get(envStripeWebhook) == "" && r.p.interactive {
		fmt.Fprintln(r.out, "Stripe shows an endpoint's signing secret only when it makes it. In the dashboard (Developers → Webhooks → the endpoint)"+
			" roll the secret and paste the new one, or press Enter and put it into tollgate.env later.")
	}
	return r.stripeSecret(r.secretDefault(q, envStripeWebhook),
		"Stripe shows an endpoint's signing secret only when it makes it, and tollgate.env has none: roll the secret in the dashboard "+
			"(Developers → Webhooks → "+we.ID+") and pass it with -stripe-webhook-secret, or delete the endpoint and run init again")
}

// stripeSecret settles STRIPE_WEBHOOK_SECRET from q; scripted, without an
// answer, it fails with missing.
func (r *initRun) stripeSecret(q question, missing string) error {
	if !r.p.interactive && q.given == "" && q.def == "" {
		return fmt.Errorf("%w: %s (nothing was written)", errUsage, missing)
	}
	v, err := r.p.ask(q)
	if err != nil {
		return err
	}
	if v != "" && v == r.env.get(envStripeWebhook) && q.given == "" {
		r.secretsKept = append(r.secretsKept, envStripeWebhook)
	}
	r.vars[envStripeWebhook] = v
	return nil
}

// onThisMachine reports a public URL Stripe cannot reach: localhost or a
// loopback address.
func onThisMachine(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (r *initRun) clerkWebhook(context.Context) error {
	fmt.Fprintf(r.out, "\nClerk webhook (Clerk dashboard → Webhooks → Add Endpoint):\n  URL     %s\n  Events  %s\n",
		r.cfg.PublicURL+r.o.internalPrefix+clerk.WebhookPath, strings.Join(clerk.HandledEvents(), ", "))
	v, err := r.p.ask(r.secretDefault(question{label: "Its signing secret (whsec_…; Enter to add it to tollgate.env later)",
		flag: "clerk-webhook-secret", given: r.o.clerkWebhook, optional: true,
		check: func(s string) (string, error) { return s, checkSecret(s, "whsec_") }}, envClerkWebhook))
	if err != nil {
		return err
	}
	if v != "" && v == r.env.get(envClerkWebhook) && r.o.clerkWebhook == "" {
		r.secretsKept = append(r.secretsKept, envClerkWebhook)
	}
	r.vars[envClerkWebhook] = v
	return nil
}

// configFile renders config.yaml (nil when it is kept) and checks it, with
// tollgate.env's values, with the parser the gateway uses.
func (r *initRun) configFile() ([]byte, error) {
	if !r.writeCfg {
		return nil, nil
	}
	data := renderConfig(r.cfg)
	getenv := func(k string) string {
		if k == envStripeWebhook {
			return "whsec_settled_after_this_check" // the endpoint is made after the check
		}
		return r.vars[k]
	}
	if _, err := config.Parse(r.cfgPath, data, getenv); err != nil {
		return nil, fmt.Errorf("the config init made does not pass the config check, so nothing was written: %w", err)
	}
	return data, nil
}

// write writes tollgate.env and config.yaml (cfgData, unless it is kept),
// and says what comes next.
func (r *initRun) write(cfgData []byte) (err error) {
	defer func() {
		if err != nil && r.madeEndpoint != "" {
			err = fmt.Errorf("%w; the Stripe webhook endpoint %s was made, and its signing secret, which Stripe shows once, is lost: "+
				"roll it in the dashboard (Developers → Webhooks) and run init again with -stripe-webhook-secret", err, r.madeEndpoint)
		}
	}()
	for _, d := range []string{r.o.dir, filepath.Dir(r.envPath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(r.envPath, renderEnvFile(r.vars, r.env), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", r.envPath, err)
	}
	wrote := r.envPath
	if cfgData != nil {
		if err := writeFileAtomic(r.cfgPath, cfgData, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", r.cfgPath, err)
		}
		wrote = r.cfgPath + " and " + r.envPath
	}
	r.summary(wrote)
	return nil
}

// summary says what was written (the names of the secrets, never their
// values) and what is left to do.
func (r *initRun) summary(wrote string) {
	var set, empty []string
	for _, name := range initEnvVars {
		switch {
		case r.vars[name] == "":
			empty = append(empty, name)
		case slices.Contains(r.secretsKept, name):
			set = append(set, name+" (kept)")
		default:
			set = append(set, name)
		}
	}
	fmt.Fprintf(r.out, "\nWrote %s.\ntollgate.env holds %s.\n", wrote, strings.Join(set, ", "))
	if len(empty) > 0 {
		fmt.Fprintf(r.out, "Left empty: %s. Put the value after the = (with no comment after it) when you have it.\n", strings.Join(empty, ", "))
	}
	for _, n := range r.notes {
		fmt.Fprintln(r.out, "warning:", n)
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	var keys []string
	for _, p := range r.cfg.Plans {
		keys = append(keys, p.Key)
	}
	if r.writeCfg {
		fmt.Fprintf(r.out, "\nRoutes: \"/\" is public, and every other path needs one of the plans (%s). config.yaml says how to open up more.\n",
			strings.Join(keys, ", "))
	}
	fmt.Fprintf(r.out, `Still to do in Stripe's dashboard (README, quickstart step 3): the customer portal, and limiting customers to one subscription.

Next:
  1. Check the keys, the prices and the config:
       docker run --rm -v "%[1]s:/etc/tollgate:ro" --env-file "%[2]s" tollgate check -online -config /etc/tollgate/config.yaml
     or, with the binary:  (set -a; . "%[2]s"; tollgate check -online -config "%[3]s")
  2. Run it:
       docker run -d --name tollgate -p 8080:8080 -v "%[1]s:/etc/tollgate:ro" -v tollgate-data:/data --env-file "%[2]s" tollgate
`, abs(r.o.dir), abs(r.envPath), abs(r.cfgPath))
}

// checkPublicURL accepts an origin, http(s)://host[:port], and returns it
// without a trailing slash.
func checkPublicURL(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return "", fmt.Errorf("%q is not an absolute http(s) URL such as https://app.example.com", s)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: want an origin only, such as https://app.example.com, without a path", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

func checkHTTPURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// checkSecret refuses what cannot be a key or secret, or cannot stand in
// an env file: spaces, control characters, quotes or #.
func checkSecret(s, prefix string) error {
	if prefix != "" && !strings.HasPrefix(s, prefix) {
		return fmt.Errorf("want a value starting with %s", prefix)
	}
	if strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '#' || c == '"' || c == '\'' }) {
		return errors.New("has a space, quote, # or control character; paste the value alone")
	}
	return nil
}
