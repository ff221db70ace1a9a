-- DMARC aggregate reports of each domain, parsed or failed, with what
-- was received; and the sources marked known.
CREATE TABLE dmarc_reports (
	id          bigserial PRIMARY KEY,
	domain_id   bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
	org         text NOT NULL,
	external_id text NOT NULL,
	status      text NOT NULL,
	begin_ns    bigint NOT NULL,
	end_ns      bigint NOT NULL,
	doc         jsonb NOT NULL,
	received    bytea NOT NULL
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports (domain_id, end_ns);
-- A parsed report counts once.
CREATE UNIQUE INDEX dmarc_reports_once ON dmarc_reports (domain_id, org, external_id) WHERE status = 'parsed';

CREATE TABLE dmarc_known (
	domain_id bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
	ip        text NOT NULL,
	PRIMARY KEY (domain_id, ip)
);
