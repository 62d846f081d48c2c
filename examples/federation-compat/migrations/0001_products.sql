-- The compatibility suite's fixed data (the reference implementation's, in
-- apollo-federation-subgraph-compatibility implementations/apollo-server), as tables and views
-- with a JSON `data` column, like any fraiseql schema.
CREATE TABLE tb_user (
    email text PRIMARY KEY,
    name text NOT NULL,
    total_products_created int
);
INSERT INTO tb_user VALUES ('support@apollographql.com', 'Jane Smith', 1337);

CREATE TABLE tb_product (
    id text PRIMARY KEY,
    sku text,
    package text,
    variation text,
    created_by text REFERENCES tb_user (email),
    notes text
);
INSERT INTO tb_product VALUES
    ('apollo-federation', 'federation', '@apollo/federation', 'OSS', 'support@apollographql.com', NULL),
    ('apollo-studio', 'studio', '', 'platform', 'support@apollographql.com', NULL);

CREATE TABLE tb_inventory (id text PRIMARY KEY);
INSERT INTO tb_inventory VALUES ('apollo-oss');

CREATE TABLE tb_deprecated_product (
    sku text NOT NULL,
    package text NOT NULL,
    reason text,
    created_by text REFERENCES tb_user (email),
    inventory_id text REFERENCES tb_inventory (id),
    PRIMARY KEY (sku, package)
);
INSERT INTO tb_deprecated_product VALUES
    ('apollo-federation-v1', '@apollo/federation-v1', 'Migrate to Federation V2', 'support@apollographql.com', 'apollo-oss');

CREATE TABLE tb_product_research (
    case_number text PRIMARY KEY,
    description text,
    outcome text,
    product_id text REFERENCES tb_product (id)
);
INSERT INTO tb_product_research VALUES
    ('1234', 'Federation Study', NULL, 'apollo-federation'),
    ('1235', 'Studio Study', NULL, 'apollo-studio');

CREATE INDEX ON tb_product (sku, package);
CREATE INDEX ON tb_product_research (product_id);
CREATE INDEX ON tb_deprecated_product (inventory_id);

-- A user as a product embeds it (what @provides promises: totalProductsCreated comes along).
CREATE FUNCTION fn_user_json(e text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('email', u.email, 'name', u.name, 'total_products_created', u.total_products_created)
    FROM tb_user u WHERE u.email = e
$$;

CREATE VIEW v_product AS
SELECT p.id, p.sku, p.package,
       jsonb_build_object(
           'id', p.id, 'sku', p.sku, 'package', p.package,
           'variation', jsonb_build_object('id', p.variation),
           'dimensions', jsonb_build_object('size', 'small', 'weight', 1, 'unit', 'kg'),
           'created_by', fn_user_json(p.created_by),
           'notes', p.notes) AS data
FROM tb_product p;

CREATE VIEW v_deprecated_product AS
SELECT d.sku, d.package, d.inventory_id,
       jsonb_build_object('sku', d.sku, 'package', d.package, 'reason', d.reason,
                          'created_by', fn_user_json(d.created_by)) AS data
FROM tb_deprecated_product d;

CREATE VIEW v_product_research AS
SELECT r.case_number, r.product_id,
       jsonb_build_object('study', jsonb_build_object('case_number', r.case_number, 'description', r.description),
                          'outcome', r.outcome) AS data
FROM tb_product_research r;

CREATE VIEW v_inventory AS
SELECT i.id, jsonb_build_object('id', i.id) AS data FROM tb_inventory i;
