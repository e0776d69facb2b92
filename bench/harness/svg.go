package harness

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// The charts are plain SVG written by hand: no dependency, and a file that
// renders the same in a browser, on GitHub and in an editor.

// colors of the configurations, the same in every chart.
var colors = map[string]string{
	Decode:    "#7f7f7f",
	Stateless: "#1f77b4",
	Stateful:  "#d62728",
	Compare:   "#9467bd",
}

const (
	chartW      = 760.0
	chartH      = 420.0
	padLeft     = 70.0
	padRight    = 20.0
	padTop      = 60.0
	padBottom   = 60.0
	plotW       = chartW - padLeft - padRight
	plotH       = chartH - padTop - padBottom
	fontFamily  = "sans-serif"
	whiskerHalf = 4.0
)

// svg accumulates one chart.
type svg struct {
	w   *bufio.Writer
	max float64 // top of the y axis
}

func newSVG(w io.Writer, title, ylabel string, ymax float64) *svg {
	s := &svg{w: bufio.NewWriter(w)}
	top, step := niceAxis(ymax)
	s.max = top
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="%s" font-size="12">`+"\n", chartW, chartH, chartW, chartH, fontFamily)
	s.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	s.text(chartW/2, 22, "middle", 15, "bold", title)
	// y grid and labels
	for v := 0.0; v <= top+step/2; v += step {
		y := s.y(v)
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", padLeft, y, padLeft+plotW, y)
		s.text(padLeft-6, y+4, "end", 11, "", trimFloat(v))
	}
	s.printf(`<text x="16" y="%.1f" text-anchor="middle" font-size="12" transform="rotate(-90 16 %.1f)">%s</text>`+"\n", padTop+plotH/2, padTop+plotH/2, html.EscapeString(ylabel))
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", padLeft, padTop+plotH, padLeft+plotW, padTop+plotH)
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", padLeft, padTop, padLeft, padTop+plotH)
	return s
}

func (s *svg) printf(format string, a ...any) { fmt.Fprintf(s.w, format, a...) }

func (s *svg) y(v float64) float64 { return padTop + plotH - v/s.max*plotH }

func (s *svg) text(x, y float64, anchor string, size float64, weight, t string) {
	w := ""
	if weight != "" {
		w = fmt.Sprintf(` font-weight="%s"`, weight)
	}
	s.printf(`<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%.0f"%s>%s</text>`+"\n", x, y, anchor, size, w, html.EscapeString(t))
}

// legend draws the configurations' colours in a row under the title.
func (s *svg) legend(names []string) {
	x := padLeft
	for _, n := range names {
		s.printf(`<rect x="%.1f" y="34" width="12" height="12" fill="%s"/>`+"\n", x, colors[n])
		s.text(x+16, 44, "start", 12, "", n)
		x += 24 + 7.5*float64(len(n))
	}
}

// whisker draws the min-max range at x.
func (s *svg) whisker(x float64, st Stat) {
	y0, y1 := s.y(st.Min), s.y(st.Max)
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x, y0, x, y1)
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x-whiskerHalf, y0, x+whiskerHalf, y0)
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x-whiskerHalf, y1, x+whiskerHalf, y1)
}

func (s *svg) close(note string) error {
	if note != "" {
		s.text(chartW-padRight, chartH-8, "end", 10, "", note)
	}
	s.printf("</svg>\n")
	return s.w.Flush()
}

// niceAxis returns the top of an axis from 0 that holds v, and its tick
// step: 1, 2 or 5 times a power of ten, 4 to 8 ticks.
func niceAxis(v float64) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 0.25
	}
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch m := raw / p; {
	case m <= 1:
		step = p
	case m <= 2:
		step = 2 * p
	case m <= 5:
		step = 5 * p
	default:
		step = 10 * p
	}
	top = math.Ceil(v*1.05/step) * step
	return top, step
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// maxOf is the largest max over the results of the selected runs.
func maxOf(runs []*Run) float64 {
	m := 0.0
	for _, run := range runs {
		for _, res := range run.Results {
			m = max(m, res.NsPerPacket.Max)
		}
	}
	return m
}

func (r *Report) runs(sel func(*Run) bool) []*Run {
	var out []*Run
	for i := range r.Runs {
		if sel(&r.Runs[i]) {
			out = append(out, &r.Runs[i])
		}
	}
	return out
}

