-- Demo data for the walkthrough; idempotent (fixed identifiers, ON CONFLICT DO NOTHING).
INSERT INTO tb_organization (identifier, tenant_id, name, subscription_tier) VALUES
    ('acme-corp', '11111111-1111-4111-8111-111111111111', 'Acme Corp', 'pro'),
    ('acme-labs', '11111111-1111-4111-8111-111111111111', 'Acme Labs', 'free')
ON CONFLICT (identifier) DO NOTHING;
INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
SELECT 'acme-member-' || i, o.tenant_id, o.pk_org, 'Member ' || i, 'member' || i || '@acme.test'
FROM tb_organization o, generate_series(1, 5) i WHERE o.identifier = 'acme-corp'
ON CONFLICT (identifier) DO NOTHING;
INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
SELECT 'acme-project-' || i, o.tenant_id, o.pk_org, 'Project ' || lpad(i::text, 2, '0')
FROM tb_organization o, generate_series(1, 3) i WHERE o.identifier = 'acme-corp'
ON CONFLICT (identifier) DO NOTHING;
INSERT INTO tb_task (identifier, tenant_id, fk_project, title)
SELECT p.identifier || '-task-' || i, p.tenant_id, p.pk_project, 'Task ' || i
FROM tb_project p, generate_series(1, 4) i WHERE p.identifier LIKE 'acme-project-%'
ON CONFLICT (identifier) DO NOTHING;
