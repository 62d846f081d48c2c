-- What PostGraphile v5 needs, on top of examples/saas/migrations/tenant, to answer the benchmark's
-- queries the way fraiseql does (see README.md beside this file). Idempotent: apply as the
-- tables' owner (or a superuser) after the migrations, any number of times:
--   psql -v ON_ERROR_STOP=1 -d <db> -f bench/postgraphile/computed.sql
-- Everything is SECURITY INVOKER (the default), so row-level security applies to what the
-- functions read and write: PostGraphile connects as the tenant role, never as the owner.
-- Nothing here changes a table, a view or an existing function; only the functions below and
-- their comments (PostGraphile "smart tags") are added.

-- Q1's memberCount: a computed column on tb_organization (PostGraphile exposes
-- tb_organization_<name>(tb_organization) as the field <name> of the TbOrganization type).
-- It counts like fraiseql's (SELECT count(*) FROM tb_member m WHERE m.fk_org = <row>.pk_org),
-- but as a function call per row (PostgreSQL does not inline a scalar SQL function whose body
-- has a FROM or a sub-query), which is how a PostGraphile computed column is usually written.
-- integer, not bigint: PostGraphile serialises bigint as its BigInt scalar (a JSON string),
-- integer as Int (a JSON number, as fraiseql's Int! memberCount is).
CREATE OR REPLACE FUNCTION tb_organization_member_count(o tb_organization) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT count(*)::integer FROM tb_member m WHERE m.fk_org = o.pk_org $$;
COMMENT ON FUNCTION tb_organization_member_count(tb_organization) IS
E'@notNull\nMembers of the organization, counted by PostgreSQL in the same statement.';

-- Q2's taskCount: the same, on tb_project.
CREATE OR REPLACE FUNCTION tb_project_task_count(p tb_project) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT count(*)::integer FROM tb_task t WHERE t.fk_project = p.pk_project $$;
COMMENT ON FUNCTION tb_project_task_count(tb_project) IS
E'@notNull\nTasks in the project, counted by PostgreSQL in the same statement.';

-- Q2b's root field projectsByOrg (README.md; Q2 itself follows the foreign key and needs nothing
-- here): the projects of one organization, found by the organization's uuid (as fraiseql's
-- projectsByOrg(orgId:) filters v_project.org_id). A plain SQL set-returning function,
-- so PostgreSQL inlines it into PostGraphile's statement, which adds ORDER BY / LIMIT from the
-- query's orderBy / first arguments (the smart tag `@behavior +order` gives it the orderBy
-- argument, which PostGraphile v5 leaves off functions by default; v4's @sortable is not read
-- by v5's default preset).
CREATE OR REPLACE FUNCTION projects_by_org(org_id uuid) RETURNS SETOF tb_project
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT p.* FROM tb_project p
    WHERE p.fk_org = (SELECT o.pk_org FROM tb_organization o WHERE o.id = projects_by_org.org_id)
$$;
COMMENT ON FUNCTION projects_by_org(uuid) IS
E'@behavior +order\nProjects of one organization (row-level security: only the caller''s tenant''s).';

-- M1: createProject(orgId, name) returning the created row (fraiseql's createProject calls
-- fn_create_project, then reads the project back). plpgsql, so the volatile call runs exactly once;
-- "Organization not found" (P0002) for an organization the tenant cannot see, as fraiseql.
CREATE OR REPLACE FUNCTION create_project(org_id uuid, name text) RETURNS tb_project
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    new_id uuid;
    created tb_project;
BEGIN
    new_id := fn_create_project(create_project.org_id, create_project.name);
    SELECT p.* INTO created FROM tb_project p WHERE p.id = new_id;
    RETURN created;
END $$;
COMMENT ON FUNCTION create_project(uuid, text) IS
E'@notNull\nCreates a project in one of the tenant''s organizations.';

-- tasksPage filters tasks on `status`, which no index leads: PostGraphile offers filters only on
-- indexed columns unless a smart tag allows one (fraiseql filters any field).
COMMENT ON COLUMN tb_task.status IS E'@behavior +filterBy';

-- PostGraphile's cursors order by the primary key after the chosen ordering (created_at DESC,
-- pk_task DESC), where fraiseql's use the type's key (created_at DESC, id DESC): its own keyset
-- index, the counterpart of the migrations' tb_task_project_created, so it pages by index too.
CREATE INDEX IF NOT EXISTS tb_task_project_created_pk ON tb_task (fk_project, created_at, pk_task);
