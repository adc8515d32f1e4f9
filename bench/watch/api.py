#!/usr/bin/env python3
"""`invar watch`: idle resident memory, and `GET /api/v1/violations` latency and throughput
under `wrk` with 100,000 stored violations — on the SQLite store and, optionally, Postgres.

    python3 bench/watch/api.py [--stores sqlite,postgres] [--duration 15] [--connections 16]
                               [--threads 2] [--violations 100000] [--bin PATH] [--write]

What it does, per store:
  1. A temp dir with a SQLite *data source* (`bad`: 200 rows) and an `invar.yaml` with 20
     invariants whose SQL probe returns every row of `bad` (no `fail_when`: every row is a
     violation). A report keeps the first 100 violations of an invariant (VIOLATIONS_CAP) and
     the store records exactly those, so one run records 20 × 100 = 2,000 violations; 50
     recorded `invar run`s make 100,000. Severities rotate critical/major/minor.
     No `suites:` and no `schedule`, so `invar watch` runs nothing in the background (only its
     2 s alert-outbox poll, with no sinks configured).
  2. Seeds by running `invar run` N times (records every run), then checks the count with
     `GET /api/v1/violations/stats` (and sqlite3 / psql directly).
  3. Starts `invar watch --listen 127.0.0.1:PORT`, waits for `/healthz`, sleeps --idle
     seconds, reads VmRSS / VmHWM from /proc/PID/status (idle).
  4. Runs `wrk -tT -cC -dDs --latency -H 'Authorization: Bearer …'` against:
       first page      /api/v1/violations?limit=50   (also once with 1 connection: -t1 -c1)
       deep page       /api/v1/violations?limit=50&cursor=<next_cursor after 90,000 rows>
       by invariant    /api/v1/violations?limit=50&invariant=INV-07   (5,000 of them)
       by severity     /api/v1/violations?limit=50&severity=minor     (30,000)
       big page        /api/v1/violations?limit=1000
     and reads p50/p99 latency, requests/s, errors (non-2xx and socket errors must be 0), the
     watcher's CPU seconds during each wrk run (utime+stime from /proc/PID/stat), and finally
     the RSS after load.

Requires the release binary (it builds nothing):
    export CARGO_TARGET_DIR=$HOME/.cache/invar-target && cargo build --release -p invar
Installs `wrk` with apt-get if it is missing (sudo when not root). Postgres: a throwaway
database on 127.0.0.1:5432 as user `postgres` (override with --pg-url
postgres://USER@HOST:PORT), dropped at the end.

--write replaces the table between `<!-- watch:start -->` and `<!-- watch:end -->` in
BENCHMARKS.md (and nothing else).
"""
import argparse, json, os, platform, re, shutil, signal, socket, sqlite3, subprocess, sys
import tempfile, time, urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READ_TOKEN = "bench-read-token-0123456789"
ADMIN_TOKEN = "bench-admin-token-0123456789"
N_INVARIANTS = 20
BAD_ROWS = 200          # > VIOLATIONS_CAP, so each invariant records exactly the cap per run
CAP = 100               # invar_core::report::VIOLATIONS_CAP
SEVERITIES = ["critical", "major", "minor"]
DEEP = 90_000           # the deep page starts after this many rows


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def find_bin(given):
    cands = [given] if given else []
    tgt = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/invar-target"))
    cands += [os.path.join(tgt, "release", "invar"), os.path.join(ROOT, "target", "release", "invar")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    sys.exit("no release binary found (looked at: " + ", ".join(c for c in cands if c) + ").\n"
             "Build it first:\n  export CARGO_TARGET_DIR=$HOME/.cache/invar-target && "
             "cargo build --release -p invar")


def ensure_wrk():
    if shutil.which("wrk"):
        return
    log("wrk is missing: installing the Debian package")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(sudo + ["apt-get", "install", "-y", "wrk"], env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "wrk"], env=env, check=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def make_workdir(d, store_line):
    db = os.path.join(d, "data.db")
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE bad (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, note TEXT NOT NULL)")
    con.executemany("INSERT INTO bad VALUES (?, ?, ?)",
                    ((i, f"kind-{i % 7}", f"row {i} breaks the rule") for i in range(BAD_ROWS)))
    con.commit()
    con.close()
    inv = []
    for i in range(N_INVARIANTS):
        inv.append(
            f"  - id: INV-{i:02d}\n"
            f"    title: Rows of bad are violations ({i})\n"
            f"    severity: {SEVERITIES[i % 3]}\n"
            f"    probe: {{ source: data, sql: \"SELECT id, kind, note FROM bad\" }}\n")
    cfg = (
        "# Generated by bench/watch/api.py\n"
        f"{store_line}"
        "server:\n"
        "  listen: 127.0.0.1:0\n"
        f"  admin_token: \"{ADMIN_TOKEN}\"\n"
        f"  read_token: \"{READ_TOKEN}\"\n"
        "sources:\n"
        "  data: { type: sqlite, path: data.db }\n"
        "invariants:\n" + "".join(inv))
    path = os.path.join(d, "invar.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


def seed(binp, cfg, runs):
    t0 = time.time()
    for k in range(runs):
        r = subprocess.run([binp, "--config", cfg, "run", "--format", "json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode not in (0, 1):
            sys.exit(f"invar run exited {r.returncode}:\n{r.stderr}\n{r.stdout[:2000]}")
        if k == 0:
            rep = json.loads(r.stdout)
            per = sum(len(x.get("violations", [])) for x in rep["results"])
            log(f"  one run records {per} violations (report keeps ≤{CAP} per invariant)")
    return time.time() - t0


def get(url, token=READ_TOKEN):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return r.status, json.loads(raw), len(raw)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])  # kB, or a count
    return out


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU seconds spent by the whole machine (all cores, not idle/iowait) so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait, limit=0.25):
    """Waits (up to max_wait s) until the rest of the machine uses < `limit` cores over 3 s:
    other processes share these 2 cores. Returns the last busy measure (cores)."""
    t0 = time.time()
    while True:
        b0 = busy_seconds()
        time.sleep(3)
        cores = (busy_seconds() - b0) / 3
        if cores < limit or time.time() - t0 > max_wait:
            if cores >= limit:
                log(f"  machine still busy ({cores:.2f} cores) after {max_wait} s: measuring anyway")
            return cores
        log(f"  machine busy ({cores:.2f} cores in use by others): waiting")


def parse_dur(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)", s)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]


def parse_wrk(out):
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "p50": parse_dur(lat["50"]), "p99": parse_dur(lat["99"]), "rps": rps, "requests": reqs,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, sock.groups())) if sock else 0,
    }


