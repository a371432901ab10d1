package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// prompter asks init's questions. Interactive, it reads answers a line at
// a time from in; scripted (-yes), it asks nothing and a required answer
// that no flag gave is an error naming the flag.
type prompter struct {
	ctx         context.Context
	out         io.Writer
	interactive bool

	in    io.Reader
	once  sync.Once
	lines chan string   // closed at the end of the input
	done  chan struct{} // closed by close: the reader stops handing lines over
}

func newPrompter(ctx context.Context, in io.Reader, out io.Writer, interactive bool) *prompter {
	return &prompter{ctx: ctx, in: in, out: out, interactive: interactive, lines: make(chan string), done: make(chan struct{})}
}

// close lets the reading goroutine go once it has a line it can no longer
// hand over.
func (p *prompter) close() { close(p.done) }

// readLine waits for the next line of input, or for ctx to end: a read
// from a terminal cannot be interrupted, so it happens on a goroutine of
// its own and Ctrl+C (which ends ctx) does not wait for it.
func (p *prompter) readLine() (string, error) {
	p.once.Do(func() {
		go func() {
			defer close(p.lines)
			r := bufio.NewReader(p.in)
			for {
				s, err := r.ReadString('\n')
				if s != "" || err == nil {
					select {
					case p.lines <- strings.TrimRight(s, "\r\n"):
					case <-p.done:
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	})
	select {
	case <-p.ctx.Done():
		return "", p.ctx.Err()
	case s, ok := <-p.lines:
		if !ok {
			return "", io.EOF
		}
		return s, nil
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
	secret   bool   // a key or secret
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
	for {
		if shown != "" {
			fmt.Fprintf(p.out, "%s [%s]: ", q.label, shown)
		} else {
			fmt.Fprintf(p.out, "%s: ", q.label)
		}
		line, err := p.readLine()
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
		line, err := p.readLine()
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
