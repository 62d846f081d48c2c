-- Aggregates (docs/schema.md, "Aggregates"): a task's estimate in story points (null until
-- estimated), summed and averaged per project and status by Query.tasksAggregate. v_task gains it
-- as a column (after those 0006 added, so the view is replaced in place with its options given
-- again) and as a key of `data`.
ALTER TABLE tb_task ADD COLUMN estimate INTEGER CHECK (estimate >= 0);

CREATE OR REPLACE VIEW v_task WITH (security_invoker = true) AS
SELECT
    t.id,
    jsonb_build_object(
        'id', t.id::text,
        'identifier', t.identifier,
        'title', t.title,
        'status', t.status,
        'created_at', t.created_at,
        'estimate', t.estimate
    ) AS data,
    t.tenant_id,
    t.fk_project,
    t.title,
    t.status,
    t.created_at,
    p.id AS project_id,
    t.estimate
FROM tb_task t
JOIN tb_project p ON p.pk_project = t.fk_project;

