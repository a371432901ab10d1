package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck asks the running gateway whether it is alive, for Docker's
// HEALTHCHECK in an image without a shell or curl.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", "Exits 0 when the gateway at the config's listen address answers its health check (for Docker's HEALTHCHECK).", stderr)
	src := configFlags(fs, "path to the YAML config")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := src.load()
	if err != nil {
		return err
	}
	target := "http://" + dialable(cfg.Listen) + cfg.InternalPrefix + "/healthz"
	if cfg.Admin.Listen != "" {
		target = "http://" + dialable(cfg.Admin.Listen) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d", target, resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// dialable turns a listen address into one to dial: ":8080" → "127.0.0.1:8080".
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
