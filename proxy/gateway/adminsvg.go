package gateway

import (
	"fmt"
	"html"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The dashboard's charts are SVG written here, on the server: no script,
// nothing from a third party, and nothing inline that the pages'
// Content-Security-Policy would refuse (no style attributes: admin.css
// colours them by class). Every series has a pattern as well as a colour
// (solid, hatched, dotted, cross-hatched), a legend that shows it, and its
// numbers written out, so that nothing depends on telling colours apart;
// each mark has a <title>, and each chart a text alternative.

// svgPatterns are the fills the charts share. Each page holds at most one
// copy of each chart, so the IDs are unique on it.
const svgPatterns = `<defs>` +
	`<pattern id="tg-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
	`<rect width="6" height="6" class="fill-bg"/><line x1="0" y1="0" x2="0" y2="6" class="stroke-cancel"/></pattern>` +
	`<pattern id="tg-dots" width="5" height="5" patternUnits="userSpaceOnUse">` +
	`<rect width="5" height="5" class="fill-bg"/><circle cx="2.5" cy="2.5" r="1.3" class="fill-trial"/></pattern>` +
	`<pattern id="tg-cross" width="6" height="6" patternUnits="userSpaceOnUse">` +
	`<rect width="6" height="6" class="fill-bg"/><path d="M0 0L6 6M6 0L0 6" class="stroke-muted"/></pattern>` +
	`</defs>`

// series is one kind of mark: its CSS class (colour) and fill (pattern).
type series struct {
	Label, Class, Fill string
}

var (
	seriesNew      = series{"New", "mark-new", ""}
	seriesCanceled = series{"Cancelled", "mark-cancel", "url(#tg-hatch)"}
	seriesActive   = series{"Active", "mark-new", ""}
	seriesTrialing = series{"Trialing", "mark-trial", "url(#tg-dots)"}
	seriesPastDue  = series{"Past due", "mark-cancel", "url(#tg-hatch)"}
	seriesOther    = series{"Cancelled and other", "mark-muted", "url(#tg-cross)"}
	seriesWon      = series{"Converted", "mark-new", ""}
	seriesLost     = series{"Lost", "mark-cancel", "url(#tg-hatch)"}
	seriesRunning  = series{"In trial", "mark-trial", "url(#tg-dots)"}
)

// rect writes one mark with its title.
func rect(b *strings.Builder, s series, x, y, w, h float64, title string) {
	fill := ""
	if s.Fill != "" {
		fill = ` fill="` + s.Fill + `"`
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="%s"%s><title>%s</title></rect>`,
		x, y, max(w, 0), max(h, 0), s.Class, fill, html.EscapeString(title))
}

// text writes a label.
func text(b *strings.Builder, x, y float64, anchor, class, s string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s" class="%s">%s</text>`, x, y, anchor, class, html.EscapeString(s))
}

