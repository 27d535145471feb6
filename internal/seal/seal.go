// Package seal encrypts secrets at rest with AES-256-GCM under a keyring.
//
// Each sealed value records the id of the key that sealed it, so keys can be
// rotated: new values are sealed with the primary key while values sealed by
// an older key still open as long as that key stays in the ring.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length in bytes of an AES-256 key.
const KeySize = 32

// ErrUnknownKey is returned when a sealed value names a key the ring lacks.
var ErrUnknownKey = errors.New("seal: sealed with a key that is not in the keyring")

// Sealed is an encrypted value and what is needed to open it, except the key.
type Sealed struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

// Keyring holds the primary key, used to seal, and older keys, used only to
// open values sealed before a rotation.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
	fpKey   []byte
	signKey []byte
}

// ParseKey decodes a standard base64 key of exactly KeySize bytes.
func ParseKey(b64 string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("not valid base64: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("must decode to %d bytes, got %d", KeySize, len(key))
	}
	return key, nil
}

// NewKey returns a fresh random key, base64 encoded.
func NewKey() string {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never returns an error
	return base64.StdEncoding.EncodeToString(key)
}

// NewKeyring builds a ring whose primary key is primary; old keys may follow.
func NewKeyring(primary []byte, old ...[]byte) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{primary}, old...) {
		if len(key) != KeySize {
			return nil, fmt.Errorf("seal: key %d: must be %d bytes, got %d", i, KeySize, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		id := KeyID(key)
		k.aeads[id] = aead
		if i == 0 {
			k.primary = id
			k.fpKey = derive(key, "lok8s credential fingerprint")
			k.signKey = derive(key, "lok8s signatures")
		}
	}
	return k, nil
}

func derive(key []byte, purpose string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(purpose))
	return mac.Sum(nil)
}

// Sign returns a keyed digest of data for purpose (a key derived from the
// primary key per purpose): every replica with the same key computes the
// same, and nobody without it can. Compare with hmac.Equal.
func (k *Keyring) Sign(purpose string, data []byte) string {
	mac := hmac.New(sha256.New, derive(k.signKey, purpose))
	mac.Write(data)
	return hex.EncodeToString(mac.Sum(nil))
}

// KeyID names a key without revealing it: the first 8 bytes of its SHA-256, in hex.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// PrimaryKeyID is the id of the key new values are sealed with.
func (k *Keyring) PrimaryKeyID() string { return k.primary }

// Seal encrypts plaintext with the primary key. aad binds the ciphertext to
// its owner (for example tenant and name): opening with other aad fails.
func (k *Keyring) Seal(plaintext, aad []byte) (Sealed, error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("seal: nonce: %w", err)
	}
	return Sealed{KeyID: k.primary, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plaintext, aad)}, nil
}

// Open decrypts s with the key it names.
func (k *Keyring) Open(s Sealed, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[s.KeyID]
	if !ok {
		return nil, fmt.Errorf("%w (key id %s)", ErrUnknownKey, s.KeyID)
	}
	plaintext, err := aead.Open(nil, s.Nonce, s.Ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("seal: open with key %s: %w", s.KeyID, err)
	}
	return plaintext, nil
}

// Fingerprint returns a short keyed digest of plaintext: equal secrets give
// equal fingerprints, yet the fingerprint cannot be used to guess the secret
// without the primary key.
func (k *Keyring) Fingerprint(plaintext []byte) string {
	mac := hmac.New(sha256.New, k.fpKey)
	mac.Write(plaintext)
	return "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil)[:12])
}
