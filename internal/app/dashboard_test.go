package app

import (
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// dashboardFile is the Grafana dashboard shipped beside the Helm chart.
const dashboardFile = "../../deploy/helm/lok8s/dashboards/lok8s.json"

// TestDashboardNamesOnlyRegisteredMetrics parses the Grafana dashboard
// and checks that every PromQL expression in it names at least one
// metric and only metrics the service registers (the registry Serve
// builds, asked for its names in-process), so a renamed or removed metric
// cannot leave a dashboard panel silently empty. It also checks the
// dashboard shows what operators asked for.
func TestDashboardNamesOnlyRegisteredMetrics(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dashboard map[string]any
	if err := json.Unmarshal(raw, &dashboard); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	exprs := collectExprs(dashboard)
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no PromQL expression")
	}
	registered := map[string]bool{}
	for _, name := range newMetrics(nil, slog.New(slog.DiscardHandler)).Names() {
		registered[name] = true
	}
	used := map[string]bool{}
	for _, expr := range exprs {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("expression names no metric: %s", expr)
		}
		for _, name := range names {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if trimmed, ok := strings.CutSuffix(name, suffix); ok && registered[trimmed] {
					base = trimmed
				}
			}
			if !registered[base] {
				t.Errorf("the dashboard names %s, which the service does not register: %s", name, expr)
			}
			used[base] = true
		}
	}
	// Provisioning rate and duration per step, failures by code, queue
	// depth, API latency.
	for _, want := range []string{"lok8s_operations_total", "lok8s_step_duration_seconds", "lok8s_step_failures_total",
		"lok8s_jobs", "lok8s_http_request_duration_seconds"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// collectExprs finds every "expr" string in a Grafana dashboard (panel
// targets, in rows or not).
func collectExprs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				out = append(out, s)
				continue
			}
			out = append(out, collectExprs(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, collectExprs(x)...)
		}
	}
	return out
}

// promqlWords are PromQL's keywords and aggregation operators, which may
// stand without parentheses right after them (sum by (…) (…)).
var promqlWords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
	"and", "or", "unless", "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
	"quantile", "count_values", "limitk", "limit_ratio", "inf", "nan"}

// metricNames returns the metric names a PromQL expression selects: its
// identifiers less functions (followed by "("), keywords, the label lists
// of by/without/on/ignoring/group_*, and whatever stands in label
// matchers ({…}), ranges ([…]) and strings. Small on purpose: the
// dashboard's expressions are plain selectors, aggregations and functions.
func metricNames(expr string) []string {
	var names []string
	rs := []rune(expr)
	skipTo := func(i int, close rune) int {
		for i < len(rs) && rs[i] != close {
			if rs[i] == '"' || rs[i] == '\'' { // a string may hold the closer
				q := rs[i]
				for i++; i < len(rs) && rs[i] != q; i++ {
					if rs[i] == '\\' {
						i++
					}
				}
			}
			i++
		}
		return i
	}
	isIdent := func(r rune, first bool) bool {
		return r == '_' || r == ':' || unicode.IsLetter(r) || (!first && unicode.IsDigit(r))
	}
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '{':
			i = skipTo(i+1, '}')
		case r == '[':
			i = skipTo(i+1, ']')
		case r == '"' || r == '\'':
			i = skipTo(i+1, r)
		case unicode.IsDigit(r) || r == '.' || r == '$':
			for i+1 < len(rs) && (isIdent(rs[i+1], false) || rs[i+1] == '.') {
				i++
			}
		case isIdent(r, true):
			start := i
			for i+1 < len(rs) && isIdent(rs[i+1], false) {
				i++
			}
			word := string(rs[start : i+1])
			next := i + 1
			for next < len(rs) && unicode.IsSpace(rs[next]) {
				next++
			}
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, word):
				if next < len(rs) && rs[next] == '(' {
					i = skipTo(next+1, ')') // a list of label names
				}
			case slices.Contains(promqlWords, word):
			case next < len(rs) && rs[next] == '(':
				// a function
			default:
				names = append(names, word)
			}
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		`sum by (kind, outcome) (rate(lok8s_operations_total[$__rate_interval]))`: {"lok8s_operations_total"},
		`histogram_quantile(0.95, sum by (le, step) (rate(lok8s_step_duration_seconds_bucket{kind=~"$kind",x="a}b"}[5m])))`: {
			"lok8s_step_duration_seconds_bucket"},
		`max by (state) (lok8s_jobs{state=~"available|running"}) / on (state) group_left lok8s_x offset 5m`: {"lok8s_jobs", "lok8s_x"},
		`sum(rate(a_total[1m])) or vector(0)`: {"a_total"},
	}
	for expr, want := range cases {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %v, want %v", expr, got, want)
		}
	}
}
