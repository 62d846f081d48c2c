-- Demo data for the walkthrough, for one tenant; idempotent (fixed identifiers). The walkthrough
-- creates "Acme Corp" itself with createOrganization.
-- psql -v tenant_id=<uuid from the registry> -f seed.sql   (in the tenant's database/schema)
INSERT INTO tb_organization (identifier, tenant_id, name, subscription_tier) VALUES
    ('acme-labs', :'tenant_id', 'Acme Labs', 'pro'),
    ('acme-research', :'tenant_id', 'Acme Research', 'free')
ON CONFLICT (tenant_id, identifier) DO NOTHING;
INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
SELECT 'acme-member-' || i, o.tenant_id, o.pk_org, 'Member ' || i, 'member' || i || '@acme.test'
FROM tb_organization o, generate_series(1, 5) i WHERE o.identifier = 'acme-labs'
ON CONFLICT (tenant_id, identifier) DO NOTHING;
INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
SELECT 'acme-project-' || i, o.tenant_id, o.pk_org, 'Project ' || lpad(i::text, 2, '0')
FROM tb_organization o, generate_series(1, 3) i WHERE o.identifier = 'acme-labs'
ON CONFLICT (tenant_id, identifier) DO NOTHING;
INSERT INTO tb_task (identifier, tenant_id, fk_project, title)
SELECT p.identifier || '-task-' || i, p.tenant_id, p.pk_project, 'Task ' || i
FROM tb_project p, generate_series(1, 4) i WHERE p.identifier LIKE 'acme-project-%'
ON CONFLICT (tenant_id, identifier) DO NOTHING;
INSERT INTO tb_tenant_config (tenant_id, key, value) VALUES
    (:'tenant_id', 'theme', '"dark"'), (:'tenant_id', 'max_projects', '100')
ON CONFLICT (tenant_id, key) DO NOTHING;
