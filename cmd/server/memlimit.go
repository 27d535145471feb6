package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the share of the container's memory limit given to
// the Go runtime as its soft limit: the rest is headroom for what the
// runtime does not count (the binary's pages, kernel buffers).
const memoryLimitShare = 0.9

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// softMemoryLimit is the soft memory limit the Go runtime should keep the
// heap under, and where it comes from. When GOMEMLIMIT is set the runtime
// has applied it already (0, "GOMEMLIMIT"); else memoryLimitShare of the
// container's memory limit; else none (0, "").
func softMemoryLimit(getenv func(string) string, readFile func(string) ([]byte, error)) (int64, string) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT"
	}
	for _, path := range cgroupMemoryFiles {
		data, err := readFile(path)
		if err != nil {
			continue
		}
		limit, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil || limit <= 0 || limit >= 1<<60 { // "max", or v1's "unlimited" (near MaxInt64)
			return 0, ""
		}
		return int64(float64(limit) * memoryLimitShare), path
	}
	return 0, ""
}

// applySoftMemoryLimit sets the runtime's soft memory limit as
// softMemoryLimit says, and returns it (math.MaxInt64: none) and its source.
func applySoftMemoryLimit(getenv func(string) string) (int64, string) {
	limit, source := softMemoryLimit(getenv, os.ReadFile)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	if limit = debug.SetMemoryLimit(-1); limit == math.MaxInt64 {
		source = "none"
	}
	return limit, source
}
