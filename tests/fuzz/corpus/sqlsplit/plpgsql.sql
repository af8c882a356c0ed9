-- opsctl:no-transaction
CREATE OR REPLACE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE $inner$INSERT INTO log VALUES ('x; y')$inner$;
    RETURN NEW;
END;
$$;
CREATE INDEX CONCURRENTLY log_idx ON log (created_at);
