//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: what the test types goes into master,
// init reads it from slave, and master reads back what the terminal
// echoes.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var n int
	ctl := func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
			n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}
	// Through the raw connection, so that master stays non-blocking and
	// its read deadline works.
	if rc, cerr := master.SyscallConn(); cerr != nil {
		t.Fatal(cerr)
	} else if cerr := rc.Control(ctl); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// echoing reports whether the terminal echoes what is typed.
func echoing(t *testing.T, tty *os.File) bool {
	t.Helper()
	tios, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tios.Lflag&unix.ECHO != 0
}

// untilEchoOff waits for the prompter to have turned echo off: it does so
// inside term.ReadPassword, with nothing to wait on but the terminal's
// state, so the state is asked for (without sleeping) until it changes.
func untilEchoOff(t *testing.T, tty *os.File) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for echoing(t, tty) {
		if time.Now().After(deadline) {
			t.Fatal("echo was never turned off")
		}
		runtime.Gosched()
	}
}

// On a terminal, a secret is read without echo and a plain answer with
// it; echo is back on after each, and after Ctrl+C during a secret.
func TestPrompter_SecretsAreNotEchoedOnATerminal(t *testing.T) {
	master, slave := openPTY(t)
	type answer struct {
		s   string
		err error
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out bytes.Buffer
	p := newPrompter(ctx, slave, &out, true)
	defer func() {
		// The read Ctrl+C left behind ends with a line typed for it: the
		// master's close alone did not always end it (the read hung in 1
		// of about 100 runs under -race), and the slave is closed (by a
		// cleanup) only after it has ended.
		p.close()
		_, _ = master.WriteString("\n")
		<-p.stopped
	}()
	if !p.tty {
		t.Fatal("the pseudo-terminal is not taken for a terminal")
	}
	ask := func(q question) <-chan answer {
		c := make(chan answer, 1)
		go func() {
			s, err := p.ask(q)
			c <- answer{s, err}
		}()
		return c
	}
	typeLine := func(s string) {
		t.Helper()
		if _, err := master.WriteString(s + "\n"); err != nil {
			t.Fatal(err)
		}
	}

	typeLine("visible-answer")
	if a := <-ask(question{label: "Upstream", flag: "upstream"}); a.err != nil || a.s != "visible-answer" {
		t.Fatalf("plain answer: %+v", a)
	}
	secret := ask(question{label: "Clerk secret key", flag: "clerk-secret-key", secret: true})
	untilEchoOff(t, slave)
	typeLine("sk_test_hiddenAnswer")
	if a := <-secret; a.err != nil || a.s != "sk_test_hiddenAnswer" {
		t.Fatalf("secret answer: %+v", a)
	}
	if !echoing(t, slave) {
		t.Error("echo is still off after the secret")
	}
	typeLine("last-answer")
	if a := <-ask(question{label: "Upstream", flag: "upstream"}); a.err != nil || a.s != "last-answer" {
		t.Fatalf("plain answer after the secret: %+v", a)
	}
	// Everything typed has been echoed (or not) by now: read it back.
	if err := master.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var echoed []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(echoed, []byte("last-answer")) {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("reading the echo: %v (so far %q)", err, echoed)
		}
		echoed = append(echoed, buf[:n]...)
	}
	if !bytes.Contains(echoed, []byte("visible-answer")) || bytes.Contains(echoed, []byte("hiddenAnswer")) {
		t.Errorf("the terminal showed %q; want the plain answers and not the secret", echoed)
	}
	if !strings.Contains(out.String(), "Clerk secret key (not shown as you type): ") {
		t.Errorf("the prompt does not say the secret is not shown:\n%s", out.String())
	}

	// Ctrl+C while echo is off: ask returns at once, and echo is back.
	secret = ask(question{label: "Stripe secret key", flag: "stripe-secret-key", secret: true})
	untilEchoOff(t, slave)
	cancel()
	if a := <-secret; !errors.Is(a.err, context.Canceled) {
		t.Errorf("after Ctrl+C: %+v", a)
	}
	if !echoing(t, slave) {
		t.Error("echo is still off after Ctrl+C")
	}
}
