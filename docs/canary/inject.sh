#!/usr/bin/env bash
# Injects one fault; each breaks exactly one invariant. Reset with ./seed.sh.
#   leak-slot       S-01  a slot left in Redis for an execution that finished (e-3)
#   overbook        S-02  beta (max 1) gets a second running execution with its slot
#   no-ttl          S-03  a slot record loses its TTL
#   orphan-sharing  L-03  a sharing row for an agent that does not exist
#   reversal        E-02  a finished execution (e-3, success) is running again
set -euo pipefail
PG="${CANARY_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${CANARY_REDIS_URL:-redis://127.0.0.1:6379/0}"
sql() { psql "$PG" -v ON_ERROR_STOP=1 -qc "$1"; }
r() { redis-cli -u "$REDIS" "$@" >/dev/null; }
old=$(( $(date +%s) - 600 ))

case "${1:-}" in
  leak-slot)
    r ZADD canary:agent:slots:alpha "$old" e-3 ;;
  overbook)
    sql "INSERT INTO canary.executions VALUES ('e-5', 'beta', 'running', now() - interval '10 minutes')"
    r ZADD canary:agent:slots:beta "$old" e-5
    r SET canary:agent:slot:beta:e-5 '{"execution":"e-5"}' EX 3600 ;;
  no-ttl)
    r PERSIST canary:agent:slot:alpha:e-1 ;;
  orphan-sharing)
    sql "INSERT INTO canary.agent_sharing VALUES ('ghost-agent', 'smoketest@example.com')" ;;
  reversal)
    # A silent status flip: the row looks freshly running (S-01 would only flag its missing
    # slot once the 30s grace has passed).
    sql "UPDATE canary.executions SET status = 'running', updated_at = now() WHERE id = 'e-3'" ;;
  *)
    echo "usage: $0 leak-slot|overbook|no-ttl|orphan-sharing|reversal" >&2
    exit 64 ;;
esac
echo "injected: $1"
