package store

import (
	"context"
	"fmt"
)

// ClustersByPhase counts the live clusters of all tenants by phase, for
// the service's metrics.
func (s *Store) ClustersByPhase(ctx context.Context) (map[string]float64, error) {
	return s.countBy(ctx, `SELECT phase, count(*) FROM clusters WHERE deleted_at IS NULL GROUP BY phase`)
}

// JobsByState counts River's jobs by state (available, running, scheduled
// for their next check, retryable, …), for the service's metrics.
func (s *Store) JobsByState(ctx context.Context) (map[string]float64, error) {
	return s.countBy(ctx, `SELECT state::text, count(*) FROM river_job GROUP BY state`)
}

func (s *Store) countBy(ctx context.Context, query string) (map[string]float64, error) {
	rows, err := s.pool.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	defer rows.Close()
	counts := map[string]float64{}
	for rows.Next() {
		var key string
		var n int64
		if err := rows.Scan(&key, &n); err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		counts[key] = float64(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	return counts, nil
}
