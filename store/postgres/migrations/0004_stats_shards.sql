-- A server's counters of a day were one row that every concurrent
-- enqueue of that server updated, so their transactions took turns on
-- its lock. Each connection now adds to a shard of its own (its backend
-- pid modulo 16); reads sum the shards.
ALTER TABLE stats ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE stats DROP CONSTRAINT stats_pkey;
ALTER TABLE stats ADD PRIMARY KEY (server_id, day, stream, tag, counter, shard);
