package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy"
)

const (
	testPublishableKey = "pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk" // example.accounts.dev$
	testSessionSecret  = "0123456789abcdef0123456789abcdef-session"
	// testJWTKey is an RSA public key as Clerk's dashboard shows it.
	testJWTKey = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAy92vEUcS3zbvia/nuECV
NB13XenAaDABsR8Iyj7KTrieF4VY4eCTS5M/OR+f0hXv3h7M0YCza267vlW7Dsam
4vZJ3sYY9uTJhXdllKjN2yntPm8fY4tW1uiuhcX3RcefshlwoicfC6iNlH3Iv+hq
aqXOzBHmNF4RAoNWJNZgv/eNDCIk9IAkVl9vChoKKzLl9QoTnwujtwlH7FhpCzL0
BdtOhwlO6SQAQxPxO8I5COfyXzKSm6qAxuX8KI8BfDsCtXFSVGMd5vqomJ4J8VY/
Hloyw9y4i+LQI7BCBA2ewRmoH2WELrfiPn2vvIDKgdf4bL12eWaXUklbtIHri041
yQIDAQAB
-----END PUBLIC KEY-----
`
)

// testEnv is the environment the testdata configs and the example are parsed
// with; variables named UNSET_… are, as the name says, unset.
func testEnv(name string) string {
	return map[string]string{
		"CLERK_PUBLISHABLE_KEY":   testPublishableKey,
		"CLERK_SECRET_KEY":        "sk_test_clerk",
		"CLERK_JWT_KEY":           testJWTKey,
		"CLERK_WEBHOOK_SECRET":    "whsec_clerk",
		"TOLLGATE_SESSION_SECRET": testSessionSecret,
		"STRIPE_SECRET_KEY":       "sk_test_stripe",
		"STRIPE_WEBHOOK_SECRET":   "whsec_stripe",
		"TOLLGATE_ADMIN_TOKEN":    "admin-token-0123456789abcdef",
	}[name]
}

// errorLines splits a joined error into its lines.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// matchExpectations pairs each got line with the expectation that is its
// prefix, so that cmp.Diff shows what is missing and what is extra.
func matchExpectations(got, want []string) []string {
	out := make([]string, 0, len(got))
	used := make([]bool, len(want))
	for _, g := range got {
		m := g
		for i, w := range want {
			if !used[i] && strings.HasPrefix(g, w) {
				used[i], m = true, w
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// TestParseConfig_Testdata parses every testdata/config/*.yaml. Trailing
// "# want: LINE: KEY: MESSAGE" comments give the expected errors (each must
// be the prefix of exactly one error line, after "FILE:"), "# warn: …" the
// expected warnings; a file without "# want:" must parse.
func TestParseConfig_Testdata(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata configs: %v", err)
	}
	expect := regexp.MustCompile(`(?m)^# (want|warn): (.*)$`)
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wantErrs, wantWarns []string
			for _, m := range expect.FindAllStringSubmatch(string(data), -1) {
				line := name + ":" + m[2]
				if m[1] == "want" {
					wantErrs = append(wantErrs, line)
				} else {
					wantWarns = append(wantWarns, line)
				}
			}
			cfg, err := Parse(name, data, testEnv)
			got := errorLines(err)
			if diff := cmp.Diff(matchExpectations(got, wantErrs), wantErrs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("errors (-got +want):\n%s\nfull errors:\n%s", diff, strings.Join(got, "\n"))
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(matchExpectations(cfg.Warnings, wantWarns), wantWarns, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("warnings (-got +want):\n%s\nfull warnings:\n%s", diff, strings.Join(cfg.Warnings, "\n"))
			}
		})
	}
}

