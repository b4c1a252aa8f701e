-- A batch of plain events is stored in one statement of data-modifying CTEs
-- (src/storage/pg_events.rs), which runs as a transaction of its own. A check
-- of that statement's own effects that fails must undo all of it: this raises
-- an error (SQLSTATE KX001) when `ok` is false, and the server then stores the
-- batch the general way.
CREATE FUNCTION kith_assert(ok BOOLEAN, what TEXT) RETURNS BOOLEAN
    LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'kith_assert: %', what USING ERRCODE = 'KX001';
    END IF;
    RETURN TRUE;
END
$$;
