package apitest

import "testing"

func TestDocumentIsValidOpenAPI(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if missing := v.Unexercised(); len(missing) == 0 {
		t.Fatal("a fresh validator reports every operation exercised")
	}
}
