-- Subscriptions filter a task board by project: v_task gains the project's id (a column after
-- those 0005 added, so the view is replaced in place; its options are given again, the policies of 0003
-- still apply through security_invoker).
CREATE OR REPLACE VIEW v_task WITH (security_invoker = true) AS
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
    t.fk_project,
    t.title,
    t.status,
    t.created_at,
    p.id AS project_id
FROM tb_task t
JOIN tb_project p ON p.pk_project = t.fk_project;