// configCmp compares Configs: URLs by their string, prefixes by value, rules
// without their compiled pattern.
func configCmp() cmp.Options {
	return cmp.Options{
		cmp.Comparer(func(a, b *url.URL) bool { return a.String() == b.String() }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmpopts.IgnoreUnexported(proxy.Rule{}, proxy.RuleSet{}),
		cmpopts.EquateEmpty(),
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseConfig_DefaultsFillWhatIsLeftOut(t *testing.T) {
	const doc = `
public_url: https://App.Example.com/
upstream: http://app:3000
clerk: { publishable_key: "${CLERK_PUBLISHABLE_KEY}", secret_key: "${CLERK_SECRET_KEY}" }
session: { secret: "${TOLLGATE_SESSION_SECRET}" }
stripe: { secret_key: sk_test_1, webhook_secret: whsec_1 }
plans:
  pro: { prices: [price_1], routes: ["*"] }
`
	cfg, err := Parse("config.yaml", []byte(doc), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &proxy.Config{
		Listen:         ":8080",
		PublicURL:      mustURL(t, "https://app.example.com"),
		Upstream:       mustURL(t, "http://app:3000"),
		InternalPrefix: "/.tollgate",
		DefaultAccess:  proxy.AccessPaid,
		Clerk: proxy.ClerkConfig{
			PublishableKey:    testPublishableKey,
			SecretKey:         "sk_test_clerk",
			AuthorizedParties: []string{"https://app.example.com"},
			APIURL:            "https://api.clerk.com/v1",
		},
		Session: proxy.SessionConfig{Secret: testSessionSecret, TTL: 12 * time.Hour, Refresh: 60 * time.Second},
		Stripe: proxy.StripeConfig{SecretKey: "sk_test_1", WebhookSecrets: []string{"whsec_1"}, APIURL: "https://api.stripe.com",
			ReconcileInterval: DefaultReconcileInterval, PausedCollection: proxy.PausedCollectionKeep},
		Plans:  []proxy.Plan{{Key: "pro", Name: "pro", Prices: []string{"price_1"}, Routes: []string{"*"}, Scope: proxy.SubjectUser}},
		Routes: &proxy.RuleSet{Default: proxy.AccessPaid},
		Store:  proxy.StoreConfig{Driver: proxy.StoreBolt, Path: "tollgate.db", CacheSize: 10000},
		Pages:  proxy.PagesConfig{ProductName: "tollgate", AccentColor: "#4f46e5"},

		Timeouts:   proxy.TimeoutsConfig{BodyIdle: 60 * time.Second, TunnelMaxLifetime: time.Hour},
		APIKeys:    proxy.APIKeysConfig{MaxFailures: 20},
		QuotaFlush: time.Second, MeterWindow: time.Hour,
	}
	if diff := cmp.Diff(cfg, want, configCmp()); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}
}

func TestParseConfig_PublicOnlyAppNeedsNoClerkOrStripe(t *testing.T) {
	cfg, err := Parse("config.yaml", []byte("public_url: https://a.example\nupstream: http://b:1\ndefault_access: public\n"), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultAccess != proxy.AccessPublic || cfg.Clerk.PublishableKey != "" || len(cfg.Plans) != 0 {
		t.Errorf("got %+v", cfg)
	}
}

func TestExampleConfig_ParsesWithEveryKeySet(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("config.example.yaml", data, testEnv)
	if err != nil {
		t.Fatalf("the example config does not parse:\n%v", err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("the example config warns:\n%s", strings.Join(cfg.Warnings, "\n"))
	}
	rules := []*proxy.Rule{
		{Index: 0, Path: "/", Access: proxy.AccessPublic},
		{Index: 1, Path: "/assets/*", Access: proxy.AccessPublic},
		{Index: 2, Path: "/routes/{route}/*", Access: proxy.AccessPaid},
		{Index: 3, Path: "/api/v1/*", ID: "258AVO", Methods: []string{"GET", "POST"}, Access: proxy.AccessPaid},
		{Index: 4, Path: "/settings/*", Access: proxy.AccessSignedIn},
		{Index: 5, Path: "/admin/*", Access: proxy.AccessDeny},
		{Index: 6, Host: "www.example.com", Path: "/blog/*", Access: proxy.AccessPublic},
	}
	want := &proxy.Config{
		Listen:         ":8080",
		PublicURL:      mustURL(t, "https://app.example.com"),
		Upstream:       mustURL(t, "http://app:3000"),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.10/32")},
		ExtraOrigins:   []*url.URL{mustURL(t, "https://www.example.com")},
		Hosts:          []string{"app.example.com", "api.example.com", "www.example.com"},
		InternalPrefix: "/.tollgate",
		DefaultAccess:  proxy.AccessPaid,
		Clerk: proxy.ClerkConfig{
			PublishableKey:    testPublishableKey,
			SecretKey:         "sk_test_clerk",
			JWTKey:            testJWTKey,
			AuthorizedParties: []string{"https://app.example.com", "https://www.example.com"},
			WebhookSecrets:    []string{"whsec_clerk"},
			APIURL:            "https://api.clerk.com/v1",
		},
		Session: proxy.SessionConfig{Secret: testSessionSecret, TTL: 12 * time.Hour, Refresh: time.Minute},
		Stripe: proxy.StripeConfig{SecretKey: "sk_test_stripe", WebhookSecrets: []string{"whsec_stripe"}, APIURL: "https://api.stripe.com",
			ReconcileInterval: DefaultReconcileInterval, PausedCollection: proxy.PausedCollectionKeep,
			AllowPromotionCodes: true, AutomaticTax: true},
		Plans: []proxy.Plan{
			{Key: "pro", Name: "Pro", Prices: []string{"price_123", "price_124"}, Routes: []string{"415VNA", "258AVO"},
				TrialDays: 7, TrialFeePrice: "price_fee", Scope: proxy.SubjectUser,
				Description: "For one person who needs the reports.", Features: []string{"Every report", "Export to CSV", "Email support"},
				Highlight: "Most popular", Limits: []proxy.LimitEntry{
					{Route: "258AVO", Limit: proxy.Limit{Rate: 10, Per: time.Second, Burst: 20, Quota: 10000, Period: proxy.PeriodMonth}},
					{Route: "*", Limit: proxy.Limit{Rate: 50, Per: time.Second, Burst: 50}}}},
			{Key: "team", Name: "team", Prices: []string{"price_456"}, Routes: []string{"*"}, Scope: proxy.SubjectOrg},
			{Key: "api", Name: "api", Prices: []string{"price_base"}, Routes: []string{"258AVO"}, Scope: proxy.SubjectUser,
				Meter: &proxy.PlanMeter{EventName: "api_requests", Price: "price_per_request"}},
		},
		Routes: &proxy.RuleSet{Default: proxy.AccessPaid, Rules: rules},
		Store:  proxy.StoreConfig{Driver: proxy.StoreBolt, Path: "/data/tollgate.db", CacheSize: 10000},
		Admin:  proxy.AdminConfig{Listen: "127.0.0.1:9090", Token: "admin-token-0123456789abcdef", Users: []string{"user_2abc"}},
		Pages: proxy.PagesConfig{ProductName: "Example App", LogoURL: "https://app.example.com/logo.svg",
			AccentColor: "#4f46e5", SupportURL: "mailto:support@example.com"},

		Timeouts: proxy.TimeoutsConfig{BodyIdle: 60 * time.Second, TunnelMaxLifetime: time.Hour},
		APIKeys:  proxy.APIKeysConfig{Enabled: true, MaxFailures: 20},
		Free: &proxy.Plan{Key: "free", Name: "Free", Routes: []string{"258AVO"}, Scope: proxy.SubjectUser,
			Limits: []proxy.LimitEntry{{Route: "258AVO", Limit: proxy.Limit{Quota: 100, Period: proxy.PeriodDay}}}},
		CostHeader: "X-Tollgate-Cost",
		QuotaFlush: time.Second, MeterWindow: time.Hour,
	}
	if diff := cmp.Diff(cfg, want, configCmp(), cmpopts.IgnoreFields(proxy.Rule{}, "Line")); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}
}

// The example shows optional keys commented out ("# key: value"); they must
// stay valid too.
func TestExampleConfig_CommentedOutKeysAreValid(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	commented := regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+: .*)$`)
	if len(commented.FindAll(data, -1)) == 0 {
		t.Fatal("no commented-out keys found; update this test")
	}
	data = commented.ReplaceAll(data, []byte("$1$2"))
	cfg, err := Parse("config.example.yaml", data, testEnv)
	if err != nil {
		t.Fatalf("with its commented-out keys, the example does not parse:\n%v", err)
	}
	if cfg.Pages.TemplatesDir == "" || cfg.Clerk.SignInURL == "" {
		t.Errorf("commented-out keys were not read: %+v %+v", cfg.Pages, cfg.Clerk)
	}
}

// Every key the parser accepts is documented in the example.
func TestExampleConfig_DocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+: .*)$`).ReplaceAll(data, []byte("$1$2"))
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(n *yaml.Node, configSection string)
	walk = func(n *yaml.Node, configSection string) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], configSection)
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if configSection == "routes" {
					walk(c, "routes[]")
				}
			}
		case yaml.MappingNode:
			for i := 0; i < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				if configSection == "plans" {
					walk(v, "plans.*")
					continue
				}
				seen[joinConfigKey(configSection, k)] = true
				walk(v, joinConfigKey(configSection, k))
			}
		}
	}
	walk(&root, "")
	var missing []string
	for _, configSection := range []string{"", "clerk", "session", "stripe", "plans.*", "routes[]", "store", "admin", "pages"} {
		for _, k := range configKeys(configSection) {
			if !seen[joinConfigKey(configSection, k)] {
				missing = append(missing, joinConfigKey(configSection, k))
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("config.example.yaml does not show: %s", strings.Join(missing, ", "))
	}
}

func TestParseConfig_EnvExpansion(t *testing.T) {
	base := "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\n"
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		get  func(*proxy.Config) any
		want any
	}{
		{
			name: "multi-line PEM in a variable survives",
			doc:  `clerk: { jwt_key: "${KEY}" }`,
			env:  map[string]string{"KEY": testJWTKey},
			get:  func(c *proxy.Config) any { return c.Clerk.JWTKey },
			want: testJWTKey,
		},
		{
			name: "literal \\n escapes in jwt_key become newlines",
			doc:  `clerk: { jwt_key: "${KEY}" }`,
			env:  map[string]string{"KEY": strings.ReplaceAll(strings.TrimSpace(testJWTKey), "\n", `\n`)},
			get:  func(c *proxy.Config) any { return c.Clerk.JWTKey },
			want: testJWTKey,
		},
		{
			name: "a block scalar PEM in the file works too",
			doc:  "clerk:\n  jwt_key: |\n    " + strings.ReplaceAll(strings.TrimSpace(testJWTKey), "\n", "\n    ") + "\n",
			get:  func(c *proxy.Config) any { return c.Clerk.JWTKey },
			want: testJWTKey,
		},
		{
			name: "an unset variable switches an optional feature off",
			doc:  `clerk: { jwt_key: "${NOPE}", webhook_secret: "${NOPE}" }`,
			get:  func(c *proxy.Config) any { return []any{c.Clerk.JWTKey, len(c.Clerk.WebhookSecrets)} },
			want: []any{"", 0},
		},
		{
			name: "a dollar not followed by a brace is literal",
			doc:  `admin: { token: "pa$$word$HOME-and-$-0123456789" }`,
			env:  map[string]string{"HOME": "/root"},
			get:  func(c *proxy.Config) any { return c.Admin.Token },
			want: "pa$$word$HOME-and-$-0123456789",
		},
		{
			name: "several variables in one value, and text around them",
			doc:  `admin: { token: "x-${A}-${B}-${A}-y" }`,
			env:  map[string]string{"A": "aaaaaaaa", "B": "bbbbbbbb"},
			get:  func(c *proxy.Config) any { return c.Admin.Token },
			want: "x-aaaaaaaa-bbbbbbbb-aaaaaaaa-y",
		},
		{
			name: "an expanded value is not expanded again",
			doc:  `admin: { token: "${A}" }`,
			env:  map[string]string{"A": "${B}-0123456789abcdef", "B": "no"},
			get:  func(c *proxy.Config) any { return c.Admin.Token },
			want: "${B}-0123456789abcdef",
		},
		{
			name: "typed keys take variables too",
			doc:  "store: { cache_size: \"${N}\" }\nsession: { ttl: \"${TTL}\" }",
			env:  map[string]string{"N": "42", "TTL": "3h"},
			get:  func(c *proxy.Config) any { return []any{c.Store.CacheSize, c.Session.TTL} },
			want: []any{42, 3 * time.Hour},
		},
		{
			name: "a trailing newline from a secret file is dropped",
			doc:  `session: { secret: "${S}" }`,
			env:  map[string]string{"S": testSessionSecret + "\n"},
			get:  func(c *proxy.Config) any { return c.Session.Secret },
			want: testSessionSecret,
		},
		{
			name: "variables work in lists, and unset items are dropped",
			doc:  `trusted_proxies: ["${P1}", "${P2}"]`,
			env:  map[string]string{"P1": "10.1.2.3"},
			get:  func(c *proxy.Config) any { return c.TrustedProxies },
			want: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(base+tt.doc), func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.get(cfg), tt.want, configCmp()); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseConfig_KeysAreNeverExpanded(t *testing.T) {
	doc := "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\n\"${KEY}\": x\n"
	_, err := Parse("config.yaml", []byte(doc), func(string) string { return "listen" })
	want := "config.yaml:4: ${KEY}: unknown key; want one of "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %q…", err, want)
	}
}

func TestParseConfig_RequiredValueFromUnsetVariableNamesIt(t *testing.T) {
	const doc = `public_url: https://app.example.com
upstream: http://app:3000
default_access: signed_in
session: { secret: "${TOLLGATE_SESSION_SECRET}" }
clerk:
  secret_key: sk_test_x
  publishable_key: "${CLERK_PUBLISHABLE_KEY}"
`
	_, err := Parse("config.yaml", []byte(doc), func(k string) string {
		if k == "TOLLGATE_SESSION_SECRET" {
			return testSessionSecret
		}
		return ""
	})
	want := []string{"config.yaml:7: clerk.publishable_key: empty because ${CLERK_PUBLISHABLE_KEY} is unset or empty; " +
		"it is required because default_access is signed_in"}
	if diff := cmp.Diff(errorLines(err), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestParseConfig_WebhookSecretIsAStringOrAList(t *testing.T) {
	base := "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\n"
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"one string", `stripe: { webhook_secret: whsec_a }`, []string{"whsec_a"}},
		{"a list", `stripe: { webhook_secret: [whsec_a, whsec_b] }`, []string{"whsec_a", "whsec_b"}},
		{"a block list", "stripe:\n  webhook_secret:\n    - whsec_a\n    - whsec_b\n", []string{"whsec_a", "whsec_b"}},
		{"unset entries are dropped", `stripe: { webhook_secret: ["${UNSET}", whsec_b] }`, []string{"whsec_b"}},
		{"absent", `stripe: {}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, configSection := range []string{"stripe", "clerk"} {
				doc := strings.Replace(tt.doc, "stripe", configSection, 1)
				cfg, err := Parse("config.yaml", []byte(base+doc), testEnv)
				if err != nil {
					t.Fatal(err)
				}
				got := cfg.Stripe.WebhookSecrets
				if configSection == "clerk" {
					got = cfg.Clerk.WebhookSecrets
				}
				if diff := cmp.Diff(got, tt.want, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s (-got +want):\n%s", configSection, diff)
				}
			}
		})
	}
	_, err := Parse("config.yaml", []byte(base+"stripe: { webhook_secret: {a: b} }"), testEnv)
	want := []string{"config.yaml:4: stripe.webhook_secret: is a mapping; want a string or a list of strings"}
	if diff := cmp.Diff(errorLines(err), want); diff != "" {
		t.Errorf("mapping (-got +want):\n%s", diff)
	}
}

// TestParseConfig_CommonMistakes covers values of the right shape for YAML
// but the wrong kind for their key: what gets copied from the wrong place.
func TestParseConfig_CommonMistakes(t *testing.T) {
	const base = "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\n"
	const (
		prod        = `is a product ID; want a price ID (price_…), shown in the Stripe dashboard under Product catalogue → the product → Pricing`
		stripeWH    = `is not a Stripe webhook signing secret; want whsec_… from the Stripe dashboard (Webhooks → the endpoint → Signing secret)`
		clerkWH     = `is not a Clerk webhook signing secret; want whsec_… from the Clerk dashboard (Webhooks → the endpoint → Signing Secret)`
		fromEnvFile = ` holds an inline comment (" #…"); docker's --env-file keeps everything after "=", comments too: remove the inline comment from the env file`
		quoted      = `holds an inline comment (" #…") inside the quotes; remove it, or move it after the closing quote`
	)
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want []string
	}{
		{
			name: "a product ID among the prices",
			doc:  "plans:\n  pro: { prices: [price_a, prod_Q1x2], routes: [\"*\"] }\n",
			want: []string{`config.yaml:5: plans.pro.prices[1]: "prod_Q1x2" ` + prod},
		},
		{
			name: "a product ID as the only price is not also missing",
			doc:  "plans:\n  pro:\n    prices: [prod_Q1x2]\n    routes: [\"*\"]\n",
			want: []string{`config.yaml:6: plans.pro.prices[0]: "prod_Q1x2" ` + prod},
		},
		{
			name: "a product ID from a variable",
			doc:  "plans:\n  pro:\n    prices: [\"${PRICE}\"]\n    routes: [\"*\"]\n",
			env:  map[string]string{"PRICE": "prod_Q1x2"},
			want: []string{`config.yaml:6: plans.pro.prices[0]: "prod_Q1x2" ` + prod},
		},
		{
			name: "a product ID as the trial fee",
			doc:  "plans:\n  pro: { prices: [price_a], routes: [\"*\"], trial_days: 7, trial_fee_price: prod_fee }\n",
			want: []string{`config.yaml:5: plans.pro.trial_fee_price: "prod_fee" ` + prod},
		},
		{
			name: "Stripe's secret key as its webhook secret",
			doc:  "stripe:\n  webhook_secret: sk_live_abc\n",
			want: []string{`config.yaml:5: stripe.webhook_secret: ` + stripeWH},
		},
		{
			name: "one of a list of webhook secrets",
			doc:  "stripe:\n  webhook_secret: [whsec_new, \"${OLD}\"]\n",
			env:  map[string]string{"OLD": "we_1Nabc"},
			want: []string{`config.yaml:5: stripe.webhook_secret[1]: ` + stripeWH},
		},
		{
			name: "a Clerk webhook secret without whsec_",
			doc:  "clerk:\n  webhook_secret: c2VjcmV0\n",
			want: []string{`config.yaml:5: clerk.webhook_secret: ` + clerkWH},
		},
		{
			name: "an inline comment from an env file",
			doc:  "stripe:\n  secret_key: \"${STRIPE_SECRET_KEY}\"\n",
			env:  map[string]string{"STRIPE_SECRET_KEY": "sk_live_x # prod"},
			want: []string{`config.yaml:5: stripe.secret_key: the value of ${STRIPE_SECRET_KEY}` + fromEnvFile},
		},
		{
			name: "an inline comment after a tab, in a URL with text around the variable",
			doc:  "clerk: { api_url: \"http://${API_HOST}:3000\" }\n",
			env:  map[string]string{"API_HOST": "clerk-mock\t# the compose service"},
			want: []string{`config.yaml:4: clerk.api_url: the value of ${API_HOST}` + fromEnvFile},
		},
		{
			name: "an inline comment in a list of IDs is not also an empty list",
			doc:  "plans:\n  pro:\n    prices: [\"${PRICE}\"]\n    routes: [\"*\"]\n",
			env:  map[string]string{"PRICE": "price_a # monthly"},
			want: []string{`config.yaml:6: plans.pro.prices[0]: the value of ${PRICE}` + fromEnvFile},
		},
		{
			name: "an inline comment in a webhook secret is not also a missing one",
			doc: "routes: [{path: /p/*, access: paid}]\nclerk: { publishable_key: \"${CLERK_PUBLISHABLE_KEY}\", secret_key: sk_test_x }\n" +
				"session: { secret: \"${TOLLGATE_SESSION_SECRET}\" }\nstripe: { secret_key: sk_test_x, webhook_secret: \"${STRIPE_WEBHOOK_SECRET}\" }\n" +
				"plans: { pro: { prices: [price_a], routes: [\"*\"] } }\n",
			env: map[string]string{"CLERK_PUBLISHABLE_KEY": testPublishableKey, "TOLLGATE_SESSION_SECRET": testSessionSecret,
				"STRIPE_WEBHOOK_SECRET": "whsec_x # test mode"},
			want: []string{`config.yaml:7: stripe.webhook_secret: the value of ${STRIPE_WEBHOOK_SECRET}` + fromEnvFile},
		},
		{
			name: "an inline comment inside quotes in the file",
			doc:  "admin: { token: \"0123456789abcdef # rotate me\" }\n",
			want: []string{`config.yaml:4: admin.token: ` + quoted},
		},
		{
			name: "a route path",
			doc:  "routes:\n  - { path: \"${P}\", access: public }\n",
			env:  map[string]string{"P": "/docs/* # the manual"},
			want: []string{`config.yaml:5: routes[0].path: the value of ${P}` + fromEnvFile},
		},
		{
			name: "free text may hold \" #\"",
			doc:  "pages: { product_name: \"${NAME}\" }\nstore: { path: \"/data/db #1\" }\nplans:\n  pro: { name: \"Pro #1\", prices: [price_a], routes: [\"*\"] }\n",
			env:  map[string]string{"NAME": "Acme #1"},
		},
		{
			name: "a # without a space before it is not a comment",
			doc:  "pages: { accent_color: \"${C}\" }\n",
			env:  map[string]string{"C": "#4f46e5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("config.yaml", []byte(base+tt.doc), func(k string) string { return tt.env[k] })
			if diff := cmp.Diff(errorLines(err), tt.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
			for _, v := range tt.env {
				// The value may be a secret: the error names its variable only.
				if err != nil && inlineComment.MatchString(v) && strings.Contains(err.Error(), strings.Fields(v)[0]) {
					t.Errorf("the value is shown: %v", err)
				}
			}
		})
	}
}

// TestParseConfig_YAMLMistakes: indentation mistakes are explained in plain
// words, at the line where they are, not where yaml.v3 says.
func TestParseConfig_YAMLMistakes(t *testing.T) {
	const tab = "a tab character is used for indentation; YAML indents with spaces only"
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"a tab before a key", "public_url: x\nclerk:\n\tsecret_key: y\n",
			"c.yaml:3: " + tab},
		{"a tab after keys indented with spaces", "public_url: x\nclerk:\n  secret_key: y\n\tapi_url: z\n",
			"c.yaml:4: " + tab},
		{"spaces then a tab", "clerk:\n  secret_key: y\n  \tapi_url: z\n",
			"c.yaml:3: " + tab},
		{"a tab before a comment", "listen: \":80\"\n\t# the port\n",
			"c.yaml:2: " + tab},
		{"a tab in a block scalar", "clerk:\n  jwt_key: |\n\t-----BEGIN PUBLIC KEY-----\n",
			"c.yaml:3: " + tab},
		{"a tab, with Windows line ends", "clerk:\r\n\tsecret_key: y\r\n",
			"c.yaml:2: " + tab},
		{"a key indented less than its siblings", "clerk:\n  secret_key: y\n api_url: z\n",
			`c.yaml:3: "api_url" is indented 1 space, but the keys above it are indented 0 or 2; the keys of one mapping must line up, so indent it like the keys it belongs with`},
		{"a key between two levels", "plans:\n  pro:\n    prices: [price_a]\n   routes: [\"*\"]\n",
			`c.yaml:4: "routes" is indented 3 spaces, but the keys above it are indented 0, 2 or 4; the keys of one mapping must line up, so indent it like the keys it belongs with`},
		{"a key of a list item off by one", "routes:\n  - path: /x\n   access: public\n",
			`c.yaml:3: "access" is indented 3 spaces, but the keys above it are indented 0 or 4; the keys of one mapping must line up, so indent it like the keys it belongs with`},
		{"a list item off by one", "routes:\n  - path: /x\n    access: public\n   - path: /y\n",
			`c.yaml:4: this list item is indented 3 spaces, but the list above it is indented 2; the dashes of one list's items must line up, so indent it like the items it belongs with`},
		{"a list item off by one, after comments and a block scalar", "# c\nroutes:\n- path: /x\n  # c\n  id: |\n    abc\n\n    def\n  access: public\n - path: /y\n",
			`c.yaml:10: this list item is indented 1 space, but the list above it is indented 0; the dashes of one list's items must line up, so indent it like the items it belongs with`},
		{"a key indented more than one with a value", "clerk:\n  secret_key: y\n    api_url: z\n",
			`c.yaml:3: "api_url" is indented more than "secret_key" on line 2, which already has a value; line it up with "secret_key"`},
		{"a key under a section given a value", "clerk: x\n  secret_key: y\n",
			`c.yaml:2: "secret_key" is indented more than "clerk" on line 1, which already has a value; line it up with "clerk"`},
		{"a colon and a space in a plain value", "upstream: http://app:3000\nproduct: a: b\n",
			`c.yaml:2: the value of "product" holds ": ", which YAML reads as the start of another key; put the value in quotes`},
		{"the same on line 1, where yaml.v3 gives no line", "upstream: a: b\n",
			`c.yaml:1: the value of "upstream" holds ": ", which YAML reads as the start of another key; put the value in quotes`},
		{"a value starting with @", "listen: \":80\"\nadmin: { token: @abc }\n",
			`c.yaml:2: a value starts with "@", which YAML reserves; put the value in quotes`},
		{"in a second document", "listen: \":80\"\n---\nc:\n  d: 1\n e: 2\n",
			`c.yaml:5: "e" is indented 1 space, but the keys above it are indented 0 or 2; the keys of one mapping must line up, so indent it like the keys it belongs with`},
		{"a list item among keys keeps yaml.v3's words, at the right line", "clerk:\n  secret_key: y\n  - z\n",
			"c.yaml:3: invalid YAML: did not find expected key"},
		{"other problems keep yaml.v3's words", "listen: \":80\"\nupstream: \"http://app:3000\n",
			"c.yaml:2: invalid YAML: found unexpected end of stream"},
		{"a value starting with ` in a list", "routes:\n  - `x`\n",
			"c.yaml:2: a value starts with \"`\", which YAML reserves; put the value in quotes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.doc), testEnv)
			if diff := cmp.Diff(errorLines(err), []string{tt.want}); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseConfig_AccessLevelsDecideWhatIsRequired(t *testing.T) {
	base := "public_url: https://app.example.com\nupstream: http://app:3000\n"
	tests := []struct {
		name string
		doc  string
		want []string // keys reported missing
	}{
		{"public routes with a public default need nothing", "default_access: public\nroutes: [{path: /x, access: public}]", nil},
		{"deny needs nothing", "default_access: deny", nil},
		{"a public catch-all hides the paid default", "routes: [{path: /*, access: public}]", nil},
		{"a host-specific catch-all does not", "routes: [{path: /*, host: app.example.com, access: public}]",
			[]string{"clerk.publishable_key", "clerk.secret_key", "session.secret", "stripe.secret_key", "stripe.webhook_secret", "plans"}},
		{"a method-filtered catch-all does not", "routes: [{path: /*, methods: [GET], access: public}]",
			[]string{"clerk.publishable_key", "clerk.secret_key", "session.secret", "stripe.secret_key", "stripe.webhook_secret", "plans"}},
		{"signed_in needs Clerk and a session secret only", "default_access: signed_in",
			[]string{"clerk.publishable_key", "clerk.secret_key", "session.secret"}},
		{"one paid rule needs everything", "default_access: public\nroutes: [{path: /p, access: paid}]",
			[]string{"clerk.publishable_key", "clerk.secret_key", "session.secret", "stripe.secret_key", "stripe.webhook_secret", "plans"}},
	}
	keyOf := regexp.MustCompile(`^config\.yaml:\d+: ([^:]+): `)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("config.yaml", []byte(base+tt.doc), testEnv)
			var got []string
			for _, l := range errorLines(err) {
				m := keyOf.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("error without file:line: key: %q", l)
				}
				got = append(got, m[1])
			}
			if diff := cmp.Diff(got, tt.want, cmpopts.SortSlices(strings.Compare), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-got +want):\n%s\nerrors: %v", diff, err)
			}
		})
	}
}

