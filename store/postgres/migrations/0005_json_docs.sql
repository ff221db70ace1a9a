-- Messages, their events and queue entries are written once per message
-- and read whole: kept as json (text, validated) rather than jsonb, which
-- PostgreSQL must take apart on every insert.
ALTER TABLE messages ALTER COLUMN doc TYPE json;
ALTER TABLE events ALTER COLUMN doc TYPE json;
ALTER TABLE queue ALTER COLUMN doc TYPE json;
