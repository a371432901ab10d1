package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/proxy/gateway"
)

const defaultConfigPath = "/etc/tollgate/config.yaml"

// runServe is `tollgate serve`: it reads the config, builds the gateway,
// binds the listeners and turns SIGHUP into reloads, then serves until ctx
// ends (SIGTERM).
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	flags := newFlagSet("serve", "Runs the gateway: the config's listen address in front of its upstream. SIGHUP reloads the config; SIGTERM finishes requests and stops.", stderr)
	src := configFlags(flags, "path to the YAML config")
	logFormat := flags.String("log", "json", "log format: json or text")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	// The log is written in batches, off the request path (logWriter);
	// what is pending is written out when serve returns.
	lw := newLogWriter(stderr)
	defer lw.Close()
	logger := newLogger(lw, *logFormat)
	var accessLog gateway.LineBuffer
	if *logFormat != "text" {
		// newLogger's JSON handler: the access log's lines, the same
		// bytes, go straight into the batch (README "Performance").
		accessLog = lw
	}
	tuneGC(ctx)
	cfg, err := src.load()
	if errors.Is(err, fs.ErrNotExist) {
		// Most often a first run of bare "tollgate": say what to do next.
		return fmt.Errorf("no config at %s.\n"+
			"  To try tollgate locally:   tollgate demo\n"+
			"  To use another file:       tollgate -config FILE [-env-file tollgate.env]\n"+
			"  To write one:              tollgate init (or see the README's quickstart)\n"+
			"  Every command:             tollgate help", src.path)
	}
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config", "warning", w)
	}
	gw, err := newApp(cfg, appDeps{Logger: logger, AccessLog: accessLog})
	if err != nil {
		return err
	}
	defer gw.Close()
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if adminLn != nil {
			adminLn.Close()
		}
		return fmt.Errorf("listen: %w", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reload := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			select {
			case reload <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return serve(ctx, gw, *src, ln, adminLn, reload, logger)
}

// serve runs a built gateway on ln, and its admin API on adminLn (nil:
// none), until ctx ends; each receive from reload re-reads src. It
// closes both listeners. It neither listens nor handles signals, so tests
// hand it their own listeners and reload channel.
func serve(ctx context.Context, gw *app, src configSource, ln, adminLn net.Listener, reload <-chan struct{}, logger *slog.Logger) error {
	cfg := gw.config()
	stopAdmin, err := serveAdmin(ctx, adminLn, cfg, gw, logger)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopAdmin() // before the caller's gw.Close: the admin listener and its syncs end before the store closes
	ctx, cancel := context.WithCancel(ctx)
	var reloads sync.WaitGroup
	reloads.Go(func() { reloadOn(ctx, reload, src, gw, logger) })
	defer func() {
		cancel()
		reloads.Wait() // no reload runs once serve has returned
	}()
	logger.Info("tollgate serving", "version", version, "addr", ln.Addr().String(), "public_url", cfg.PublicURL.String(), "upstream", cfg.Upstream.String())
	return serveUntilDone(ctx, ln, gw.Handler, gw.state, logger)
}

// reloadOn re-reads the config on every receive from reload; a bad one is
// refused and logged, and the running config keeps serving.
func reloadOn(ctx context.Context, reload <-chan struct{}, src configSource, gw *app, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		}
		cfg, err := src.load()
		if err == nil {
			err = gw.Reload(cfg)
		}
		if err != nil {
			logger.Error("config reload refused; the running config keeps serving", "err", err)
			continue
		}
		for _, w := range cfg.Warnings {
			logger.Warn("config", "warning", w)
		}
		logger.Info("config reloaded", "routes", len(cfg.Routes.Rules), "plans", len(cfg.Plans))
	}
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// serveUntilDone serves until ctx ends, then shuts down gracefully: the
// listener closes at once and in-flight requests get up to 30 s to finish.
// st, when h is the gateway, bounds each connection's wait on the upstream
// (nil: the admin listener, which has no upstream).
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, st *gateway.State, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if st != nil {
		srv.ConnContext, srv.ConnState = st.ConnContext, st.ConnState
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

// serveGCPercent is the GC's target for `tollgate serve` on a large heap,
// unless GOGC says otherwise: a gateway's heap is mostly its caches, which
// live long, so collecting when the heap has grown by half of them rather
// than all keeps its memory near what it holds (a 100,000-entry LRU: about
// 130 MB instead of 165), for a little more of the CPU.
const serveGCPercent = 50

// gcMinHeadroom is the least the heap may grow between collections. On a
// small heap (a small LRU, a few MB live) half of it is a collection every
// few hundred requests, whose fixed costs (every goroutine's stack, the
// live heap marked again) were a tenth of the gateway's CPU under load
// (README "Performance"); 32 MiB of garbage at most costs little memory
// and collects a hundred times less often there.
const gcMinHeadroom = 32 << 20

// gcPercentFor is the GC target for a live heap of live bytes: the heap
// grows by half of it, or by gcMinHeadroom when that is more (capped at
// 8 times the live heap).
func gcPercentFor(live uint64) int {
	if live == 0 {
		return 800
	}
	return int(min(max(100*gcMinHeadroom/live, serveGCPercent), 800))
}

// tuneGC sets the GC's target from the live heap, once a second, until ctx
// ends; with GOGC set it does nothing. Off the request path: one read of
// runtime/metrics a second.
func tuneGC(ctx context.Context) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	read := func() int {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return serveGCPercent
		}
		return gcPercentFor(sample[0].Value.Uint64())
	}
	cur := read()
	debug.SetGCPercent(cur)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Only a change of a tenth or more: each change recomputes
			// the pacer's goal.
			if p := read(); p < cur*9/10 || p > cur*11/10 {
				debug.SetGCPercent(p)
				cur = p
			}
		}
	}()
}
