package main

import (
	"errors"
	"io"
)

const idleChildArg = "idle-gateway-child"

func runIdle(args []string, out io.Writer) error      { return errors.New("todo") }
func runIdleChild(args []string, out io.Writer) error { return errors.New("todo") }