// legend writes swatches with their labels from (x, y).
func legend(b *strings.Builder, x, y float64, items ...series) {
	for _, s := range items {
		rect(b, s, x, y-10, 14, 14, s.Label)
		text(b, x+20, y+1, "start", "label", s.Label)
		x += 34 + float64(len(s.Label))*8.5
	}
}

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
func niceMax(v int64) int64 {
	if v <= 0 {
		return 1
	}
	p := int64(1)
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func svgOpen(b *strings.Builder, w, h int, label string) {
	fmt.Fprintf(b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, w, h, html.EscapeString(label))
	b.WriteString(svgPatterns)
}

// dailyChart is new and cancelled subscriptions per day, as pairs of
// bars: new solid, cancelled hatched.
func dailyChart(days []proxy.DayCount) template.HTML {
	const w, h, left, top, bottom = 720, 250, 44, 34, 34
	var top2 int64
	var added, cancelled int64
	for _, d := range days {
		top2 = max(top2, d.New, d.Canceled)
		added += d.New
		cancelled += d.Canceled
	}
	scale := niceMax(top2)
	var b strings.Builder
	svgOpen(&b, w, h, fmt.Sprintf("New and cancelled subscriptions per day over %d days: %d new, %d cancelled", len(days), added, cancelled))
	legend(&b, left, 16, seriesNew, seriesCanceled)
	plotH := float64(h - top - bottom)
	for _, frac := range []float64{0, 0.5, 1} {
		y := float64(top) + plotH*(1-frac)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/>`, left, y, w-4, y)
		text(&b, left-6, y+4, "end", "tick", strconv.FormatInt(int64(frac*float64(scale)), 10))
	}
	if len(days) == 0 {
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	slot := float64(w-left-4) / float64(len(days))
	bar := max(slot/2-0.5, 0.8)
	for i, d := range days {
		x := float64(left) + float64(i)*slot
		day := d.Day.Format("2 Jan")
		hn := plotH * float64(d.New) / float64(scale)
		hc := plotH * float64(d.Canceled) / float64(scale)
		rect(&b, seriesNew, x, float64(top)+plotH-hn, bar, hn, fmt.Sprintf("%s: %d new", day, d.New))
		rect(&b, seriesCanceled, x+bar, float64(top)+plotH-hc, bar, hc, fmt.Sprintf("%s: %d cancelled", day, d.Canceled))
	}
	for _, i := range []int{0, len(days) / 2, len(days) - 1} {
		anchor := map[bool]string{true: "start", false: "middle"}[i == 0]
		if i == len(days)-1 {
			anchor = "end"
		}
		text(&b, float64(left)+(float64(i)+0.5)*slot, float64(h-12), anchor, "tick", days[i].Day.Format("2 Jan"))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// planChart is each plan's subscriptions as a stacked bar by status, with
// the numbers at the end of each bar.
func planChart(plans []proxy.PlanBreakdown, names map[string]string) template.HTML {
	const w, left, row = 720, 150, 38
	h := 40 + row*max(len(plans), 1)
	var most int64
	for _, p := range plans {
		most = max(most, p.Active+p.Trialing+p.PastDue+p.Canceled+p.Other)
	}
	scale := float64(niceMax(most))
	var b strings.Builder
	svgOpen(&b, w, h, "Subscriptions per plan by status")
	legend(&b, 8, 16, seriesActive, seriesTrialing, seriesPastDue, seriesOther)
	plotW := float64(w - left - 150)
	for i, p := range plans {
		y := 34 + float64(i*row)
		name := names[p.Plan]
		if name == "" {
			name = p.Plan
		}
		text(&b, left-8, y+17, "end", "label", name)
		x := float64(left)
		for _, seg := range []struct {
			s series
			n int64
		}{{seriesActive, p.Active}, {seriesTrialing, p.Trialing}, {seriesPastDue, p.PastDue}, {seriesOther, p.Canceled + p.Other}} {
			wd := plotW * float64(seg.n) / scale
			rect(&b, seg.s, x, y+4, wd, 20, fmt.Sprintf("%s: %d %s", name, seg.n, strings.ToLower(seg.s.Label)))
			x += wd
		}
		text(&b, x+8, y+18, "start", "tick", fmt.Sprintf("%d · %d · %d · %d", p.Active, p.Trialing, p.PastDue, p.Canceled+p.Other))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// trialChart is trials as one bar: converted, lost, still running.
func trialChart(t proxy.TrialStats) template.HTML {
	const w, h, left = 720, 86, 8
	total := t.Converted + t.Lost + t.Running
	var b strings.Builder
	svgOpen(&b, w, h, fmt.Sprintf("Trials: %d converted, %d lost, %d in trial", t.Converted, t.Lost, t.Running))
	legend(&b, left, 16, seriesWon, seriesLost, seriesRunning)
	x, plotW := float64(left), float64(w-2*left)
	for _, seg := range []struct {
		s series
		n int64
	}{{seriesWon, t.Converted}, {seriesLost, t.Lost}, {seriesRunning, t.Running}} {
		wd := 0.0
		if total > 0 {
			wd = plotW * float64(seg.n) / float64(total)
		}
		rect(&b, seg.s, x, 30, wd, 22, fmt.Sprintf("%d %s", seg.n, strings.ToLower(seg.s.Label)))
		x += wd
	}
	text(&b, left, 74, "start", "tick", fmt.Sprintf("%d converted · %d lost · %d in trial", t.Converted, t.Lost, t.Running))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// adminFuncs are the template helpers of the admin pages.
var adminFuncs = template.FuncMap{
	"monies": func(ms []proxy.Money) string {
		if len(ms) == 0 {
			return "—"
		}
		parts := make([]string, len(ms))
		for i, m := range ms {
			parts[i] = m.Format()
		}
		return strings.Join(parts, " + ")
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2 Jan 2006 15:04")
	},
	"day": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2 Jan 2006")
	},
	"num": func(n int64) string {
		s := strconv.FormatInt(n, 10)
		var out []byte
		for i := range len(s) {
			if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
				out = append(out, ',')
			}
			out = append(out, s[i])
		}
		return string(out)
	},
}
