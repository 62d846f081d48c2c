-- The seed's tables. tenant_id is on every table so row-level security can guard each one.
CREATE TABLE tb_organization (
    pk_org SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    identifier TEXT NOT NULL UNIQUE,
    tenant_id UUID NOT NULL,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    subscription_tier TEXT NOT NULL DEFAULT 'free'
);
CREATE INDEX tb_organization_tenant_name ON tb_organization (tenant_id, name);

CREATE TABLE tb_member (
    pk_member SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    identifier TEXT NOT NULL UNIQUE,
    tenant_id UUID NOT NULL,
    fk_org INTEGER NOT NULL REFERENCES tb_organization(pk_org),
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tb_member_fk_org ON tb_member (fk_org);

CREATE TABLE tb_project (
    pk_project SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    identifier TEXT NOT NULL UNIQUE,
    tenant_id UUID NOT NULL,
    fk_org INTEGER NOT NULL REFERENCES tb_organization(pk_org),
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tb_project_fk_org ON tb_project (fk_org, name);

CREATE TABLE tb_task (
    pk_task SERIAL PRIMARY KEY,
    id UUID DEFAULT gen_random_uuid() NOT NULL UNIQUE,
    identifier TEXT NOT NULL UNIQUE,
    tenant_id UUID NOT NULL,
    fk_project INTEGER NOT NULL REFERENCES tb_project(pk_project),
    title TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'todo',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tb_task_fk_project ON tb_task (fk_project);

CREATE TABLE tb_tenant_config (
    tenant_id UUID NOT NULL,
    key TEXT NOT NULL,
    value JSONB NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
