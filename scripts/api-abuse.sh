#!/usr/bin/env bash
# The API under abuse: a local `invar watch` on a throwaway SQLite store, then
#   1. schemathesis (PyPI) over its /openapi.json with every check, as the admin;
#   2. no token, a wrong token and the read token on the write route (401, 401, 403);
#   3. a 10 MB body (413, never 5xx);
#   4. 200 concurrent connections over the read routes;
#   5. a slow client trickling its request head (cut at the header timeout) while /livez
#      keeps answering;
# and prints the figures RELIABILITY.md "The API under abuse" records. Exits 1 on any 5xx
# outside the store's own 503, on a watcher that died, or on a wrong status.
#
#   pip install schemathesis     # once
#   scripts/api-abuse.sh [MAX_EXAMPLES]     # default 50 per operation
#
# INVAR_BIN picks the binary (default: $CARGO_TARGET_DIR or target, debug/invar). Too slow for
# CI (minutes); run it by hand.
set -euo pipefail

max_examples=${1:-50}
bin=${INVAR_BIN:-${CARGO_TARGET_DIR:-target}/debug/invar}
[ -x "$bin" ] || { echo "no invar binary at $bin (cargo build -p invar)" >&2; exit 2; }
st=$(command -v schemathesis || command -v st || true)
[ -n "$st" ] || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 2; }

