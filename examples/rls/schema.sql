-- Row-level security driven by Verity's verified principal (see docs/row-level-security.md).
--
-- Users see and change only their own notes, admins see and change all, a transaction
-- without a verified identity sees nothing. The identity is set per transaction by
-- verity.integrations.postgres_rls, which signs it (HMAC-SHA256 over the user id, the
-- roles and this transaction's id) with a key that only the table owner can read: SQL
-- that the application runs cannot forge it, not even with set_config() or SET.
--
-- Run as the table owner (a dedicated role, not a superuser, in production), with the
-- target schema first on the search_path:
--   psql "$OWNER_URL" -v ON_ERROR_STOP=1 -c 'set search_path to app' -f examples/rls/schema.sql
-- then install the key once (and on every rotation) with postgres_rls.install_key().
-- The application connects as verity_app: not the owner, no BYPASSRLS.

do $$
begin
    if not exists (select from pg_roles where rolname = 'verity_app') then
        create role verity_app nologin;  -- give it LOGIN and a password, or grant it to one
    end if;
exception when duplicate_object or unique_violation then
    null;  -- created concurrently
end
$$;

-- The verifier's HMAC key, as RFC 2104 inner and outer pads (one row). Owner only.
create table verity_rls_key (
    id integer primary key check (id = 1),
    inner_pad bytea not null check (length(inner_pad) = 64),
    outer_pad bytea not null check (length(outer_pad) = 64)
);
revoke all on verity_rls_key from public;

-- Functions are created with every name schema-qualified and search_path pinned, so
-- that objects created by the application (even temporary ones) cannot stand in.
do $do$
declare
    s text := quote_ident(current_schema());
begin
    -- Whether this transaction's identity was signed by the helper. SECURITY DEFINER:
    -- only it reads the key; it returns nothing but a boolean.
    execute format($f$
        create function %1$s.verity_identity_verified() returns boolean
        language sql stable security definer
        set search_path = pg_catalog, pg_temp
        as $body$
            select coalesce((
                select sha256(convert_to(encode(sha256(k.outer_pad || sha256(k.inner_pad
                        || convert_to(current_setting('verity.user_id', true), 'UTF8')
                        || '\x00'::bytea
                        || convert_to(current_setting('verity.roles', true), 'UTF8')
                        || '\x00'::bytea
                        || convert_to(pg_backend_pid()::text || '.'
                            || (extract(epoch from transaction_timestamp()) * 1000000)
                                ::bigint::text, 'UTF8'))), 'hex'), 'UTF8'))
                    = sha256(convert_to(current_setting('verity.signature', true), 'UTF8'))
                from %1$s.verity_rls_key k where k.id = 1
            ), false)
        $body$ $f$, s);

    -- The verified user id, or NULL.
    execute format($f$
        create function %1$s.verity_user_id() returns text
        language sql stable
        set search_path = pg_catalog, pg_temp
        as $body$
            select case when %1$s.verity_identity_verified()
                then nullif(current_setting('verity.user_id', true), '') end
        $body$ $f$, s);

    -- Whether the verified principal has a role.
    execute format($f$
        create function %1$s.verity_has_role(role text) returns boolean
        language sql stable
        set search_path = pg_catalog, pg_temp
        as $body$
            select case when %1$s.verity_identity_verified()
                then role = any(current_setting('verity.roles', true)::text[])
                else false end
        $body$ $f$, s);

    execute format('grant usage on schema %s to verity_app', s);
end
$do$;

-- The application's table: each row belongs to one user.
create table notes (
    id bigint generated always as identity primary key,
    owner text not null default verity_user_id(),
    body text not null
);
alter table notes enable row level security;
alter table notes force row level security;  -- the owner is bound by the policies too

-- Permissive policies are OR-ed. Sub-selects make PostgreSQL evaluate the identity once
-- per statement instead of once per row.
create policy notes_own_rows on notes
    using (owner = (select verity_user_id()))
    with check (owner = (select verity_user_id()));
create policy notes_admin_all on notes
    using ((select verity_has_role('admin')))
    with check ((select verity_has_role('admin')));

grant select, insert, update, delete on notes to verity_app;

-- No temporary objects for the application role. Injected SQL could otherwise leave a
-- temporary view or table named like one of yours on a pooled connection, and the next
-- user's unqualified query would run under her identity through it. rls_transaction()
-- drops leftovers (DISCARD TEMP) and reset_connection() wipes returned connections
-- (DISCARD ALL); this makes them impossible to create at all. TEMPORARY is granted to
-- PUBLIC by default, so it is revoked from PUBLIC: grant it by name to roles that need it.
-- Needs the database owner (a superuser or the owner); anyone else only gets the warning.
do $$
begin
    execute format('revoke temporary on database %I from public', current_database());
    execute format('revoke temporary on database %I from verity_app', current_database());
exception when insufficient_privilege then
    null;
end
$$;
do $$
begin
    if has_database_privilege('verity_app', current_database(), 'TEMPORARY') then
        raise warning 'verity_app can still create temporary objects: as the database '
            'owner, run: revoke temporary on database % from public', current_database();
    end if;
end
$$;
