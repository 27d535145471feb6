package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// benchCPU is the CPU time used so far by each part of the scenario: this
// process (the service and the benchmark's own clients), the envtest
// kube-apiserver and etcd it started, and the Postgres backends connected
// to the service's database. Backends that come and go between two
// readings are missed, so Postgres's figure is a lower bound.
type benchCPU struct {
	service, apiserver, etcd, postgres time.Duration
}

func (c benchCPU) sub(o benchCPU) benchCPU {
	return benchCPU{c.service - o.service, c.apiserver - o.apiserver, c.etcd - o.etcd, c.postgres - o.postgres}
}

// perCluster formats c divided among n clusters.
func (c benchCPU) perCluster(n int) string {
	each := func(d time.Duration) string {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)/float64(n))
	}
	total := c.service + c.apiserver + c.etcd + c.postgres
	return fmt.Sprintf("%s in all: service and benchmark %s, kube-apiserver %s, etcd %s, Postgres %s",
		each(total), each(c.service), each(c.apiserver), each(c.etcd), each(c.postgres))
}

// readCPU reads the parts' CPU times from /proc ("" parts it cannot read
// count zero: the figures are a diagnosis, not a check).
func (s *benchService) readCPU(ctx context.Context) benchCPU {
	var c benchCPU
	self := os.Getpid()
	c.service = procCPU(self)
	children, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range children {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		comm, ppid, cpu, ok := procStat(pid)
		if !ok || ppid != self {
			continue
		}
		switch comm {
		case "kube-apiserver":
			c.apiserver += cpu
		case "etcd":
			c.etcd += cpu
		}
	}
	rows, err := s.db.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`)
	if err != nil {
		return c
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			c.postgres += procCPU(pid)
		}
	}
	return c
}

func procCPU(pid int) time.Duration {
	_, _, cpu, _ := procStat(pid)
	return cpu
}

// procStat reads a process's command name, parent and CPU time (user and
// system) from /proc/<pid>/stat.
func procStat(pid int) (comm string, ppid int, cpu time.Duration, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	// After "pid (comm) ": state, ppid, …; utime and stime are fields 14
	// and 15 of the whole line, so 11 and 12 of these.
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return s[open+1 : end], ppid, time.Duration(utime+stime) * time.Second / clockTicks, true
}
