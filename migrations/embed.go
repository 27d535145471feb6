// Package migrations holds the service's SQL schema migrations, embedded so
// the binary migrates its own database. River's schema is migrated separately
// by rivermigrate (see internal/store).
package migrations

import "embed"

// FS holds the goose migrations, applied in file-name order.
//
//go:embed *.sql
var FS embed.FS
