package seal

import (
	"bytes"
	"errors"
	"testing"
)

func mustKey(t *testing.T) []byte {
	t.Helper()
	key, err := ParseKey(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	ring, err := NewKeyring(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"hcloudToken":"very-secret"}`)
	s, err := ring.Seal(secret, []byte("tenant/name"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Ciphertext, []byte("very-secret")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	if s.KeyID != ring.PrimaryKeyID() {
		t.Fatalf("key id %q, want primary %q", s.KeyID, ring.PrimaryKeyID())
	}
	got, err := ring.Open(s, []byte("tenant/name"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := ring.Open(s, []byte("other/name")); err == nil {
		t.Fatal("opened with the wrong aad")
	}
	s2, _ := ring.Seal(secret, []byte("tenant/name"))
	if bytes.Equal(s.Nonce, s2.Nonce) {
		t.Fatal("nonce reused")
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := mustKey(t), mustKey(t)
	oldRing, _ := NewKeyring(oldKey)
	s, err := oldRing.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(s, nil); err != nil || string(got) != "x" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	if s2, _ := rotated.Seal([]byte("x"), nil); s2.KeyID != KeyID(newKey) {
		t.Fatalf("sealed with %s, want the new primary", s2.KeyID)
	}
	newOnly, _ := NewKeyring(newKey)
	if _, err := newOnly.Open(s, nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("want ErrUnknownKey, got %v", err)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, wantErr string }{
		{"!!", "base64"},
		{"c2hvcnQ=", "32 bytes"},
	} {
		if _, err := ParseKey(tc.in); err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
			t.Errorf("ParseKey(%q) = %v, want error with %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	ring, _ := NewKeyring(mustKey(t))
	a, b := ring.Fingerprint([]byte("s1")), ring.Fingerprint([]byte("s2"))
	if a == b || a != ring.Fingerprint([]byte("s1")) {
		t.Fatalf("fingerprints: %s %s", a, b)
	}
	other, _ := NewKeyring(mustKey(t))
	if other.Fingerprint([]byte("s1")) == a {
		t.Fatal("fingerprint does not depend on the key")
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	key, _ := ParseKey(NewKey())
	other, _ := ParseKey(NewKey())
	a, _ := NewKeyring(key)
	b, _ := NewKeyring(key) // another replica, the same key
	c, _ := NewKeyring(other)
	sig := a.Sign("form", []byte("nonce"))
	if sig != b.Sign("form", []byte("nonce")) {
		t.Fatal("replicas with the same key sign differently")
	}
	for name, s := range map[string]string{
		"another key":     c.Sign("form", []byte("nonce")),
		"another purpose": a.Sign("other", []byte("nonce")),
		"another nonce":   a.Sign("form", []byte("nonce2")),
	} {
		if s == sig {
			t.Errorf("%s gives the same signature", name)
		}
	}
}