def run_store(binp, kind, args):
    d = tempfile.mkdtemp(prefix=f"invar-watch-bench-{kind}-")
    pg_db = None
    if kind == "sqlite":
        store_line = "store: sqlite://.invar/history.db\n"
    else:
        pg_db = f"invar_bench_{os.getpid()}"
        subprocess.run(["psql", args.pg_url + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {pg_db}"], check=True)
        subprocess.run(["psql", args.pg_url + "/postgres", "-qc", f"CREATE DATABASE {pg_db}"], check=True)
        store_line = f"store: {args.pg_url}/{pg_db}\n"
    proc = None
    try:
        cfg = make_workdir(d, store_line)
        runs = -(-args.violations // (N_INVARIANTS * CAP))
        log(f"[{kind}] seeding: {runs} recorded runs × {N_INVARIANTS} invariants × {CAP} violations in {d}")
        secs = seed(binp, cfg, runs)
        log(f"  seeded in {secs:.1f} s")
        if kind == "sqlite":
            n = sqlite3.connect(os.path.join(d, ".invar", "history.db")).execute(
                "SELECT count(*) FROM violations").fetchone()[0]
        else:
            n = int(subprocess.run(["psql", f"{args.pg_url}/{pg_db}", "-tAc", "SELECT count(*) FROM violations"],
                                   check=True, stdout=subprocess.PIPE, text=True).stdout)
        log(f"  stored violations (direct count): {n}")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        logf = open(os.path.join(d, "watch.log"), "w")
        proc = subprocess.Popen([binp, "--config", cfg, "watch", "--listen", f"127.0.0.1:{port}"],
                                stdout=logf, stderr=subprocess.STDOUT)
        t0 = time.time()
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.time() - t0 > 30:
                sys.exit(f"invar watch did not become healthy; log: {open(os.path.join(d, 'watch.log')).read()}")
            time.sleep(0.05)
        ready_ms = (time.time() - t0) * 1000
        _, stats, _ = get(base + "/api/v1/violations/stats")
        assert stats["total"] == n, (stats["total"], n)
        if n < args.violations:
            sys.exit(f"only {n} violations stored, wanted {args.violations}")
        log(f"  /healthz ok after {ready_ms:.0f} ms; /violations/stats total = {stats['total']}")
        c0 = cpu_seconds(proc.pid)
        time.sleep(args.idle)
        idle = proc_status(proc.pid)
        idle["cpu_ms_per_s"] = (cpu_seconds(proc.pid) - c0) * 1000 / args.idle
        log(f"  idle after {args.idle} s: VmRSS {idle['VmRSS']} kB, VmHWM {idle['VmHWM']} kB, "
            f"{idle['Threads']} threads, CPU {idle['cpu_ms_per_s']:.1f} ms/s")

        # The deep cursor: walk 1,000-row pages to DEEP rows in.
        cursor, seen = None, 0
        while seen < DEEP:
            q = "/api/v1/violations?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            _, page, _ = get(base + q)
            seen += len(page["items"])
            cursor = page["next_cursor"]
        after_walk = proc_status(proc.pid)
        one = f"INV-{7:02d}"
        per_inv = next(s["count"] for s in stats["invariants"] if s["id"] == one)
        minor = stats["by_severity"].get("minor", 0)
        queries = [  # (name, path, with one connection instead of --connections)
            ("first page, 1 connection", "/api/v1/violations?limit=50", True),
            ("first page", "/api/v1/violations?limit=50", False),
            (f"deep page (after {DEEP:,} rows, cursor)", f"/api/v1/violations?limit=50&cursor={cursor}", False),
            (f"invariant={one} ({per_inv:,} rows)", f"/api/v1/violations?limit=50&invariant={one}", False),
            (f"severity=minor ({minor:,} rows)", "/api/v1/violations?limit=50&severity=minor", False),
            ("first page, limit=1000", "/api/v1/violations?limit=1000", False),
        ]
        results = []
        for name, path, single in queries:
            status, body, size = get(base + path)
            want = 1000 if "limit=1000" in path else 50
            assert status == 200 and len(body["items"]) == want and body["next_cursor"], (name, status, len(body["items"]))
            wait_quiet(args.quiet_wait)
            c0, b0, k0 = cpu_seconds(proc.pid), busy_seconds(), children_cpu()
            t, c = (1, 1) if single else (args.threads, args.connections)
            cmd = ["wrk", f"-t{t}", f"-c{c}", f"-d{args.duration}s", "--latency",
                   "-H", f"Authorization: Bearer {READ_TOKEN}", base + path]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            cpu = cpu_seconds(proc.pid) - c0
            wrk_cpu = children_cpu() - k0
            other = (busy_seconds() - b0 - cpu - wrk_cpu) / args.duration
            w = parse_wrk(out)
            w.update(name=name, path=path, cpu_s=cpu, body_bytes=size, wrk_cpu_s=wrk_cpu,
                     other_cores=other, watcher_cores=cpu / args.duration,
                     cpu_ms_per_req=cpu * 1000 / max(w["requests"], 1))
            results.append(w)
            log(f"  {name}: p50 {w['p50']:.2f} ms, p99 {w['p99']:.2f} ms, {w['rps']:.0f} req/s, "
                f"errors {w['non2xx'] + w['socket_errors']}, watcher CPU {w['cpu_ms_per_req']:.2f} ms/req "
                f"({w['watcher_cores']:.2f} cores; wrk {wrk_cpu / args.duration:.2f}; everything else {other:.2f})")
            if w["non2xx"] or w["socket_errors"]:
                log(out)
                sys.exit(f"wrk saw errors on {name}")
        time.sleep(args.idle)
        after = proc_status(proc.pid)
        log(f"  after load (+{args.idle} s): VmRSS {after['VmRSS']} kB, VmHWM {after['VmHWM']} kB")
        return {"store": kind, "violations": n, "seed_s": secs, "ready_ms": ready_ms,
                "idle": idle, "after_walk": after_walk, "after": after, "queries": results}
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if pg_db:
            subprocess.run(["psql", args.pg_url + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {pg_db}"])
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            log(f"  kept {d}")


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def table(all_res, args):
    lines = [
        "| store | query | p50 | p99 | requests/s | invar CPU per request | cores: invar / wrk / rest | body |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in all_res:
        for q in r["queries"]:
            lines.append(f"| {r['store']} | {q['name']} | {q['p50']:.2f} ms | {q['p99']:.2f} ms | "
                         f"{q['rps']:,.0f} | {q['cpu_ms_per_req']:.2f} ms | "
                         f"{q['watcher_cores']:.2f} / {q['wrk_cpu_s'] / args.duration:.2f} / {max(q['other_cores'], 0):.2f} | "
                         f"{q['body_bytes'] / 1024:.1f} KiB |")
    lines += ["", "| store | stored violations | idle RSS (peak so far) | idle CPU | RSS after load (peak) |",
              "|---|---:|---:|---:|---:|"]
    for r in all_res:
        lines.append(f"| {r['store']} | {r['violations']:,} | {mib(r['idle']['VmRSS'])} ({mib(r['idle']['VmHWM'])}) | "
                     f"{r['idle']['cpu_ms_per_s']:.1f} ms/s | {mib(r['after']['VmRSS'])} ({mib(r['after']['VmHWM'])}) |")
    return "\n".join(lines)


def machine_note(args, binp):
    ver = subprocess.run([binp, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    wrkv = subprocess.run(["wrk", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.split("\n")[0]
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // (1024 * 1024)
    return (f"Machine: {platform.machine()}, {os.cpu_count()} shared cores, {mem} GiB; wrk and invar share "
            f"the cores. {ver}; {wrkv.split(' Copyright')[0]}. wrk -t{args.threads} -c{args.connections} "
            f"-d{args.duration}s --latency per row (the 1-connection row: -t1 -c1), read token. RSS is VmRSS of the `invar watch` process "
            f"after {args.idle} s idle (VmHWM in parentheses). Cores: CPU time during the wrk run ÷ its "
            f"duration, for `invar watch`, wrk, and the rest of the machine (the Postgres server, and "
            f"other processes on this shared box).")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--violations", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--idle", type=int, default=5)
    ap.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--quiet-wait", type=int, default=300,
                    help="before each wrk run, wait up to this many s for other load to settle")
    ap.add_argument("--bin")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--write", action="store_true", help="update the watch section of BENCHMARKS.md")
    args = ap.parse_args()
    found = find_bin(args.bin)
    ensure_wrk()
    # A private copy: a rebuild of the shared target dir mid-run must not mix two binaries.
    bindir = tempfile.mkdtemp(prefix="invar-watch-bench-bin-")
    binp = os.path.join(bindir, "invar")
    shutil.copy2(found, binp)
    log(f"binary: {found} (copied to {binp}): "
        + subprocess.run([binp, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip())
    try:
        res = [run_store(binp, s.strip(), args) for s in args.stores.split(",") if s.strip()]
        note = machine_note(args, binp)
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
    md = table(res, args) + "\n\n" + note + (
        " Command: `export CARGO_TARGET_DIR=$HOME/.cache/invar-target && cargo build --release -p invar"
        f" && python3 bench/watch/api.py --stores {args.stores}" +
        (f" --duration {args.duration}" if args.duration != 15 else "") + "` (`--write` puts the table here).")
    print(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.write:
        p = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(p).read()
        a, b = "<!-- watch:start -->", "<!-- watch:end -->"
        if a not in text or b not in text:
            sys.exit("BENCHMARKS.md has no watch section markers; add the section first")
        i, j = text.index(a) + len(a), text.index(b)
        with open(p, "w") as f:
            f.write(text[:i] + "\n" + md + "\n" + text[j:])


if __name__ == "__main__":
    main()
