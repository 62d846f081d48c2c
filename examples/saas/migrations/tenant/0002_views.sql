-- Views with a JSONB data column (the seed's shape), plus the key columns the API joins and filters on.
CREATE VIEW v_organization AS
SELECT
    o.id,
    o.identifier,
    jsonb_build_object(
        'id', o.id::text,
        'identifier', o.identifier,
        'name', o.name,
        'subscription_tier', o.subscription_tier,
        'created_at', o.created_at
    ) AS data,
    o.tenant_id,
    o.pk_org,
    o.name,
    o.subscription_tier,
    o.created_at
FROM tb_organization o;

CREATE VIEW v_member AS
SELECT
    m.id,
    jsonb_build_object(
        'id', m.id::text,
        'identifier', m.identifier,
        'name', m.name,
        'email', m.email,
        'created_at', m.created_at
    ) AS data,
    m.tenant_id,
    m.fk_org
FROM tb_member m;

CREATE VIEW v_project AS
SELECT
    p.id,
    p.identifier,
    jsonb_build_object(
        'id', p.id::text,
        'identifier', p.identifier,
        'name', p.name,
        'org_id', o.id::text,
        'created_at', p.created_at
    ) AS data,
    p.tenant_id,
    p.fk_org,
    p.pk_project,
    o.id AS org_id,
    p.name,
    p.created_at
FROM tb_project p
JOIN tb_organization o ON o.pk_org = p.fk_org;

CREATE VIEW v_task AS
SELECT
    t.id,
    jsonb_build_object(
        'id', t.id::text,
        'identifier', t.identifier,
        'title', t.title,
        'status', t.status,
        'created_at', t.created_at
    ) AS data,
    t.tenant_id,
    t.fk_project
FROM tb_task t;

CREATE VIEW v_tenant_config AS
SELECT c.tenant_id, c.key, c.value FROM tb_tenant_config c;
