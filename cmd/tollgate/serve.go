package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/clerk"
)

const defaultConfigPath = "/etc/tollgate/config.yaml"

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	configPath := fs.String("config", defaultConfigPath, "path to the YAML config")
	logFormat := fs.String("log", "json", "log format: json or text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger := newLogger(stderr, *logFormat)
	cfg, err := proxy.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config", "warning", w)
	}
	gw, err := newGateway(cfg, gatewayDeps{Logger: logger})
	if err != nil {
		return err
	}
	defer gw.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("tollgate serving", "version", version, "addr", ln.Addr().String(), "public_url", cfg.PublicURL.String(), "upstream", cfg.Upstream.String())
	return serveUntilDone(ctx, ln, gw.Handler, logger)
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	configPath := fs.String("config", defaultConfigPath, "path to the YAML config")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := proxy.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d plans, %d warnings)\n", *configPath, len(cfg.Routes.Rules), len(cfg.Plans), len(cfg.Warnings))
	return nil
}

// gatewayDeps are the outside things a gateway can be given instead of the
// real ones (tests and the demo inject clocks and clients).
type gatewayDeps struct {
	Logger     *slog.Logger
	Now        func() time.Time
	HTTPClient *http.Client // for Clerk's Backend API
}

// gateway is a wired tollgate: the public handler and what must be closed.
type gateway struct {
	Handler http.Handler
	Server  *proxy.Server
	closers []func() error
}

func (g *gateway) Close() error {
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	return errors.Join(errs...)
}

// newGateway is the one place that knows every concrete type.
func newGateway(cfg *proxy.Config, deps gatewayDeps) (*gateway, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	opts := proxy.Options{Config: cfg, Logger: deps.Logger, Now: deps.Now}
	if cfg.Clerk.PublishableKey != "" {
		cc, err := clerk.New(clerk.Config{
			PublishableKey:    cfg.Clerk.PublishableKey,
			SecretKey:         cfg.Clerk.SecretKey,
			JWTKey:            cfg.Clerk.JWTKey,
			AuthorizedParties: cfg.Clerk.AuthorizedParties,
			APIURL:            cfg.Clerk.APIURL,
			FrontendAPIURL:    cfg.Clerk.FrontendAPIURL,
			SignInURL:         cfg.Clerk.SignInURL,
			PublicURL:         cfg.PublicURL,
			HTTPClient:        deps.HTTPClient,
			Logger:            deps.Logger.With("component", "clerk"),
			Now:               deps.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("clerk: %w", err)
		}
		opts.Auth, opts.Portal, opts.Sessions = cc, cc, cc
	}
	srv, err := proxy.New(opts)
	if err != nil {
		return nil, err
	}
	return &gateway{Handler: srv, Server: srv}, nil
}

// serveUntilDone serves until ctx ends, then shuts down gracefully: the
// listener closes at once and in-flight requests get up to 30 s to finish.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", "30s")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
