-- What the mutations need: tenant_id filled from the transaction's tenant context, identifiers
-- unique per tenant (not per database, so row_level tenants do not collide), a task status check,
-- and the functions behind createProject and bulkCreateProjects.
CREATE FUNCTION fn_slug(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
RETURN lower(trim(BOTH '-' FROM regexp_replace(name, '[^a-zA-Z0-9]+', '-', 'g')));

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tb_organization', 'tb_member', 'tb_project', 'tb_task', 'tb_tenant_config'] LOOP
        EXECUTE format(
            'ALTER TABLE %I ALTER COLUMN tenant_id SET DEFAULT nullif(current_setting(''app.tenant_id'', true), '''')::uuid', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['tb_organization', 'tb_member', 'tb_project', 'tb_task'] LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t, t || '_identifier_key');
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (tenant_id, identifier)', t, t || '_tenant_identifier_key');
    END LOOP;
END $$;

ALTER TABLE tb_task ADD CONSTRAINT tb_task_status_check CHECK (status IN ('todo', 'in_progress', 'done'));

-- The seed's create_project: the organization must be visible to the caller's tenant (row-level
-- security hides every other tenant's), else "Organization not found" (SQLSTATE P0002, which
-- fraiseql reports as NOT_FOUND with this message).
CREATE FUNCTION fn_create_project(org_id uuid, name text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    org integer;
    created uuid;
BEGIN
    SELECT o.pk_org INTO org FROM tb_organization o WHERE o.id = fn_create_project.org_id;
    IF org IS NULL THEN
        RAISE EXCEPTION 'Organization not found' USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO tb_project (fk_org, name, identifier)
    VALUES (org, fn_create_project.name, fn_slug(fn_create_project.name))
    RETURNING id INTO created;
    RETURN created;
END $$;

-- bulk_create_projects: one INSERT for the whole list, whatever its length. A failing name (a
-- duplicate identifier) aborts the statement, so nothing is created.
CREATE FUNCTION fn_bulk_create_projects(org_id uuid, names text[]) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    org integer;
BEGIN
    SELECT o.pk_org INTO org FROM tb_organization o WHERE o.id = fn_bulk_create_projects.org_id;
    IF org IS NULL THEN
        RAISE EXCEPTION 'Organization not found' USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY
    INSERT INTO tb_project (fk_org, name, identifier)
    SELECT org, n.name, fn_slug(n.name)
    FROM unnest(fn_bulk_create_projects.names) WITH ORDINALITY AS n(name, ord)
    ORDER BY n.ord
    RETURNING id;
END $$;