work=$(mktemp -d)
watch_pid=
cleanup() {
  [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

export INVAR_ADMIN_TOKEN=admin-$(openssl rand -hex 16) INVAR_READ_TOKEN=read-$(openssl rand -hex 16)
cat > "$work/invar.yaml" <<'EOF'
store: sqlite://h.db
server:
  admin_token: "${INVAR_ADMIN_TOKEN}"
  read_token: "${INVAR_READ_TOKEN}"
suites:
  quick: { select: "'quick' in tags" }
  sweep: { select: "true", schedule: "*/5 * * * *" }
invariants:
  - { id: A-1, title: passes, tags: [quick], probe: { values: [a, b] }, fail_when: count == 0.0 }
  - { id: A-2, title: fails, severity: critical, tags: [quick], probe: { values: [a] }, fail_when: count > 0.0 }
  - { id: A-3, title: warns, probe: { values: [a] }, fail_when: count > 5.0, warn_when: count > 0.0 }
EOF
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
(cd "$work" && INVAR_LOG=warn exec "$bin" watch --config invar.yaml --listen "127.0.0.1:$port" 2> watch.log) &
watch_pid=$!
for _ in $(seq 100); do curl -fs "$base/livez" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$base/livez" >/dev/null || { cat "$work/watch.log" >&2; echo "invar watch did not start" >&2; exit 2; }
# A little history for the read routes.
for s in quick all quick; do
  curl -fs -o /dev/null -X POST -H "Authorization: Bearer $INVAR_ADMIN_TOKEN" -d "{\"suite\":\"$s\"}" "$base/api/v1/runs"
done

fail=0
say() { printf '%-44s %s\n' "$1" "$2"; }
expect() { # what, wanted status, got status
  if [ "$2" = "$3" ]; then say "$1" "$3"; else say "$1" "$3 (wanted $2)"; fail=1; fi
}

echo "== schemathesis $("$st" --version 2>&1 | tail -n1) over $base/openapi.json (checks: all, max $max_examples examples per operation)"
t0=$(date +%s)
set +e
"$st" run "$base/openapi.json" --checks all --max-examples "$max_examples" \
  --header "Authorization: Bearer $INVAR_ADMIN_TOKEN" > "$work/st.txt" 2>&1
st_rc=$?
set -e
t1=$(date +%s)
cp "$work/st.txt" "${ABUSE_REPORT:-/dev/null}" 2>/dev/null || true
tail -n 40 "$work/st.txt"
say "schemathesis exit" "$st_rc ($((t1 - t0)) s)"
# Server errors, from the report (schemathesis names them "Server error").
st_5xx=$(grep -ci "server error" "$work/st.txt" || true)
say "schemathesis lines naming a server error" "$st_5xx"
# ST202 (a schema-valid request answered 4xx) is left for the rules a schema cannot say: a
# violations cursor whose row was pruned, `only` ids outside the named suite (both 422, as
# docs/WATCH.md states). Any other finding fails the script.
others=$(grep -oE '❌ ST[0-9]+' "$work/st.txt" | grep -v 'ST202' || true)
cases=$(grep -oE '[0-9]+ generated' "$work/st.txt" | head -n1 || true)
say "schemathesis cases" "${cases:-?}"
say "schemathesis findings besides ST202" "${others:-none}"
[ -z "$others" ] || fail=1

echo "== tokens on POST /api/v1/runs"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
expect "no token" 401 "$(code -X POST -d '{}' "$base/api/v1/runs")"
expect "a wrong token" 401 "$(code -X POST -H 'Authorization: Bearer wrong-0123456789abcdef' -d '{}' "$base/api/v1/runs")"
expect "the read token" 403 "$(code -X POST -H "Authorization: Bearer $INVAR_READ_TOKEN" -d '{}' "$base/api/v1/runs")"
expect "the admin token" 200 "$(code -X POST -H "Authorization: Bearer $INVAR_ADMIN_TOKEN" -d '{}' "$base/api/v1/runs")"
expect "the read token on GET /api/v1/runs" 200 "$(code -H "Authorization: Bearer $INVAR_READ_TOKEN" "$base/api/v1/runs")"

echo "== a 10 MB body"
head -c 10485760 /dev/zero | tr '\0' 'x' > "$work/big"
expect "POST /api/v1/runs, 10 MB" 413 "$(code -X POST -H "Authorization: Bearer $INVAR_ADMIN_TOKEN" --data-binary @"$work/big" "$base/api/v1/runs")"
expect "GET /api/v1/runs, 10 MB body" 200 "$(code -H "Authorization: Bearer $INVAR_READ_TOKEN" --data-binary @"$work/big" -X GET "$base/api/v1/runs")"

echo "== 200 concurrent connections, then a slow client"
BASE=$base PORT=$port READ=$INVAR_READ_TOKEN python3 - <<'EOF' || fail=1
import os, socket, threading, time, urllib.request, collections
base, port, token = os.environ["BASE"], int(os.environ["PORT"]), os.environ["READ"]
paths = ["/api/v1/runs", "/api/v1/invariants", "/api/v1/violations", "/api/v1/incidents",
         "/metrics", "/", "/healthz", "/readyz", "/livez"]
codes, lat, lock = collections.Counter(), [], threading.Lock()
start = threading.Barrier(200)
def one(i):
    req = urllib.request.Request(base + paths[i % len(paths)], headers={"Authorization": "Bearer " + token})
    start.wait()
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            c = r.status
            r.read()
    except urllib.error.HTTPError as e:
        c = e.code
    except Exception as e:
        c = type(e).__name__
    with lock:
        codes[c] += 1
        lat.append(time.monotonic() - t)
ts = [threading.Thread(target=one, args=(i,)) for i in range(200)]
t0 = time.monotonic()
for t in ts: t.start()
for t in ts: t.join()
lat.sort()
print(f"200 concurrent requests in {time.monotonic() - t0:.2f} s: {dict(codes)}; "
      f"p50 {lat[100] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
if any(not isinstance(c, int) or c >= 500 for c in codes):
    print("FAIL: a 5xx or a failed connection under concurrency"); raise SystemExit(1)

# A slow client: one byte of a request head every 200 ms, never the end.
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(0.2)
t0, how = time.monotonic(), "still open after 30 s"
head = b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
livez = []
for b in head:
    try:
        s.send(bytes([b]))
        d = s.recv(512)
        how = "closed" if not d else d.split(b"\r\n")[0].decode()
        break
    except socket.timeout:
        pass
    except OSError as e:
        how = f"closed ({e.__class__.__name__})"; break
    if len(livez) < 5:
        t = time.monotonic(); urllib.request.urlopen(base + "/livez", timeout=5).read()
        livez.append(time.monotonic() - t)
    if time.monotonic() - t0 > 30: break
cut = time.monotonic() - t0
print(f"slow client: {how} after {cut:.2f} s; /livez meanwhile max {max(livez) * 1000:.0f} ms")
if cut > 10: print("FAIL: the slow client was not cut"); raise SystemExit(1)
EOF

if kill -0 "$watch_pid" 2>/dev/null; then say "invar watch after all of it" "alive"; else say "invar watch after all of it" "DEAD"; fail=1; fi
if grep -qi "panicked" "$work/watch.log"; then say "panics in the watcher's log" "yes"; fail=1; else say "panics in the watcher's log" "none"; fi
exit $fail
