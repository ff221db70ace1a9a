// Package pgtest gives tests a throwaway PostgreSQL: one database per
// test process, created at its first use and dropped by Main, and a fresh
// schema in it per call of New.
//
// The server is POSTERN_TEST_POSTGRES (a DSN naming a role that may
// create databases), by default the machine's PostgreSQL on
// 127.0.0.1:5432 as postgres, which .ci/run starts. Without one, a test
// is Unavailable: it fails when CI=true and skips elsewhere.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/testutil"
)

// DefaultServer is the PostgreSQL the tests use unless
// POSTERN_TEST_POSTGRES names another.
const DefaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func server() string {
	if dsn := os.Getenv("POSTERN_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return DefaultServer
}

var (
	once     sync.Once
	database string // this process's database
	dbDSN    string
	setupErr error
)

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func withDatabase(dsn, db string, params map[string]string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("POSTERN_TEST_POSTGRES: want a postgres:// URL: %w", err)
	}
	u.Path = "/" + db
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server())
	if err != nil {
		setupErr = fmt.Errorf("no PostgreSQL at %s: %w", server(), err)
		return
	}
	defer conn.Close(ctx)
	database = randomName("postern_test_")
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+database); err != nil {
		setupErr = fmt.Errorf("creating a test database: %w", err)
		return
	}
	dbDSN, setupErr = withDatabase(server(), database, nil)
}

// New returns the DSN of a new, empty schema in this process's test
// database (its search_path), dropped when t ends.
func New(t testing.TB) string {
	t.Helper()
	once.Do(setup)
	if setupErr != nil {
		testutil.Unavailable(t, "%v", setupErr)
	}
	schema := randomName("t_")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dbDSN); err == nil {
			conn.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`)
			conn.Close(ctx)
		}
	})
	dsn, err := withDatabase(server(), database, map[string]string{"search_path": schema})
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Main runs a package's tests and then drops the test database.
func Main(m *testing.M) int {
	code := m.Run()
	if database != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, server()); err == nil {
			conn.Exec(ctx, `DROP DATABASE IF EXISTS `+database+` WITH (FORCE)`)
			conn.Close(ctx)
		}
	}
	return code
}

// Server is the DSN of the test server's maintenance database, for a
// test that acts on a database from outside (stopping connections to it,
// say).
func Server() string { return server() }
