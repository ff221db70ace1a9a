package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/postgres"
	"github.com/postern/postern/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The whole storage contract, on a schema of its own per test in a
// throwaway database.
func TestContract(t *testing.T) {
	storetest.Run(t, harness{})
}

type harness struct{}

type opened struct {
	*postgres.Store
	dsn  string
	caps store.Caps
}

func open(t *testing.T, dsn string, caps store.Caps) *opened {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{Caps: caps, NodeName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &opened{Store: s, dsn: dsn, caps: caps}
}

func (harness) Open(t *testing.T, caps store.Caps) store.Backend {
	return open(t, pgtest.New(t), caps)
}

func (harness) Reopen(t *testing.T, b store.Backend) store.Backend {
	o := b.(*opened)
	o.Close()
	return open(t, o.dsn, o.caps)
}
