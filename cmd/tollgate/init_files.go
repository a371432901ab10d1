package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// The files init writes: config.yaml, which names every secret as ${VAR},
// and tollgate.env, which holds them, one VAR=value a line.

// Variables of tollgate.env, in the order written.
const (
	envClerkPublishable = "CLERK_PUBLISHABLE_KEY"
	envClerkSecret      = "CLERK_SECRET_KEY"
	envClerkWebhook     = "CLERK_WEBHOOK_SECRET"
	envSessionSecret    = "TOLLGATE_SESSION_SECRET"
	envStripeSecret     = "STRIPE_SECRET_KEY"
	envStripeWebhook    = "STRIPE_WEBHOOK_SECRET"
	envAdminToken       = "TOLLGATE_ADMIN_TOKEN"
)

var initEnvVars = []string{envClerkPublishable, envClerkSecret, envClerkWebhook, envSessionSecret, envStripeSecret, envStripeWebhook, envAdminToken}

// The defaults of what init writes to config.yaml without asking: right
// in the container (the Dockerfile's port and /data volume); the binary
// needs -listen and -store-path. The admin listener is on loopback, where
// tollgate users, sync and backup reach it (in the container, through
// docker exec).
const (
	defaultInitListen      = ":8080"
	defaultInitStorePath   = "/data/tollgate.db"
	defaultInitAdminListen = "127.0.0.1:8081"
)

// envFile is a tollgate.env: its variables in file order.
type envFile struct {
	names  []string
	values map[string]string
}

func (e *envFile) get(name string) string { return e.values[name] }

// readEnvFile reads VAR=value lines as docker's --env-file does: blank
// lines and lines starting with # are skipped, and the value is everything
// after the first =, kept as it is. A missing file is an empty one.
func readEnvFile(path string) (*envFile, error) {
	e := &envFile{values: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			continue
		}
		if _, seen := e.values[name]; !seen {
			e.names = append(e.names, name)
		}
		e.values[name] = value
	}
	return e, nil
}

// renderEnvFile writes vars (tollgate's, in initEnvVars' order) and then
// any other variable the file had before, so that a variable added by
// hand survives a second run. No comment follows a
// value: docker's --env-file would keep it as part of the value.
func renderEnvFile(vars map[string]string, before *envFile) []byte {
	var b strings.Builder
	b.WriteString("# tollgate.env, written by tollgate init: the secrets config.yaml names as ${VAR}. Keep it out of version control.\n")
	b.WriteString("# One VAR=value a line, with no comment after the value: docker's --env-file would keep it as part of the value.\n")
	for _, name := range initEnvVars {
		fmt.Fprintf(&b, "%s=%s\n", name, vars[name])
	}
	for _, name := range before.names {
		if !slices.Contains(initEnvVars, name) {
			fmt.Fprintf(&b, "%s=%s\n", name, before.values[name])
		}
	}
	return []byte(b.String())
}

// priorConfig is what init reuses, as defaults, of a config.yaml already
// there: values that are written out, not ${VAR}s.
type priorConfig struct {
	PublicURL, Upstream            string
	Listen, StorePath, AdminListen string
	ClerkAPIURL, StripeAPIURL      string
	ClerkFrontendAPIURL, SignInURL string
	Plans                          []initPlan
}

