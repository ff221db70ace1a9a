-- Servers' webhooks, the outbox of calls to make (filed in the
-- transaction that records the events), and each webhook's last calls.
CREATE TABLE webhooks (
	id        bigserial PRIMARY KEY,
	server_id bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	stream    text NOT NULL,
	doc       jsonb NOT NULL
);
CREATE INDEX webhooks_server ON webhooks (server_id);

CREATE TABLE webhook_outbox (
	id         bigserial PRIMARY KEY,
	webhook_id bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	due_ns     bigint NOT NULL,
	locked_by  text, -- the node holding the call's lease, NULL when none
	doc        jsonb NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (due_ns);

CREATE TABLE webhook_attempts (
	id         bigserial PRIMARY KEY,
	webhook_id bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	doc        jsonb NOT NULL
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, id);
