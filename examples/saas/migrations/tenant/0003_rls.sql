-- Row-level security on every table: the second wall behind tenant routing.
-- An unset app.tenant_id reads back as '' (not NULL) on a pooled connection that set it before, so
-- nullif() makes "unset" mean "no rows"; the sub-select makes PostgreSQL evaluate it once per statement.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tb_organization', 'tb_member', 'tb_project', 'tb_task', 'tb_tenant_config'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT nullif(current_setting(''app.tenant_id'', true), '''')::uuid)) '
            'WITH CHECK (tenant_id = (SELECT nullif(current_setting(''app.tenant_id'', true), '''')::uuid))', t);
    END LOOP;
END $$;
-- Views run with the caller's rights so the policies above apply to reads through them (PostgreSQL 15+).
ALTER VIEW v_organization SET (security_invoker = true);
ALTER VIEW v_member SET (security_invoker = true);
ALTER VIEW v_project SET (security_invoker = true);
ALTER VIEW v_task SET (security_invoker = true);
ALTER VIEW v_tenant_config SET (security_invoker = true);
