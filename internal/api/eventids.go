package api

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

// Event ids on the wire are opaque: the store's positions (transaction id
// and event id) are sequences shared by every tenant, and handing them out
// would tell each tenant how busy the others are. A stream's id is the
// event's position sealed with the service's
// keyring (AES-GCM, a fresh nonce each time) and bound to the tenant, so
// it reveals nothing, differs between streams, and another tenant's id
// does not open. Ids sealed with a key still in the keyring (rotated out
// to LOK8S_ENCRYPTION_OLD_KEYS) keep working.

// FromStart is the Last-Event-ID that replays a tenant's stream from its
// first retained event.
const FromStart = "0"

// errEventID is the 422 for a Last-Event-ID this service did not send the tenant.
var errEventID = service.Invalid(FieldError{Field: "Last-Event-ID", Message: "must be an event id this stream sent, or 0 for the start"})

func eventIDAAD(tenant uuid.UUID) []byte { return []byte("lok8s/event-ids/" + tenant.String()) }

// encodeEventID turns the position of the tenant's event (its transaction
// and its id, 16 bytes) into its opaque form: the key id, the nonce and
// the ciphertext, base64url.
func encodeEventID(k *seal.Keyring, tenant uuid.UUID, p store.Position) (string, error) {
	plain := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, p.Tx), uint64(p.ID))
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
// anything else (malformed, another tenant's, a key no longer held). An id
// sent before migration 00017 holds the event id alone: its position is
// (0, id), where that migration put the events it found.
func decodeEventID(k *seal.Keyring, tenant uuid.UUID, s string) (p store.Position, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) <= eventKeyIDLen+eventNonceLen {
		return store.Position{}, false
	}
	plain, err := k.Open(seal.Sealed{
		KeyID:      hex.EncodeToString(raw[:eventKeyIDLen]),
		Nonce:      raw[eventKeyIDLen : eventKeyIDLen+eventNonceLen],
		Ciphertext: raw[eventKeyIDLen+eventNonceLen:],
	}, eventIDAAD(tenant))
	switch {
	case err != nil:
		return store.Position{}, false
	case len(plain) == 8:
		p.ID = int64(binary.BigEndian.Uint64(plain))
	case len(plain) == 16:
		p.Tx, p.ID = binary.BigEndian.Uint64(plain), int64(binary.BigEndian.Uint64(plain[8:]))
	default:
		return store.Position{}, false
	}
	return p, p.ID >= 0
}
