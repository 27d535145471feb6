package store

// Advisory lock ids: every pg_advisory lock the service, its tests and its
// migrations take, declared here so that no two uses share an id. Go code
// passes these; the SQL of migrations/ can only write numbers, and
// TestAdvisoryLocksAreDeclared checks each one it takes is declared here.
const (
	// LockMigrations serialises Migrate when several replicas start at once
	// ("lok8s" in ASCII).
	LockMigrations int64 = 0x6c6f6b3873
	// LockTestTemplate serialises making the tests' migrated template
	// database (dbtest).
	LockTestTemplate int64 = 7463
	// LockEventsCommitOrder is the lock lok8s_emit took until migration
	// 00017, so that events committed in id order (migrations 00006 and
	// 00017's Down).
	LockEventsCommitOrder int64 = 7465
)