// readPriorConfig reads the defaults from path; a missing file has none.
func readPriorConfig(path string) (priorConfig, error) {
	var p priorConfig
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	var doc struct {
		PublicURL string `yaml:"public_url"`
		Upstream  string `yaml:"upstream"`
		Listen    string `yaml:"listen"`
		Clerk     struct {
			APIURL         string `yaml:"api_url"`
			FrontendAPIURL string `yaml:"frontend_api_url"`
			SignInURL      string `yaml:"sign_in_url"`
		} `yaml:"clerk"`
		Stripe struct {
			APIURL string `yaml:"api_url"`
		} `yaml:"stripe"`
		Store struct {
			Path string `yaml:"path"`
		} `yaml:"store"`
		Admin struct {
			Listen string `yaml:"listen"`
		} `yaml:"admin"`
		Plans yaml.Node `yaml:"plans"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return p, err
	}
	literal := func(s string) string {
		if strings.Contains(s, "${") {
			return ""
		}
		return strings.TrimSpace(s)
	}
	p.PublicURL, p.Upstream = literal(doc.PublicURL), literal(doc.Upstream)
	p.ClerkAPIURL, p.StripeAPIURL = literal(doc.Clerk.APIURL), literal(doc.Stripe.APIURL)
	p.ClerkFrontendAPIURL, p.SignInURL = literal(doc.Clerk.FrontendAPIURL), literal(doc.Clerk.SignInURL)
	p.Listen, p.StorePath, p.AdminListen = literal(doc.Listen), literal(doc.Store.Path), literal(doc.Admin.Listen)
	if doc.Plans.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(doc.Plans.Content); i += 2 {
			var plan struct {
				Prices []string `yaml:"prices"`
			}
			if doc.Plans.Content[i+1].Decode(&plan) != nil || len(plan.Prices) == 0 {
				continue
			}
			p.Plans = append(p.Plans, initPlan{Key: doc.Plans.Content[i].Value, Prices: plan.Prices})
		}
	}
	return p, nil
}

// initPlan is a plan init writes: its key, the name the pages show, and
// its prices.
type initPlan struct {
	Key, Name string
	Prices    []string
}

// initConfig is what config.yaml is written from.
type initConfig struct {
	PublicURL, Upstream            string
	Listen, StorePath, AdminListen string
	ClerkAPIURL, StripeAPIURL      string // "" for Clerk's and Stripe's own
	ClerkFrontendAPIURL, SignInURL string // "" unless a stand-in's
	Plans                          []initPlan
}

// yamlString quotes s for YAML: a JSON string is a YAML double-quoted
// scalar.
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func yamlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = yamlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// renderConfig writes config.yaml: the README quickstart's keys, every
// secret a ${VAR} of tollgate.env, a public "/" before a paid catch-all
// that every plan unlocks, and the plans.
func renderConfig(c initConfig) []byte {
	var b strings.Builder
	b.WriteString(`# config.yaml, written by tollgate init. config.example.yaml in tollgate's
# repository lists every key with its default; "tollgate check -config FILE"
# checks a change. Secrets are not here: ${VAR}s come from tollgate.env.
`)
	fmt.Fprintf(&b, "listen: %s\n", yamlString(c.Listen))
	fmt.Fprintf(&b, "public_url: %s   # the origin visitors use\n", yamlString(c.PublicURL))
	fmt.Fprintf(&b, "upstream: %s   # your app, as tollgate reaches it\n", yamlString(c.Upstream))
	b.WriteString(`
clerk:
  publishable_key: "${` + envClerkPublishable + `}"
  secret_key: "${` + envClerkSecret + `}"
  webhook_secret: "${` + envClerkWebhook + `}"   # empty: no Clerk webhook
`)
	for _, kv := range [][2]string{{"api_url", c.ClerkAPIURL}, {"frontend_api_url", c.ClerkFrontendAPIURL}, {"sign_in_url", c.SignInURL}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "  %s: %s\n", kv[0], yamlString(kv[1]))
		}
	}
	b.WriteString(`
session:
  secret: "${` + envSessionSecret + `}"

stripe:
  secret_key: "${` + envStripeSecret + `}"
  webhook_secret: "${` + envStripeWebhook + `}"
`)
	if c.StripeAPIURL != "" {
		fmt.Fprintf(&b, "  api_url: %s\n", yamlString(c.StripeAPIURL))
	}
	fmt.Fprintf(&b, "\nstore:\n  path: %s\n", yamlString(c.StorePath))
	b.WriteString(`
# The admin listener (health, metrics, and with the token the API that
# tollgate users, sync and backup call): keep it on loopback or a private
# network.
admin:
`)
	fmt.Fprintf(&b, "  listen: %s\n", yamlString(c.AdminListen))
	b.WriteString(`  token: "${` + envAdminToken + `}"

# First match wins. The home page is public; every other path needs a
# subscription to one of the plans. Add public rules above the catch-all
# for what signed-out visitors must load (the home page's CSS, images and
# scripts), and signed_in rules for pages that need a sign-in only.
routes:
  - { path: "/", access: public }
  - { path: "/*", access: paid }

plans:
`)
	for _, p := range c.Plans {
		fmt.Fprintf(&b, "  %s: { name: %s, prices: %s, routes: [\"*\"] }\n", p.Key, yamlString(p.Name), yamlList(p.Prices))
	}
	return []byte(b.String())
}

// checkWritable says, before anything is asked of Clerk or Stripe, why a
// file could not be written at path, the value of -flag: its directory
// must exist or be makeable, and be writable; nothing may be there but a
// file. A new Stripe endpoint's signing secret is shown once, so a write
// that fails after the endpoint is made would lose it. Nothing is left
// behind: a directory still to be made is probed at its nearest existing
// parent.
func checkWritable(flag, path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: -%s: %s is a directory; init writes a file there", errUsage, flag, path)
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%w: -%s: %s is a file, not a directory, so %s cannot be written (the tollgate binary, built here? "+
					"put it on your PATH, or choose another directory)", errUsage, flag, dir, path)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("-%s: %w", flag, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("-%s: %w", flag, err)
		}
		dir = parent
	}
	probe, err := os.CreateTemp(dir, ".tollgate-init-*")
	if err != nil {
		return fmt.Errorf("-%s: %s cannot be written: %w", flag, path, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so that a reader never sees half a file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
