// Package procstat reads a process's CPU time from Linux's /proc, for the
// benchmarks that split a run's CPU among the service, Postgres backends
// and the envtest apiserver.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// Stat is what the benchmarks read of a process.
type Stat struct {
	Command string
	Parent  int
	// CPU is the user and system time the process has used so far.
	CPU time.Duration
}

// Read reads /proc/<pid>/stat; ok is false when there is no such process
// (or no /proc).
func Read(pid int) (st Stat, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, false
	}
	open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
	if open < 0 || end < open {
		return Stat{}, false
	}
	// After "pid (comm) ": state, ppid, …; utime and stime are fields 14
	// and 15 of the whole line, so 11 and 12 of these.
	f := strings.Fields(string(raw[end+1:]))
	if len(f) < 13 {
		return Stat{}, false
	}
	parent, _ := strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return Stat{Command: string(raw[open+1 : end]), Parent: parent, CPU: time.Duration(utime+stime) * time.Second / clockTicks}, true
}
