package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"lok8s.dev/provisioner/internal/procstat"
)

// benchCPU is the CPU time used so far by each part of the scenario: this
// process (the service and the benchmark's own clients), the envtest
// kube-apiserver and etcd it started, and the Postgres backends connected
// to the service's database. Backends that come and go between two
// readings are missed, so Postgres's figure is a lower bound. The
// backends of the benchmark's own pool (its sampler's counting queries)
// are measured apart, in measure, and not counted as the service's.
type benchCPU struct {
	service, apiserver, etcd, postgres, measure time.Duration
}

func (c benchCPU) sub(o benchCPU) benchCPU {
	return benchCPU{c.service - o.service, c.apiserver - o.apiserver, c.etcd - o.etcd, c.postgres - o.postgres, c.measure - o.measure}
}

// perCluster formats c divided among n clusters.
func (c benchCPU) perCluster(n int) string {
	each := func(d time.Duration) string {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)/float64(n))
	}
	total := c.service + c.apiserver + c.etcd + c.postgres
	return fmt.Sprintf("%s in all: service and benchmark %s, kube-apiserver %s, etcd %s, Postgres %s (besides: the sampler's queries %s)",
		each(total), each(c.service), each(c.apiserver), each(c.etcd), each(c.postgres), each(c.measure))
}

// readCPU reads the parts' CPU times from /proc (a part it cannot read
// counts zero: the figures are a diagnosis, not a check).
func (s *benchService) readCPU(ctx context.Context) benchCPU {
	var c benchCPU
	self := os.Getpid()
	if st, ok := procstat.Read(self); ok {
		c.service = st.CPU
	}
	children, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range children {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		st, ok := procstat.Read(pid)
		if !ok || st.Parent != self {
			continue
		}
		switch st.Command {
		case "kube-apiserver":
			c.apiserver += st.CPU
		case "etcd":
			c.etcd += st.CPU
		}
	}
	rows, err := s.db.Query(ctx, `SELECT pid, application_name = $1 FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend'`, benchMeasureName)
	if err != nil {
		return c
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		var measure bool
		if rows.Scan(&pid, &measure) != nil {
			continue
		}
		st, ok := procstat.Read(pid)
		switch {
		case !ok:
		case measure:
			c.measure += st.CPU
		default:
			c.postgres += st.CPU
		}
	}
	return c
}
