-- A server's limits, counted in the transaction that files a message:
-- raises PT001 past the rate per minute, PT002 past the daily quota.
CREATE FUNCTION postern_check_limits(p_server bigint, p_since bigint, p_per_minute int, p_day date, p_per_day int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF p_per_minute > 0 AND (SELECT count(*) FROM (SELECT 1 FROM messages
			WHERE server_id = p_server AND received_ns >= p_since LIMIT p_per_minute) recent) >= p_per_minute THEN
		RAISE EXCEPTION 'rate limit of % messages per minute', p_per_minute USING ERRCODE = 'PT001';
	END IF;
	IF p_per_day > 0 AND (SELECT coalesce(sum(n), 0) FROM stats
			WHERE server_id = p_server AND day = p_day AND counter = 'Sent') >= p_per_day THEN
		RAISE EXCEPTION 'daily quota of % messages', p_per_day USING ERRCODE = 'PT002';
	END IF;
END $$;
