-- MTA-STS policies of recipient domains, as last fetched, and the counts
-- of TLS reports not yet sent, one row per day and recipient domain.
CREATE TABLE sts_policies (
	domain text PRIMARY KEY,
	doc    jsonb NOT NULL
);

CREATE TABLE tls_reports (
	day    bigint NOT NULL, -- Unix seconds of midnight UTC
	domain text NOT NULL,
	doc    jsonb NOT NULL,
	PRIMARY KEY (day, domain)
);
