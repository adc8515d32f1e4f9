#!/usr/bin/env bash
# Seeds (or resets to) healthy canary data: Postgres schema `canary`, Redis keys `canary:*`.
set -euo pipefail
PG="${CANARY_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${CANARY_REDIS_URL:-redis://127.0.0.1:6379/0}"

psql "$PG" -v ON_ERROR_STOP=1 -q <<'SQL'
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS canary CASCADE;
CREATE SCHEMA canary;
CREATE TABLE canary.agents (
  name text PRIMARY KEY,
  max_parallel_tasks int NOT NULL
);
CREATE TABLE canary.executions (
  id text PRIMARY KEY,
  agent_name text NOT NULL,
  status text NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE TABLE canary.agent_sharing (
  agent_name text NOT NULL,
  shared_with_email text NOT NULL
);
INSERT INTO canary.agents VALUES ('alpha', 2), ('beta', 1);
-- Running rows became running ten minutes ago (well past S-01's grace).
INSERT INTO canary.executions VALUES
  ('e-1', 'alpha', 'running', now() - interval '10 minutes'),
  ('e-2', 'beta',  'running', now() - interval '10 minutes'),
  ('e-3', 'alpha', 'success', now() - interval '20 minutes'),
  ('e-4', 'beta',  'queued',  now() - interval '1 minute');
INSERT INTO canary.agent_sharing VALUES ('alpha', 'ops@example.com'), ('beta', 'dev@example.com');
SQL

r() { redis-cli -u "$REDIS" "$@" >/dev/null; }
# Drop every canary key (SCAN, never KEYS).
redis-cli -u "$REDIS" --scan --pattern 'canary:*' | while read -r k; do r DEL "$k"; done
taken=$(( $(date +%s) - 600 ))
r ZADD canary:agent:slots:alpha "$taken" e-1
r ZADD canary:agent:slots:beta "$taken" e-2
r SET canary:agent:slot:alpha:e-1 '{"execution":"e-1"}' EX 3600
r SET canary:agent:slot:beta:e-2 '{"execution":"e-2"}' EX 3600
echo "seeded: healthy canary data in schema canary and redis canary:*"
