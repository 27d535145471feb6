package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// registerUUIDs makes conn send and read uuid.UUID values as their 16
// bytes. pgx does not know the type: it went through its driver.Valuer
// and sql.Scanner instead, formatting and parsing a string for every id
// sent or read (4% of the process's CPU per POST).
func registerUUIDs(_ context.Context, conn *pgx.Conn) error {
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "uuid", OID: pgtype.UUIDOID, Codec: uuidCodec{}})
	return nil
}

// uuidCodec is pgx's uuid codec, plus uuid.UUID and *uuid.UUID in the
// binary format (pgx would not dereference the pointer: it is a
// driver.Valuer too). Arrays and NULLs reach it through pgx's wrappers.
type uuidCodec struct{ pgtype.UUIDCodec }

func (c uuidCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		switch value.(type) {
		case uuid.UUID, *uuid.UUID:
			return encodeUUID{}
		}
	}
	return c.UUIDCodec.PlanEncode(m, oid, format, value)
}

func (c uuidCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*uuid.UUID); ok && format == pgtype.BinaryFormatCode {
		return scanUUID{}
	}
	return c.UUIDCodec.PlanScan(m, oid, format, target)
}

type encodeUUID struct{}

func (encodeUUID) Encode(value any, buf []byte) ([]byte, error) {
	id, ok := value.(uuid.UUID)
	if !ok {
		p := value.(*uuid.UUID)
		if p == nil {
			return nil, nil // NULL
		}
		id = *p
	}
	return append(buf, id[:]...), nil
}

type scanUUID struct{}

func (scanUUID) Scan(src []byte, dst any) error {
	if src == nil { // left as it is, as uuid.UUID's sql.Scanner leaves it
		return nil
	}
	if len(src) != len(uuid.UUID{}) {
		return fmt.Errorf("cannot scan a uuid of %d bytes", len(src))
	}
	copy(dst.(*uuid.UUID)[:], src)
	return nil
}
