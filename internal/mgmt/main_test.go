package mgmt

import (
	"testing"

	"lok8s.dev/provisioner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