func TestParseConfig_ErrorsAreConfigErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte("listen: [1]\npublic_url: x\n"), testEnv)
	var ce *proxy.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%v is not a *ConfigError", err)
	}
	want := &proxy.ConfigError{File: "c.yaml", Line: 1, Key: "listen", Msg: "is a list; want a string"}
	if diff := cmp.Diff(ce, want); diff != "" {
		t.Errorf("first error (-got +want):\n%s", diff)
	}
}

func TestConfigError_Format(t *testing.T) {
	tests := []struct {
		err  proxy.ConfigError
		want string
	}{
		{proxy.ConfigError{File: "c.yaml", Line: 3, Key: "a.b", Msg: "bad"}, "c.yaml:3: a.b: bad"},
		{proxy.ConfigError{File: "c.yaml", Key: "a", Msg: "bad"}, "c.yaml: a: bad"},
		{proxy.ConfigError{Line: 3, Key: "a", Msg: "bad"}, "line 3: a: bad"},
		{proxy.ConfigError{File: "c.yaml", Line: 3, Msg: "bad"}, "c.yaml:3: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestParseConfig_SecretsAreNotEchoedInErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/config/bad_secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("bad_secrets.yaml", data, testEnv)
	if err == nil {
		t.Fatal("no error")
	}
	for _, secret := range []string{"too-short", "sk_test_abc", "not base64", "pk_test_123"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows %q:\n%v", secret, err)
		}
	}
}

func TestParseConfig_AliasBombFailsFast(t *testing.T) {
	// Each plan merges the previous one ten times: 10^9 keys once expanded.
	doc := "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\nplans:\n  p0: &p0 {name: x}\n"
	for i := 1; i < 10; i++ {
		prev := "*p" + strconv.Itoa(i-1)
		doc += "  p" + strconv.Itoa(i) + ": &p" + strconv.Itoa(i) + " {<<: [" + strings.Repeat(prev+", ", 9) + prev + "]}\n"
	}
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(doc), testEnv)
	want := []string{"bomb.yaml: too many YAML nodes (over 200000, counting alias expansions)"}
	if diff := cmp.Diff(errorLines(err), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("public_url: https://a.example\nupstream: http://b:1\ndefault_access: deny\nlsten: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	if err == nil || !strings.HasPrefix(err.Error(), file+":4: lsten: unknown key") {
		t.Errorf("got %v, want the file's own name and line", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	files = append(files, "../../config.example.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, testEnv)
		if err != nil {
			for _, l := range errorLines(err) {
				if !strings.HasPrefix(l, "fuzz.yaml") {
					t.Fatalf("error line without the file name: %q", l)
				}
			}
			return
		}
		// A valid config is complete: what the gate relies on is set.
		if cfg.PublicURL == nil || cfg.Upstream == nil || cfg.Routes == nil || !cfg.DefaultAccess.Valid() {
			t.Fatalf("incomplete config: %+v", cfg)
		}
		for _, r := range cfg.Routes.Rules {
			if !r.Compiled() || !r.Access.Valid() {
				t.Fatalf("rule %d not compiled: %+v", r.Index, r)
			}
		}
		again, err := Parse("fuzz.yaml", data, testEnv)
		if err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		if diff := cmp.Diff(again, cfg, configCmp()); diff != "" {
			t.Fatalf("parsing is not deterministic (-second +first):\n%s", diff)
		}
	})
}

// timeouts: a key left out gets its default; 0 written out means no limit.
func TestParseConfig_TimeoutsZeroOnlyWhenWritten(t *testing.T) {
	const base = "public_url: https://a.example\nupstream: http://b:1\ndefault_access: public\n"
	for _, tc := range []struct {
		doc  string
		want proxy.TimeoutsConfig
	}{
		{"", proxy.TimeoutsConfig{BodyIdle: DefaultBodyIdle, TunnelMaxLifetime: DefaultTunnelMaxLifetime}},
		{"timeouts: {}\n", proxy.TimeoutsConfig{BodyIdle: DefaultBodyIdle, TunnelMaxLifetime: DefaultTunnelMaxLifetime}},
		{"timeouts: { body_idle: 0, tunnel_max_lifetime: 0s }\n", proxy.TimeoutsConfig{}},
		{"timeouts: { body_idle: 5m, tunnel_max_lifetime: 15m }\n", proxy.TimeoutsConfig{BodyIdle: 5 * time.Minute, TunnelMaxLifetime: 15 * time.Minute}},
	} {
		cfg, err := Parse("config.yaml", []byte(base+tc.doc), testEnv)
		if err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		if cfg.Timeouts != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.doc, cfg.Timeouts, tc.want)
		}
	}
}

