package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// prompter asks init's questions. Interactive, it reads answers a line at
// a time from in; scripted (-yes), it asks nothing and a required answer
// that no flag gave is an error naming the flag. On a terminal, secrets
// are read without echo, so that they do not stay on the screen or in its
// scrollback.
type prompter struct {
	ctx         context.Context
	out         io.Writer
	interactive bool

	in      io.Reader
	tty     bool // in is a terminal, ttyFd its descriptor
	ttyFd   int
	once    sync.Once
	reqs    chan bool       // a line is wanted; true: a secret, read without echo
	lines   chan lineResult // the line read for each request
	done    chan struct{}   // closed by close: the reader stops handing lines over
	stopped chan struct{}   // closed when the reader has returned
}

type lineResult struct {
	line string
	err  error
}

func newPrompter(ctx context.Context, in io.Reader, out io.Writer, interactive bool) *prompter {
	p := &prompter{ctx: ctx, in: in, out: out, interactive: interactive,
		reqs: make(chan bool), lines: make(chan lineResult), done: make(chan struct{}), stopped: make(chan struct{})}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty, p.ttyFd = true, int(f.Fd())
	}
	return p
}

// close lets the reading goroutine go once it has a line it can no longer
// hand over.
func (p *prompter) close() { close(p.done) }

// readLine waits for the next line of input, or for ctx to end: a read
// from a terminal cannot be interrupted, so it happens on a goroutine of
// its own and Ctrl+C (which ends ctx) does not wait for it. Lines are read
// only when asked for, each in its own mode (a secret without echo).
func (p *prompter) readLine(secret bool) (string, error) {
	p.once.Do(func() { go p.reader() })
	secret = secret && p.tty
	var before *term.State
	if secret {
		// The terminal as it was, to put back if Ctrl+C comes while echo
		// is off: the read that turned it off is never let finish.
		before, _ = term.GetState(p.ttyFd)
	}
	select {
	case <-p.ctx.Done():
		return "", p.ctx.Err()
	case p.reqs <- secret:
	}
	select {
	case <-p.ctx.Done():
		if before != nil {
			_ = term.Restore(p.ttyFd, before)
			fmt.Fprintln(p.out)
		}
		return "", p.ctx.Err()
	case res := <-p.lines:
		if secret {
			fmt.Fprintln(p.out) // the Enter was not echoed either
		}
		return res.line, res.err
	}
}

// reader reads a line for each request, until close; once the input has
// failed (ended), each request gets that error.
func (p *prompter) reader() {
	defer close(p.stopped)
	r := bufio.NewReader(p.in)
	var failed error
	for {
		var secret bool
		select {
		case secret = <-p.reqs:
		case <-p.done:
			return
		}
		res := lineResult{err: failed}
		switch {
		case failed != nil:
		case secret:
			// A terminal hands over one line per read, so r holds nothing
			// the terminal's own read would miss.
			var b []byte
			b, res.err = term.ReadPassword(p.ttyFd)
			res.line = string(b)
		default:
			res.line, res.err = r.ReadString('\n')
			if res.line != "" && res.err == io.EOF {
				res.err = nil // the last line, without its newline
			}
			res.line = strings.TrimRight(res.line, "\r\n")
		}
		failed = res.err
		select {
		case p.lines <- res:
		case <-p.done:
			return
		}
	}
}

// question is one of init's questions.
type question struct {
	label    string // what is asked, "Public URL"
	hint     string // said once before the question, "" for none
	flag     string // the flag that answers it, without the dash
	given    string // the flag's value
	def      string // the answer when none is typed (from the files already there)
	defLabel string // how def is shown, when not as itself (secrets)
	optional bool   // an empty answer is an answer
	needed   string // said when a required answer is empty ("" for "An answer is needed.")
	secret   bool   // read without echo from a terminal
	// check validates an answer and returns it as it is to be used.
	check func(string) (string, error)
}

// ask returns the answer to q: the flag's value when given (checked, never
// re-asked); else, interactive, what is typed, asked again while check
// refuses it; else the default, or an error when q needs an answer.
func (p *prompter) ask(q question) (string, error) {
	check := func(s string) (string, error) {
		if s == "" || q.check == nil {
			return s, nil
		}
		return q.check(s)
	}
	if q.given != "" {
		v, err := check(strings.TrimSpace(q.given))
		if err != nil {
			return "", fmt.Errorf("%w: -%s: %w", errUsage, q.flag, err)
		}
		return v, nil
	}
	if !p.interactive {
		if q.def == "" && !q.optional {
			return "", fmt.Errorf("%w: %s: no answer; pass -%s (-yes asks nothing)", errUsage, strings.ToLower(q.label[:1])+q.label[1:], q.flag)
		}
		return check(q.def)
	}
	if q.hint != "" {
		fmt.Fprintln(p.out, q.hint)
	}
	shown := q.def
	if q.defLabel != "" {
		shown = q.defLabel
	}
	label := q.label
	if q.secret && p.tty {
		label += " (not shown as you type)"
	}
	for {
		if shown != "" {
			fmt.Fprintf(p.out, "%s [%s]: ", label, shown)
		} else {
			fmt.Fprintf(p.out, "%s: ", label)
		}
		line, err := p.readLine(q.secret)
		if err != nil {
			return "", p.noAnswer(q.label, q.flag, err)
		}
		ans := strings.TrimSpace(line)
		if ans == "" {
			ans = q.def
		}
		if ans == "" && !q.optional {
			fmt.Fprintln(p.out, cmp.Or(q.needed, "  An answer is needed."))
			continue
		}
		v, err := check(ans)
		if err != nil {
			fmt.Fprintln(p.out, " ", err)
			continue
		}
		return v, nil
	}
}

// confirm asks a yes/no question; an empty answer is def.
func (p *prompter) confirm(label string, def bool) (bool, error) {
	hint := "y/N"
	if def {
		hint = "Y/n"
	}
	for {
		fmt.Fprintf(p.out, "%s [%s]: ", label, hint)
		line, err := p.readLine(false)
		if err != nil {
			return false, p.noAnswer(label, "", err)
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "":
			return def, nil
		case "y", "yes":
			return true, nil
		case "n", "no":
			return false, nil
		}
		fmt.Fprintln(p.out, "  Answer y or n.")
	}
}

func (p *prompter) noAnswer(label, flag string, err error) error {
	fmt.Fprintln(p.out)
	if err != io.EOF {
		return err
	}
	if flag != "" {
		return fmt.Errorf("%w: %s: the input ended before an answer; pass -%s, or -yes with a flag for every answer", errUsage, label, flag)
	}
	return fmt.Errorf("%w: %s: the input ended before an answer", errUsage, label)
}
