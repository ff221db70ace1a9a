-- Postern's schema. Records are kept as the JSON of their store types
-- (doc), beside the columns that queries and constraints need; times that
-- order or key rows are Unix nanoseconds (bigint), exact as Go keeps them.

CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);

CREATE TABLE accounts (
	id  bigserial PRIMARY KEY,
	doc jsonb NOT NULL
);

CREATE TABLE servers (
	id         bigserial PRIMARY KEY,
	account_id bigint NOT NULL REFERENCES accounts (id),
	name_key   text NOT NULL, -- lower(Name): unique in an account
	doc        jsonb NOT NULL,
	UNIQUE (account_id, name_key)
);

CREATE TABLE tokens (
	hash       bytea PRIMARY KEY,
	kind       text NOT NULL,
	account_id bigint NOT NULL,
	server_id  bigint NOT NULL,
	prefix     text NOT NULL,
	doc        jsonb NOT NULL
);
CREATE INDEX tokens_account ON tokens (account_id);
CREATE INDEX tokens_server ON tokens (server_id);

CREATE TABLE domains (
	id         bigserial PRIMARY KEY,
	account_id bigint NOT NULL REFERENCES accounts (id),
	name       text NOT NULL,
	claim      boolean NOT NULL,
	doc        jsonb NOT NULL
);
-- One holder per name; claims on it are the other rows.
CREATE UNIQUE INDEX domains_holder ON domains (name) WHERE NOT claim;
CREATE INDEX domains_account ON domains (account_id);

CREATE TABLE account_events (
	seq        bigserial PRIMARY KEY,
	account_id bigint NOT NULL,
	doc        jsonb NOT NULL
);
CREATE INDEX account_events_account ON account_events (account_id, seq);

CREATE TABLE messages (
	server_id   bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	message_id  text NOT NULL,
	received_ns bigint NOT NULL,
	status      text NOT NULL,
	doc         jsonb NOT NULL,
	raw         bytea,
	PRIMARY KEY (server_id, message_id)
);
CREATE INDEX messages_by_time ON messages (server_id, received_ns DESC, message_id DESC);

CREATE TABLE events (
	seq        bigserial PRIMARY KEY,
	server_id  bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	message_id text NOT NULL,
	doc        jsonb NOT NULL
);
CREATE INDEX events_message ON events (server_id, message_id, seq);

CREATE TABLE queue (
	server_id  bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	message_id text NOT NULL,
	due_ns     bigint NOT NULL, -- when due; while leased, when the lease ends
	leased     boolean NOT NULL,
	locked_by  text,            -- the node holding the lease
	doc        jsonb NOT NULL,
	PRIMARY KEY (server_id, message_id)
);
CREATE INDEX queue_due ON queue (server_id, due_ns, message_id);

CREATE TABLE bounces (
	server_id  bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	id         bigint NOT NULL,
	seq        bigserial,
	message_id text NOT NULL,
	doc        jsonb NOT NULL,
	PRIMARY KEY (server_id, id)
);
CREATE INDEX bounces_by_seq ON bounces (server_id, seq DESC);
CREATE INDEX bounces_message ON bounces (server_id, message_id);

CREATE TABLE suppressions (
	server_id bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	email     text NOT NULL,
	doc       jsonb NOT NULL,
	PRIMARY KEY (server_id, email)
);

CREATE TABLE stats (
	server_id bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	day       date NOT NULL,
	stream    text NOT NULL,
	tag       text NOT NULL,
	counter   text NOT NULL,
	n         bigint NOT NULL,
	PRIMARY KEY (server_id, day, stream, tag, counter)
);