// clerk.proxy_url: absolute, or a path on public_url; a bad one is an error
// with its line; a development key or a frontend_api_url beside it warns.
func TestParseConfig_ClerkProxyURL(t *testing.T) {
	const live = "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k" // clerk.example.com$
	doc := func(pk, clerkExtra string) string {
		return "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\n" +
			"clerk:\n  publishable_key: " + pk + "\n  secret_key: sk_" + pk[3:7] + "_x\n" + clerkExtra
	}
	for _, tt := range []struct {
		name, doc, want, err, warn string
	}{
		{"absolute", doc(live, "  proxy_url: https://app.example.com/__clerk/\n"), "https://app.example.com/__clerk", "", ""},
		{"a path on public_url", doc(live, "  proxy_url: /__clerk\n"), "https://app.example.com/__clerk", "", ""},
		{"another host", doc(live, "  proxy_url: https://clerk-proxy.example.com\n"), "https://clerk-proxy.example.com", "", ""},
		{"not a URL", doc(live, "  proxy_url: ftp://x\n"), "", `config.yaml:7: clerk.proxy_url: "ftp://x": want an absolute http(s) URL`, ""},
		{"a query", doc(live, "  proxy_url: /__clerk?x=1\n"), "", "config.yaml:7: clerk.proxy_url:", ""},
		{"a development key", doc(testPublishableKey, "  proxy_url: /__clerk\n"), "https://app.example.com/__clerk", "", "config.yaml:7: clerk.proxy_url: Clerk's Frontend API proxy works for production instances only"},
		{"beside frontend_api_url", doc(live, "  proxy_url: /__clerk\n  frontend_api_url: https://clerk.example.com\n"), "https://app.example.com/__clerk", "",
			"config.yaml:8: clerk.frontend_api_url: is not used: handshakes go through proxy_url"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(tt.doc), testEnv)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Clerk.ProxyURL != tt.want {
				t.Errorf("ProxyURL = %q, want %q", cfg.Clerk.ProxyURL, tt.want)
			}
			if got := strings.Join(cfg.Warnings, "\n"); tt.warn == "" && got != "" || !strings.Contains(got, tt.warn) {
				t.Errorf("warnings %q, want %q", got, tt.warn)
			}
		})
	}
}
