package store

// Retention: each server keeps its messages for Server.RetentionDays
// days after their receipt; PurgeExpired deletes what is older.
const (
	DefaultRetentionDays = 45
	MinRetentionDays     = 1
	MaxRetentionDays     = 365

	// DefaultPurgeBatch is how many messages one purge transaction looks
	// at, at most: small enough that a purge never holds the store's
	// writer for long (intake shares it), large enough to keep up.
	DefaultPurgeBatch = 200
)

// Retention is the server's retention in days: RetentionDays, or the
// default for servers stored before retention existed.
func (srv Server) Retention() int {
	if srv.RetentionDays <= 0 {
		return DefaultRetentionDays
	}
	return srv.RetentionDays
}
