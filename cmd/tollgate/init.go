package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// initOptions are init's flags: one per question, and how to ask.
type initOptions struct {
	dir, envFile, publicURL             string
	upstream                            string
	listen, storePath, adminListen      string
	clerkPK, clerkSK, clerkWebhook      string
	stripeSK, stripeWebhook             string
	clerkAPIURL, stripeAPIURL           string
	clerkFrontendAPIURL, clerkSignInURL string
	plans                               planFlags
	yes, force                          bool
	onlineTimeout                       time.Duration
	internalPrefix                      string // the config's, under which the webhooks are served
}

// planFlags collects -plan NAME=price_…[,price_…].
type planFlags []string

func (p *planFlags) String() string     { return strings.Join(*p, " ") }
func (p *planFlags) Set(v string) error { *p = append(*p, v); return nil }

func runInit(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	r, err := newInitRun(ctx, args, stdin, stdout, stderr)
	if err != nil {
		return err
	}
	defer r.p.close()
	return r.run(ctx)
}

// newInitRun parses init's flags into a run, not yet started.
func newInitRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (*initRun, error) {
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
	fs.StringVar(&o.listen, "listen", "", "the address tollgate listens on, written to listen (default "+defaultInitListen+
		", as in the container; the binary on this machine: 127.0.0.1:8080)")
	fs.StringVar(&o.storePath, "store-path", "", "the store's file, written to store.path (default "+defaultInitStorePath+
		", the container's volume; the binary: a writable path such as ./tollgate.db, relative to where tollgate runs)")
	fs.StringVar(&o.adminListen, "admin-listen", "", "the admin listener, written to admin.listen (default "+defaultInitAdminListen+
		"; keep it on loopback or a private network)")
	fs.StringVar(&o.clerkPK, "clerk-publishable-key", "", "Clerk's publishable key (pk_live_… or pk_test_…)")
	fs.StringVar(&o.clerkSK, "clerk-secret-key", "", "Clerk's secret key (sk_live_… or sk_test_…)")
	fs.StringVar(&o.clerkWebhook, "clerk-webhook-secret", "", "the Clerk webhook endpoint's signing secret (whsec_…); may be added to tollgate.env later")
	fs.StringVar(&o.stripeSK, "stripe-secret-key", "", "Stripe's secret key (sk_…), or a restricted key (rk_…) that may also write webhook endpoints")
	fs.StringVar(&o.stripeWebhook, "stripe-webhook-secret", "", "the signing secret of the Stripe webhook endpoint when init cannot get it: the endpoint "+
		"already exists (Stripe shows a secret only when it makes the endpoint), or public_url is on this machine, where Stripe's own API "+
		"cannot deliver (stripe listen's secret)")
	fs.Var(&o.plans, "plan", "a plan, `NAME=price_…[,price_…]` (repeatable); each price an active recurring price of the account")
	fs.BoolVar(&o.yes, "yes", false, "ask nothing: every answer comes from a flag or the files already in -dir")
	fs.BoolVar(&o.force, "force", false, "overwrite config.yaml and tollgate.env in -dir without asking")
	fs.StringVar(&o.clerkAPIURL, "clerk-api-url", "", "Clerk's Backend API base with /v1, for a stand-in (written to clerk.api_url; default Clerk's own)")
	fs.StringVar(&o.clerkFrontendAPIURL, "clerk-frontend-api-url", "", "Clerk's Frontend API, for a stand-in (written to clerk.frontend_api_url "+
		"when given; default the host in the publishable key)")
	fs.StringVar(&o.clerkSignInURL, "clerk-sign-in-url", "", "Clerk's sign-in page, for a stand-in (written to clerk.sign_in_url when given; "+
		"default the Account Portal's)")
	fs.StringVar(&o.stripeAPIURL, "stripe-api-url", "", "Stripe's API base, for a stand-in (written to stripe.api_url; default Stripe's own). "+
		"A stand-in can deliver webhooks to this machine, so the endpoint is made even for a public_url on it")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	r := &initRun{o: o, p: newPrompter(ctx, stdin, stdout, !o.yes), out: stdout, writeFile: writeFileAtomic,
		cfgPath: filepath.Join(o.dir, "config.yaml"), envPath: cmp.Or(o.envFile, filepath.Join(o.dir, "tollgate.env"))}
	// A stand-in for Stripe (-stripe-api-url, or the config's api_url)
	// delivers to whatever URL it is given, this machine's included.
	r.deliversHere = func() bool { return r.cfg.StripeAPIURL != "" }
	return r, nil
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
	madeEndpoint     string            // the Stripe endpoint this run made, if it did
	notes            []string          // said again at the end
	// writeFile writes a file (writeFileAtomic; tests make it fail).
	writeFile func(path string, data []byte, perm fs.FileMode) error
	// deliversHere reports whether Stripe, as configured, can deliver
	// webhooks to a public_url on this machine (tests pretend the sandbox
	// is Stripe's own).
	deliversHere func() bool
}

