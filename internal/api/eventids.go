package api

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/seal"
)

// Event ids on the wire are opaque: the store's id is one sequence for
// every tenant, and handing it out would tell each tenant how busy the
// others are. A stream's id is the store's id sealed with the service's
// keyring (AES-GCM, a fresh nonce each time) and bound to the tenant, so
// it reveals nothing, differs between streams, and another tenant's id
// does not open. Ids sealed with a key still in the keyring (rotated out
// to LOK8S_ENCRYPTION_OLD_KEYS) keep working.

// FromStart is the Last-Event-ID that replays a tenant's stream from its
// first retained event.
const FromStart = "0"

// errEventID is the 422 for a Last-Event-ID this service did not send the tenant.
var errEventID = errInvalid(FieldError{Field: "Last-Event-ID", Message: "must be an event id this stream sent, or 0 for the start"})

func eventIDAAD(tenant uuid.UUID) []byte { return []byte("lok8s/event-ids/" + tenant.String()) }

// encodeEventID turns the tenant's event id into its opaque form: the key
// id, the nonce and the ciphertext, base64url.
func encodeEventID(k *seal.Keyring, tenant uuid.UUID, id int64) (string, error) {
	plain := binary.BigEndian.AppendUint64(nil, uint64(id))
	sealed, err := k.Seal(plain, eventIDAAD(tenant))
	if err != nil {
		return "", fmt.Errorf("seal event id: %w", err)
	}
	keyID, err := hex.DecodeString(sealed.KeyID)
	if err != nil {
		return "", fmt.Errorf("seal event id: key id: %w", err)
	}
	raw := append(append(keyID, sealed.Nonce...), sealed.Ciphertext...)
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// The parts of an opaque id: seal.KeyID's 8 bytes, then GCM's 12-byte nonce.
const (
	eventKeyIDLen = 8
	eventNonceLen = 12
)

// decodeEventID opens an opaque id the tenant was sent; ok is false for
// anything else (malformed, another tenant's, a key no longer held).
func decodeEventID(k *seal.Keyring, tenant uuid.UUID, s string) (id int64, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) <= eventKeyIDLen+eventNonceLen {
		return 0, false
	}
	plain, err := k.Open(seal.Sealed{
		KeyID:      hex.EncodeToString(raw[:eventKeyIDLen]),
		Nonce:      raw[eventKeyIDLen : eventKeyIDLen+eventNonceLen],
		Ciphertext: raw[eventKeyIDLen+eventNonceLen:],
	}, eventIDAAD(tenant))
	if err != nil || len(plain) != 8 {
		return 0, false
	}
	id = int64(binary.BigEndian.Uint64(plain))
	return id, id >= 0
}
