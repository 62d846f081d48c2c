-- The shared analytics database: one row per event, written by the analytics_sync consumer
-- group. event_id is unique, so a redelivered message is written once.
CREATE TABLE tb_analytics_event (
    pk_analytics_event bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    tenant_id text NOT NULL,
    data jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tb_analytics_event_tenant ON tb_analytics_event (tenant_id, recorded_at);