func (r *initRun) run(ctx context.Context) error {
	// Before anything is asked or made: where the files go must take them.
	if err := checkWritable("dir", r.cfgPath); err != nil {
		return err
	}
	if err := checkWritable("env-file", r.envPath); err != nil {
		return err
	}
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
	// Made here unless tollgate.env has them: random, and kept on a second
	// run (a new session secret would sign everyone out).
	for name, minLen := range map[string]int{envSessionSecret: 32, envAdminToken: 1} {
		r.vars[name] = r.env.get(name)
		if len(r.vars[name]) < minLen {
			b := make([]byte, 32)
			_, _ = rand.Read(b) // crypto/rand.Read never fails
			r.vars[name] = hex.EncodeToString(b)
		}
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
	return r.write(ctx, cfgData)
}

// decideFiles settles which files may be written: a file not there yet,
// or one the user agreed to overwrite (-force, or yes to the question).
// tollgate.env must be writable, as a new Stripe endpoint's secret can be
// kept nowhere else; config.yaml may be kept as it is.
func (r *initRun) decideFiles() error {
	if sameFile(r.cfgPath, r.envPath) {
		// One would overwrite the other, and with it the secrets (a new
		// webhook endpoint's among them, which Stripe shows only once).
		return fmt.Errorf("%w: -env-file names the config file %s; the two must be different files (nothing was written, and nothing asked of Clerk or Stripe)",
			errUsage, r.cfgPath)
	}
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
	for _, f := range []struct {
		flag, given, prior, def string
		into                    *string
	}{
		{"clerk-api-url", r.o.clerkAPIURL, r.prior.ClerkAPIURL, proxy.DefaultClerkAPIURL, &r.cfg.ClerkAPIURL},
		{"clerk-frontend-api-url", r.o.clerkFrontendAPIURL, r.prior.ClerkFrontendAPIURL, "", &r.cfg.ClerkFrontendAPIURL},
		{"clerk-sign-in-url", r.o.clerkSignInURL, r.prior.SignInURL, "", &r.cfg.SignInURL},
		{"stripe-api-url", r.o.stripeAPIURL, r.prior.StripeAPIURL, proxy.DefaultStripeAPIURL, &r.cfg.StripeAPIURL},
	} {
		if *f.into, err = apiURLFlag(f.flag, f.given, f.prior, f.def); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		flag, given, prior, def string
		into                    *string
	}{
		{"listen", r.o.listen, r.prior.Listen, defaultInitListen, &r.cfg.Listen},
		{"admin-listen", r.o.adminListen, r.prior.AdminListen, defaultInitAdminListen, &r.cfg.AdminListen},
	} {
		*f.into = cmp.Or(f.given, f.prior, f.def)
		if _, _, err := net.SplitHostPort(*f.into); err != nil {
			return fmt.Errorf("%w: -%s %q: want host:port or :port, e.g. 127.0.0.1:8080", errUsage, f.flag, *f.into)
		}
	}
	r.cfg.StorePath = cmp.Or(r.o.storePath, r.prior.StorePath, defaultInitStorePath)
	return nil
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
	sk, err := r.p.ask(r.secretDefault(question{label: "Clerk secret key", flag: "clerk-secret-key", given: r.o.clerkSK, secret: true,
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
	cc, err := clerk.New(clerk.Config{PublishableKey: pk, SecretKey: sk, APIURL: cmp.Or(r.cfg.ClerkAPIURL, proxy.DefaultClerkAPIURL),
		FrontendAPIURL: r.cfg.ClerkFrontendAPIURL, SignInURL: r.cfg.SignInURL, PublicURL: r.public})
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
		flag: "stripe-secret-key", given: r.o.stripeSK, secret: true,
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

func (r *initRun) clerkWebhook(context.Context) error {
	fmt.Fprintf(r.out, "\nClerk webhook (Clerk dashboard → Webhooks → Add Endpoint):\n  URL     %s\n  Events  %s\n",
		r.cfg.PublicURL+r.o.internalPrefix+clerk.WebhookPath, strings.Join(clerk.HandledEvents(), ", "))
	v, err := r.p.ask(r.secretDefault(question{label: "Its signing secret (whsec_…; Enter to add it to tollgate.env later)",
		flag: "clerk-webhook-secret", given: r.o.clerkWebhook, optional: true, secret: true,
		check: func(s string) (string, error) { return s, checkSecret(s, "whsec_") }}, envClerkWebhook))
	if err != nil {
		return err
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

// write writes tollgate.env, then config.yaml (cfgData, unless it is
// kept), and says what comes next. Until tollgate.env is written, the
// secret of an endpoint this run made is nowhere else, so a failure takes
// the endpoint back.
func (r *initRun) write(ctx context.Context, cfgData []byte) error {
	err := func() error {
		for _, d := range []string{r.o.dir, filepath.Dir(r.envPath)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := r.writeFile(r.envPath, renderEnvFile(r.vars, r.env), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", r.envPath, err)
		}
		return nil
	}()
	if err != nil {
		return r.takeBackEndpoint(ctx, err)
	}
	wrote := r.envPath
	if cfgData != nil {
		if err := r.writeFile(r.cfgPath, cfgData, 0o644); err != nil {
			err = fmt.Errorf("write %s: %w; %s was written", r.cfgPath, err, r.envPath)
			if r.madeEndpoint != "" {
				err = fmt.Errorf("%w, with the signing secret of the Stripe webhook endpoint %s this run made: run init again once %s can be "+
					"written, and it finds the endpoint and keeps the secret", err, r.madeEndpoint, r.cfgPath)
			}
			return err
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
		case r.vars[name] == r.env.get(name):
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
	fmt.Fprintln(r.out, "Still to do in Stripe's dashboard (README, quickstart step 3): the customer portal, and limiting customers to one subscription.")
	dir, env, cfg := abs(r.o.dir), abs(r.envPath), abs(r.cfgPath)
	binary := fmt.Sprintf("tollgate check -online -config %q -env-file %q\n       tollgate serve -config %[1]q -env-file %[2]q", cfg, env)
	if r.cfg.Listen != defaultInitListen || r.cfg.StorePath != defaultInitStorePath {
		fmt.Fprintf(r.out, "\nNext, with the binary (listen %s, store.path %s):\n       %s\n", r.cfg.Listen, r.cfg.StorePath, binary)
	} else {
		fmt.Fprintf(r.out, `
Next, in the container (listen %[4]s and store.path %[5]s are the image's):
       docker run --rm -v "%[1]s:/etc/tollgate:ro" --env-file "%[2]s" tollgate check -online -config /etc/tollgate/config.yaml
       docker run -d --name tollgate -p 8080:8080 -v "%[1]s:/etc/tollgate:ro" -v tollgate-data:/data --env-file "%[2]s" tollgate
     or with the binary, once store.path is a file it may write (init -store-path ./tollgate.db -listen 127.0.0.1:8080):
       %[3]s
`, dir, env, binary, r.cfg.Listen, r.cfg.StorePath)
	}
	if r.writeCfg || r.prior.AdminListen != "" {
		fmt.Fprintf(r.out, "Then tollgate users (with the same -config and -env-file, or through docker exec) asks the admin listener on %s.\n",
			r.cfg.AdminListen)
	}
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

// sameFile reports whether two paths name one file: the same path once
// cleaned, or, when both exist, one file under two names (a link).
func sameFile(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(ia, ib)
}
