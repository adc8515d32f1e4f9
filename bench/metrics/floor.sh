#!/usr/bin/env bash
# The raw-SQL floor: the minimal fused queries for the same 24 checks — one query per table
# plus one anti-join per reference — all run in parallel with psql. A reference check counts
# distinct keys (examined and missing), as invar defines it (docs/DEFINITIONS.md); the
# payments query's count(DISTINCT order_id) is its examined count. Usage: floor.sh SCHEMA
set -euo pipefail
s="$1"
q() { psql -h 127.0.0.1 -U postgres -d test -XAtq -c "$1" >/dev/null & }
q "SELECT count(*), count(*) - count(email), count(email) - count(DISTINCT email),
          sum(CASE WHEN country IS NOT NULL AND country NOT IN ('JP','US','DE','FR','GB') THEN 1 ELSE 0 END),
          EXTRACT(EPOCH FROM now()) - EXTRACT(EPOCH FROM max(updated_at)) FROM $s.customers"
q "SELECT count(*), count(sku) - count(DISTINCT sku), min(price_cents), count(*) - count(name) FROM $s.products"
q "SELECT count(*), count(*) - count(customer_id),
          sum(CASE WHEN status NOT IN ('paid','pending','refunded','cancelled') THEN 1 ELSE 0 END),
          EXTRACT(EPOCH FROM now()) - EXTRACT(EPOCH FROM max(updated_at)), min(total_cents),
          count(order_number) - count(DISTINCT order_number), avg(total_cents), count(*) - count(created_at),
          count(DISTINCT customer_id)
   FROM $s.orders"
q "SELECT count(*), count(*) - count(paid_at), count(order_id) - count(DISTINCT order_id), min(amount_cents),
          EXTRACT(EPOCH FROM now()) - EXTRACT(EPOCH FROM max(paid_at)) FROM $s.payments"
q "SELECT count(DISTINCT o.customer_id) FROM $s.orders o WHERE o.customer_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM $s.customers c WHERE c.id = o.customer_id)"
q "SELECT count(DISTINCT p.order_id) FROM $s.payments p WHERE NOT EXISTS (SELECT 1 FROM $s.orders o WHERE o.id = p.order_id)"
wait
