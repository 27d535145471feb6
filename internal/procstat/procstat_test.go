package procstat

import (
	"os"
	"testing"
	"time"
)

func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = n * n
	}
	st, ok := Read(os.Getpid())
	if !ok {
		t.Fatal("cannot read this process")
	}
	if st.Parent != os.Getppid() || st.CPU <= 0 || st.Command == "" {
		t.Fatalf("read %+v, want parent %d, some CPU and a command", st, os.Getppid())
	}
	if _, ok := Read(-1); ok {
		t.Fatal("read a process that cannot exist")
	}
}
