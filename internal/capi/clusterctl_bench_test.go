package capi

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/cluster-api/cmd/clusterctl/client/yamlprocessor"

	"lok8s.dev/provisioner/internal/mgmt"
)

// BenchmarkRenderVsClusterctl times Catalog.Render for one golden spec
// (LOK8S_BENCH_RENDER_SPEC, default hcloud) beside `clusterctl generate
// cluster --from` run as a process on the same template text with the same
// values (clusterctlTemplate), and the text path (every template decoded
// as text, as Render did before templates were compiled), in the same run.
// The rounds are interleaved (clusterctl once, Render 10 times, the text
// path once), so that all three see the same load; it reports the median
// of each and the ratio of clusterctl's to Render's. ns/op is Render alone
// (b.Loop), after the rounds.
//
// LOK8S_CLUSTERCTL names the clusterctl binary; hack/bench-render.sh
// builds it and runs this (make bench-render). LOK8S_BENCH_CLUSTERCTL_RUNS
// sets the rounds (50).
func BenchmarkRenderVsClusterctl(b *testing.B) {
	bin := os.Getenv("LOK8S_CLUSTERCTL")
	if bin == "" {
		b.Skip("LOK8S_CLUSTERCTL is not set: run hack/bench-render.sh")
	}
	name := orDefault(os.Getenv("LOK8S_BENCH_RENDER_SPEC"), "hcloud")
	runs, err := strconv.Atoi(orDefault(os.Getenv("LOK8S_BENCH_CLUSTERCTL_RUNS"), "50"))
	if err != nil || runs < 1 {
		b.Fatalf("LOK8S_BENCH_CLUSTERCTL_RUNS: want a positive number, got %q", os.Getenv("LOK8S_BENCH_CLUSTERCTL_RUNS"))
	}
	c := embeddedCatalog(b)
	in := RenderInput{Spec: goldenSpec(b, c, name), Labels: map[string]string{mgmt.LabelTenant: "acme", mgmt.LabelCluster: "prod"}}
	pl, err := c.plan(in)
	if err != nil {
		b.Fatal(err)
	}
	tmpl, env, docs := clusterctlTemplate(c, pl)

	dir := b.TempDir()
	file := filepath.Join(dir, "cluster-template.yaml")
	config := filepath.Join(dir, "clusterctl.yaml")
	if err := os.WriteFile(file, tmpl, 0o644); err != nil {
		b.Fatal(err)
	}
	// A minimal configuration: no providers, no version check.
	if err := os.WriteFile(config, []byte("CLUSTERCTL_DISABLE_VERSIONCHECK: \"true\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	env = append(env, "HOME="+dir, "XDG_CONFIG_HOME="+dir, "PATH="+os.Getenv("PATH"), "CLUSTERCTL_DISABLE_VERSIONCHECK=true")
	// Interleaved, so that the three see the same load: each round runs
	// clusterctl once, Render renderBatch times and the text path once.
	const renderBatch = 10
	text := textCatalog(c)
	cc, rr, tt := make([]time.Duration, runs), make([]time.Duration, runs), make([]time.Duration, runs)
	ccCPU, rrCPU := make([]time.Duration, runs), make([]time.Duration, runs)
	for i := range runs {
		cmd := exec.Command(bin, "generate", "cluster", "prod", "--from", file, "--config", config,
			"--target-namespace", "default")
		cmd.Env = env
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		start := time.Now()
		err := cmd.Run()
		cc[i] = time.Since(start)
		if err == nil {
			ccCPU[i] = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		if err != nil {
			b.Fatalf("clusterctl generate cluster: %v\n%s", err, stderr.String())
		}
		if got := len(topKind.FindAll(out.Bytes(), -1)); i == 0 && got != docs {
			b.Fatalf("clusterctl printed %d objects, the template has %d:\n%s", got, docs, out.String())
		}
		cpu := cpuTime(b)
		start = time.Now()
		for range renderBatch {
			if _, err := c.Render(in); err != nil {
				b.Fatal(err)
			}
		}
		rr[i] = time.Since(start) / renderBatch
		rrCPU[i] = (cpuTime(b) - cpu) / renderBatch
		start = time.Now()
		if _, err := text.Render(in); err != nil {
			b.Fatal(err)
		}
		tt[i] = time.Since(start)
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	clusterctl, render, textPath := median(cc), median(rr), median(tt)

	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Render(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(ms(clusterctl), "clusterctl-ms")
	b.ReportMetric(ms(render), "render-ms")
	b.ReportMetric(ms(textPath), "textpath-ms")
	b.ReportMetric(float64(runs), "rounds")
	// CPU time (user + system) is less skewed by other load than wall
	// time, which counts the waits for a core: clusterctl's process, and
	// this process's during the Render batch (its GC included).
	cpuClusterctl, cpuRender := median(ccCPU), median(rrCPU)
	b.ReportMetric(ms(cpuClusterctl), "clusterctl-cpu-ms")
	b.ReportMetric(ms(cpuRender), "render-cpu-ms")
	b.ReportMetric(float64(cpuClusterctl)/float64(max(cpuRender, 1)), "cpu-ratio")
	b.ReportMetric(float64(clusterctl)/float64(render), "ratio")
}

// cpuTime is the user and system time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

var (
	variableRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)`)
	topKind     = regexp.MustCompile(`(?m)^kind: `)
)

// clusterctlTemplate writes the plan's units (templates and patches, in
// order) as one clusterctl template: each unit's text as in the catalog,
// its variables renamed U<k>_NAME (the units of the pools use the same
// names with other values), and the environment that sets each to the
// value Render substitutes (escaped, as renderText does), so that
// clusterctl's envsubst produces the text renderText decodes. docs is the
// number of objects.
func clusterctlTemplate(c *Catalog, pl *renderPlan) (tmpl []byte, env []string, docs int) {
	var buf bytes.Buffer
	for k, u := range append(slices.Clone(pl.units), pl.patches...) {
		prefix := fmt.Sprintf("U%d_", k)
		if k > 0 {
			buf.WriteString("\n---\n")
		}
		buf.WriteString(variableRef.ReplaceAllString(string(c.templates[u.file]), "$${"+prefix+"$1"))
		for _, name := range sortedKeys(c.parsed[u.file].vars) {
			if v, ok := u.vars[name]; ok {
				env = append(env, prefix+name+"="+escapeValue(v))
			}
		}
		objs, err := c.renderText(u)
		if err != nil {
			panic(err) // the plan rendered: Render checked it
		}
		docs += len(objs)
	}
	return buf.Bytes(), env, docs
}

// The clusterctl template, substituted as clusterctl does (its
// yamlprocessor, the same envsubst) with its environment, decodes to the
// objects renderText decodes from each unit: both do the same substitution.
func TestClusterctlTemplateIsTheSameSubstitution(t *testing.T) {
	t.Parallel()
	c := embeddedCatalog(t)
	for _, name := range []string{"hcloud", "hcloud-hrobot", "aws-ec2", "aws-eks-cilium"} {
		pl, err := c.plan(RenderInput{Spec: goldenSpec(t, c, name)})
		if err != nil {
			t.Fatal(err)
		}
		tmpl, env, docs := clusterctlTemplate(c, pl)
		vals := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			vals[k] = v
		}
		out, err := yamlprocessor.NewSimpleProcessor().Process(tmpl, func(name string) (string, error) {
			v, ok := vals[name]
			if !ok {
				return "", fmt.Errorf("%s not set", name)
			}
			return v, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := decodeObjects(out)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != docs {
			t.Fatalf("%s: %d objects, want %d", name, len(got), docs)
		}
		i := 0
		for _, u := range append(slices.Clone(pl.units), pl.patches...) {
			want, err := c.renderText(u)
			if err != nil {
				t.Fatal(err)
			}
			sameObjects(t, name+" "+u.file, got[i:i+len(want)], want)
			i += len(want)
		}
	}
}
