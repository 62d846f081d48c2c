-- Columns and indexes for `where` filters and connections (docs/schema.md, "Indexing filtered
-- fields"): a filter on a field whose data key has a same-named column in the view compares that
-- column, so an index on the table's column serves it.
--
-- v_task gains the task's title, status and creation time as columns, and the project's id
-- (tasksByProject(projectId:)): a LEFT JOIN on the project's primary key, which PostgreSQL
-- leaves out of plans that do not read project_id.
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
    t.pk_task,
    t.title,
    t.status,
    t.created_at,
    p.id AS project_id
FROM tb_task t
LEFT JOIN tb_project p ON p.pk_project = t.fk_project;

-- A project's tasks newest first, by keyset: (fk_project, created_at, id) serves
-- `ORDER BY created_at DESC, id DESC` and `(created_at, id) < (cursor)` as one index range.
CREATE INDEX tb_task_project_created ON tb_task (fk_project, created_at, id);
-- Tasks by title (`where: {title: {eq: ...}}`).
CREATE INDEX tb_task_title ON tb_task (title);
