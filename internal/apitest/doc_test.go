package apitest
import "testing"
func TestDocLoads(t *testing.T){ if _, err := NewValidator(); err != nil { t.Fatal(err) } }
