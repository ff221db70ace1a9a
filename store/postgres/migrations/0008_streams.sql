-- Servers' message streams (the outbound stream every server has is not
-- stored), suppressions that hold in one stream only, and the key of
-- unsubscribe links.
CREATE TABLE streams (
	server_id bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	id        text NOT NULL,
	doc       jsonb NOT NULL,
	PRIMARY KEY (server_id, id)
);

CREATE TABLE stream_suppressions (
	server_id bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	stream    text NOT NULL,
	email     text NOT NULL,
	doc       jsonb NOT NULL,
	PRIMARY KEY (server_id, stream, email)
);

CREATE TABLE installation_keys (
	name text PRIMARY KEY,
	key  bytea NOT NULL
);
