// Package changes tells each replica what any writer changed: the writers'
// triggers record a key per changed thing in the change log, a table
// written in the writing transaction (migration 00080), and one Feed per
// replica reads what was committed since its previous look, every Every,
// and hands it to its handlers (the events hub wakes streams, the read
// model drops entries). Nothing is sent from inside a writing transaction
// (a NOTIFY there would take Postgres's cluster-wide notify lock at commit,
// serialising the writers), and nothing committed is missed if no replica
// is looking: the next look finds it.
package changes

import (
	"context"
	"log/slog"
	"time"

	"lok8s.dev/provisioner/internal/store"
)

// DefaultEvery is how often a Feed looks: it bounds how late streams wake
// and how long another replica's write may go unnoticed.
const DefaultEvery = 10 * time.Millisecond

// Batch is what one look found.
type Batch struct {
	// Keys changed since the previous batch (see store.Changes).
	Keys []string
	// Lost: changes may have been missed (the first look, or changes
	// pruned before this feed saw them): drop whatever was derived from
	// earlier ones.
	Lost bool
	// AsOf: every change committed before it is in this batch or an
	// earlier one.
	AsOf time.Time
}

// Feed polls the change log for one replica.
type Feed struct {
	store    *store.Store
	logger   *slog.Logger
	handlers []func(Batch)
	// Every is how often the feed looks; set before Run.
	Every time.Duration
}

// NewFeed returns a feed reading st's change log once Run runs, handing
// each batch to every handler in turn.
func NewFeed(st *store.Store, logger *slog.Logger, handlers ...func(Batch)) *Feed {
	return &Feed{store: st, logger: logger, handlers: handlers, Every: DefaultEvery}
}

// Run looks every Every until ctx ends. A failed look is retried from the
// same cursor: nothing is lost, handlers only hear later.
func (f *Feed) Run(ctx context.Context) error {
	tick := time.NewTicker(f.Every)
	defer tick.Stop()
	var cursor store.ChangeCursor
	failing := false
	for {
		asOf := time.Now()
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		keys, next, lost, err := f.store.Changes(lctx, cursor)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if !failing {
				f.logger.WarnContext(ctx, "change feed: cannot read the change log; retrying", "error", err)
			}
			failing = true
		default:
			if failing {
				f.logger.InfoContext(ctx, "change feed: reading the change log again")
			}
			failing = false
			cursor = next
			b := Batch{Keys: keys, Lost: lost, AsOf: asOf}
			for _, h := range f.handlers {
				h(b)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
