-- Failed logins per client address, shared by the nodes, and the
-- addresses shut out.
CREATE TABLE login_failures (
	addr  text NOT NULL,
	at_ns bigint NOT NULL
);
CREATE INDEX login_failures_addr ON login_failures (addr, at_ns);

CREATE TABLE login_shutouts (
	addr     text PRIMARY KEY,
	until_ns bigint NOT NULL
);
