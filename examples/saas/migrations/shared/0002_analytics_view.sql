-- What the API reads (the tenant subgraph's Project.analytics, the analytics subgraph): the
-- events of the request's tenant only. fraiseql sets app.tenant_key in every transaction of a
-- request, on every database; without a tenant the view is empty.
CREATE VIEW v_analytics_event AS
SELECT
    e.event_id AS id,
    e.event_type,
    e.tenant_id,
    e.recorded_at,
    e.data ->> 'project_id' AS project_id,
    jsonb_build_object(
        'id', e.event_id,
        'event_type', e.event_type,
        'recorded_at', e.recorded_at,
        'data', e.data
    ) AS data
FROM tb_analytics_event e
WHERE e.tenant_id = current_setting('app.tenant_key', true);

CREATE INDEX tb_analytics_event_project ON tb_analytics_event (tenant_id, (data ->> 'project_id'), recorded_at);
