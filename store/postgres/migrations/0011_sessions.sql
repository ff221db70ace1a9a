-- The console's sessions, by the hash of their cookie's ID. A session
-- goes with its user and with the account it works in.
CREATE TABLE sessions (
	hash         text PRIMARY KEY,
	user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	account_id   bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	csrf         text NOT NULL,
	created_ns   bigint NOT NULL,
	last_seen_ns bigint NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_last_seen ON sessions (last_seen_ns);
