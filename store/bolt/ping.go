package bolt

import bbolt "go.etcd.io/bbolt"

// Ping commits an empty write transaction through the group committer,
// as every write does, and returns its error: nil means the store can be
// written now (the file is open, a commit reaches the disk, and nothing
// such as Options.BeforeCommit refuses it). It is the readiness check.
func (s *Store) Ping() error {
	return s.update(func(*bbolt.Tx) error { return nil })
}
