-- The console's people, their memberships of accounts, and one-time
-- sign-in links.
CREATE TABLE users (
	id    bigserial PRIMARY KEY,
	email text NOT NULL UNIQUE,
	doc   jsonb NOT NULL
);

CREATE TABLE memberships (
	account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	doc        jsonb NOT NULL,
	PRIMARY KEY (account_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE signin_tokens (
	hash       text PRIMARY KEY,
	user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	expires_ns bigint NOT NULL
);

-- What was done once for the installation: a week's digest sent, an
-- alert given.
CREATE TABLE marks (
	key   text PRIMARY KEY,
	at_ns bigint NOT NULL
);
