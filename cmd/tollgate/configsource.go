package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
)

// configSource is where a command reads its config from: -config, and the
// ${VAR}s of -env-file over the process environment's.
type configSource struct {
	path    string
	envFile string // "" for the process environment alone
}

const envFileUsage = "a file of VAR=value lines (the tollgate.env init writes) to take ${VAR}s from, read as docker run --env-file " +
	"reads it: the value is everything after the =, quotes and any \" # comment\" included; its variables win over the environment's " +
	"of the same name, as in a container started with it"

// configFlags adds -config and -env-file to fs.
func configFlags(fs *flag.FlagSet, configUsage string) *configSource {
	c := &configSource{}
	fs.StringVar(&c.path, "config", defaultConfigPath, configUsage)
	fs.StringVar(&c.envFile, "env-file", "", envFileUsage)
	return c
}

// load reads the config, and the env file anew each time (a reload sees
// its edits as it sees the config's).
func (c configSource) load() (*proxy.Config, error) {
	getenv := os.Getenv
	if c.envFile != "" {
		if _, err := os.Stat(c.envFile); err != nil {
			return nil, fmt.Errorf("-env-file: %w", err)
		}
		env, err := readEnvFile(c.envFile)
		if err != nil {
			return nil, fmt.Errorf("-env-file: %w", err)
		}
		// docker's --env-file sets the container's environment, so a
		// variable the file names is the file's; the binary, with no
		// container around it, takes the others from its environment.
		getenv = func(name string) string {
			if v, ok := env.values[name]; ok {
				return v
			}
			return os.Getenv(name)
		}
	}
	return config.LoadWith(c.path, getenv)
}
