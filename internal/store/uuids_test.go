package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/store"
)

// TestUUIDsAsTheirBytes: a pool from store.Connect sends and reads a
// uuid.UUID as its 16 bytes, without the string pgx made of it through its
// driver.Valuer and sql.Scanner; ids round-trip as before, bare, through
// pointers (NULL too), in arrays and into other targets. Not parallel:
// it counts allocations.
func TestUUIDsAsTheirBytes(t *testing.T) {
	ctx := context.Background()
	pool, err := store.Connect(ctx, dbtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()

	id, other := uuid.New(), uuid.New()
	var (
		got      uuid.UUID
		ptr      *uuid.UUID
		null     *uuid.UUID
		nullable uuid.NullUUID
		text     string
		ids      []uuid.UUID
	)
	if err := conn.QueryRow(ctx, `SELECT $1::uuid, $2::uuid, NULL::uuid, $1::uuid, $1::uuid::text, $3::uuid[]`,
		id, &other, []uuid.UUID{id, other}).Scan(&got, &ptr, &null, &nullable, &text, &ids); err != nil {
		t.Fatal(err)
	}
	if got != id || ptr == nil || *ptr != other || null != nil || !nullable.Valid || nullable.UUID != id ||
		text != id.String() || len(ids) != 2 || ids[0] != id || ids[1] != other {
		t.Fatalf("round trip of %s, %s: %s, %v, %v, %+v, %q, %v", id, other, got, ptr, null, nullable, text, ids)
	}
	var nilID *uuid.UUID
	var isNull bool
	if err := conn.QueryRow(ctx, `SELECT $1::uuid IS NULL`, nilID).Scan(&isNull); err != nil || !isNull {
		t.Fatalf("a nil *uuid.UUID sent %v (%v), want NULL", !isNull, err)
	}
	var fresh uuid.UUID
	if err := conn.QueryRow(ctx, `SELECT NULL::uuid`).Scan(&fresh); err != nil || fresh != uuid.Nil {
		t.Fatalf("NULL scanned into a uuid.UUID: %s (%v), want uuid.Nil as its sql.Scanner leaves it", fresh, err)
	}

	// The string form costs allocations each way; the bytes none.
	m := conn.Conn().TypeMap()
	buf := make([]byte, 0, 64)
	var src []byte
	if allocs := testing.AllocsPerRun(100, func() {
		src, err = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id, buf[:0])
	}); err != nil || allocs > 1 { // 1: id boxed into the interface
		t.Errorf("encoding a uuid.UUID: %v allocations (%v), want at most 1", allocs, err)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		_, err = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, &id, buf[:0])
	}); err != nil || allocs > 0 {
		t.Errorf("encoding a *uuid.UUID: %v allocations (%v), want none", allocs, err)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		err = m.Scan(pgtype.UUIDOID, pgtype.BinaryFormatCode, src, &got)
	}); err != nil || allocs > 0 || got != id {
		t.Errorf("scanning a uuid.UUID: %v allocations, %s (%v), want none, %s", allocs, got, err, id)
	}
}
