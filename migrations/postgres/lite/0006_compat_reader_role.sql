-- The read side's role: `brotr_reader` may SELECT what `brotr-probe api` serves, and nothing
-- else (no INSERT, UPDATE, DELETE, no function that writes). The api logs in as a role that is a
-- member of it, e.g. `CREATE ROLE brotr_api LOGIN PASSWORD '…' IN ROLE brotr_reader`.
-- Roles belong to the server, not the database: created once, granted in every database
-- migrated. Created only when the migrating user may create roles (a superuser or CREATEROLE);
-- otherwise the migration goes on and an administrator runs these statements
-- (docs/operations.md).
-- "compat" in the file name: binaries that predate it keep working against it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'brotr_reader') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'role brotr_reader not created: % may not create roles', current_user;
            RETURN;
        END IF;
        -- Two databases of one server migrating at once may both get here: one creates it.
        BEGIN
            CREATE ROLE brotr_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO brotr_reader', current_schema());
    GRANT SELECT ON brotr_schema, _sqlx_migrations, relay, event, event_relay, metadata,
        relay_metadata, service_state, relay_metadata_latest, relay_metadata_latest_by_monitor,
        event_stats, relay_stats, kind_counts, kind_counts_by_relay, pubkey_counts,
        pubkey_counts_by_relay
        TO brotr_reader;
END
$$;
