-- A realistic shop data set for the metrics benchmark, in schema :schema with :rows orders.
-- customers = rows/10, products = rows/100, payments = rows/2. Seeded defects: NULL and
-- duplicate emails, invalid countries and statuses, negative prices, orphan orders and
-- payments, duplicate payments, stale rows. Deterministic (no random()).
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS :schema CASCADE;
CREATE SCHEMA :schema;
SET search_path = :schema;

CREATE TABLE customers (
  id bigint PRIMARY KEY, email text, name text NOT NULL, country text,
  created_at timestamp NOT NULL, updated_at timestamp NOT NULL);
INSERT INTO customers
SELECT i,
       CASE WHEN i % 100 = 0 THEN NULL                      -- 1% missing
            WHEN i % 997 = 0 THEN 'dup' || (i % 7) || '@example.org'  -- duplicates
            ELSE 'c' || i || '@example.org' END,
       'Customer ' || i,
       CASE WHEN i % 499 = 0 THEN 'XX' ELSE (ARRAY['JP','US','DE','FR','GB'])[1 + i % 5] END,
       timestamp '2024-01-01' + (i % 700) * interval '1 day',
       (now() at time zone 'utc') - (i % 90) * interval '1 day'
FROM generate_series(1::bigint, (:rows / 10)) AS i;

CREATE TABLE products (
  id bigint PRIMARY KEY, sku text, name text, price_cents integer NOT NULL, active boolean NOT NULL);
INSERT INTO products
SELECT i, CASE WHEN i % 1000 = 0 THEN 'SKU-' || (i - 1) ELSE 'SKU-' || i END,
       CASE WHEN i % 5000 = 0 THEN NULL ELSE 'Product ' || i END,
       CASE WHEN i % 2000 = 0 THEN -100 ELSE 100 + (i * 37) % 9900 END, i % 10 <> 0
FROM generate_series(1::bigint, greatest(:rows / 100, 10)) AS i;

CREATE TABLE orders (
  id bigint PRIMARY KEY, order_number text, customer_id bigint, status text NOT NULL,
  total_cents integer NOT NULL, created_at timestamp, updated_at timestamp NOT NULL);
INSERT INTO orders
SELECT i, 'ORD-' || CASE WHEN i % 100000 = 0 THEN i - 1 ELSE i END,
       CASE WHEN i % 500 = 0 THEN NULL                      -- 0.2% missing
            WHEN i % 1009 = 0 THEN (:rows / 10) + i         -- orphans
            ELSE 1 + (i * 7919) % (:rows / 10) END,
       CASE WHEN i % 311 = 0 THEN 'unknown' ELSE (ARRAY['paid','pending','refunded','cancelled'])[1 + i % 4] END,
       CASE WHEN i % 50000 = 0 THEN -1 ELSE 100 + (i * 31) % 50000 END,
       (now() at time zone 'utc') - (i % 365) * interval '1 day',
       (now() at time zone 'utc') - (i % 400) * interval '1 hour'
FROM generate_series(1::bigint, :rows) AS i;

CREATE TABLE payments (
  id bigint PRIMARY KEY, order_id bigint NOT NULL, amount_cents integer NOT NULL, paid_at timestamp);
INSERT INTO payments
SELECT i,
       CASE WHEN i % 2003 = 0 THEN :rows + i                -- orphan payments
            WHEN i % 10007 = 0 THEN 2 * (i - 1)             -- duplicate payment for an order
            ELSE 2 * i END,
       CASE WHEN i % 40000 = 0 THEN 0 ELSE 100 + (i * 31) % 50000 END,
       CASE WHEN i % 50 = 0 THEN NULL ELSE (now() at time zone 'utc') - (i % 300) * interval '1 hour' END
FROM generate_series(1::bigint, :rows / 2) AS i;

ANALYZE;
