-- Columns and indexes for `where` filters and connections (docs/schema.md, "Indexing filtered
-- fields"): a filter on a field whose data key has a same-named column in the view compares that
-- column, so an index on the table's column serves it.
--
-- v_task gains the task's title, status and creation time as columns.
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
    t.created_at
FROM tb_task t;

-- A project's tasks newest first, by keyset (Project.tasksConnection): (fk_project, created_at,
-- id) serves `WHERE fk_project = ... ORDER BY created_at DESC, id DESC` and the cursor's
-- `(created_at, id) < (...)` as one index range, read backwards.
CREATE INDEX tb_task_project_created ON tb_task (fk_project, created_at, id);
-- Tasks by title (`where: {title: {eq: ...}}`).
CREATE INDEX tb_task_title ON tb_task (title);