// WriteConfigsChart draws ns/packet by configuration as grouped bars, one
// group per captures or connections run, with min-max whiskers.
func (r *Report) WriteConfigsChart(w io.Writer) error {
	runs := r.runs(func(run *Run) bool { return run.Group != GroupRules })
	s := newSVG(w, "ns/packet by configuration (median, min-max whiskers)", "ns/packet", maxOf(runs))
	s.legend(Configurations)
	gw := plotW / float64(max(len(runs), 1))
	bw := gw * 0.8 / float64(len(Configurations))
	for g, run := range runs {
		x0 := padLeft + float64(g)*gw + gw*0.1
		for i, c := range Configurations {
			res := run.Result(c)
			if res == nil {
				continue
			}
			x := x0 + float64(i)*bw
			y := s.y(res.NsPerPacket.Median)
			s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.1f ns/packet</title></rect>`+"\n",
				x+1, y, bw-2, padTop+plotH-y, colors[c], html.EscapeString(run.Name), c, res.NsPerPacket.Median)
			s.whisker(x+bw/2, res.NsPerPacket)
			s.text(x+bw/2, s.y(res.NsPerPacket.Max)-4, "middle", 10, "", strconv.FormatFloat(res.NsPerPacket.Median, 'f', 0, 64))
		}
		label := run.Name
		if run.Group == GroupConnections {
			label = Count(run.Flows) + " flows"
		}
		s.text(padLeft+(float64(g)+0.5)*gw, padTop+plotH+18, "middle", 12, "", label)
		s.text(padLeft+(float64(g)+0.5)*gw, padTop+plotH+34, "middle", 11, "", fmt.Sprintf("stateful/stateless %.2fx", run.Ratio.Median))
	}
	return s.close(r.note())
}

func (r *Report) note() string {
	return fmt.Sprintf("%s, %d CPUs, %s, %s", r.Machine.CPU, r.Machine.CPUs, r.Machine.Go, r.Date.Format("2006-01-02"))
}

// WriteConnectionsChart draws ns/packet versus concurrent connections, log
// x, one line per configuration.
func (r *Report) WriteConnectionsChart(w io.Writer) error {
	runs := r.runs(func(run *Run) bool { return run.Group == GroupConnections })
	return r.lineChart(w, runs, "ns/packet versus concurrent connections", "concurrent connections (flows), log scale",
		func(run *Run) float64 { return float64(run.Flows) }, func(v float64) string { return Count(int(v)) })
}

// WriteRulesChart draws ns/packet versus the number of rules, log x.
func (r *Report) WriteRulesChart(w io.Writer) error {
	runs := r.runs(func(run *Run) bool { return run.Group == GroupRules })
	xlabel := "rules (generated), log scale"
	if len(runs) > 0 {
		xlabel += ", " + Count(runs[0].Flows) + " concurrent flows"
	}
	return r.lineChart(w, runs, "ns/packet versus number of rules", xlabel,
		func(run *Run) float64 { return float64(run.RuleCount) }, func(v float64) string { return thousands(int(v)) })
}

func (r *Report) lineChart(w io.Writer, runs []*Run, title, xlabel string, xOf func(*Run) float64, xLabel func(float64) string) error {
	s := newSVG(w, title+" (median, min-max whiskers)", "ns/packet", maxOf(runs))
	s.legend(Configurations)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, run := range runs {
		x := math.Log10(max(xOf(run), 1))
		lo, hi = min(lo, x), max(hi, x)
	}
	if hi <= lo {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.08
	lo, hi = lo-pad, hi+pad
	px := func(v float64) float64 { return padLeft + (math.Log10(max(v, 1))-lo)/(hi-lo)*plotW }
	for _, run := range runs {
		x := px(xOf(run))
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x, padTop+plotH, x, padTop+plotH+5)
		s.text(x, padTop+plotH+18, "middle", 12, "", xLabel(xOf(run)))
	}
	s.text(padLeft+plotW/2, padTop+plotH+38, "middle", 12, "", xlabel)
	for _, c := range Configurations {
		var pts string
		for _, run := range runs {
			if res := run.Result(c); res != nil {
				pts += fmt.Sprintf("%.1f,%.1f ", px(xOf(run)), s.y(res.NsPerPacket.Median))
			}
		}
		s.printf(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", pts, colors[c])
		for _, run := range runs {
			if res := run.Result(c); res != nil {
				x, y := px(xOf(run)), s.y(res.NsPerPacket.Median)
				s.whisker(x, res.NsPerPacket)
				s.printf(`<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s %s: %.1f ns/packet</title></circle>`+"\n", x, y, colors[c], html.EscapeString(run.Name), c, res.NsPerPacket.Median)
				s.text(x+6, y-5, "start", 10, "", strconv.FormatFloat(res.NsPerPacket.Median, 'f', 0, 64))
			}
		}
	}
	return s.close(r.note())
}
