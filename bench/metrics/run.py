#!/usr/bin/env python3
"""invar vs Soda Core vs the raw-SQL floor, on the same 24 checks over PostgreSQL.

    python3 bench/metrics/run.py [--sizes 1000000,10000000] [--repeat 5] [--write]

Generates the data set (dataset.sql) per size unless it is already there, installs Soda Core
(soda-core-postgres 3.5.6) into a virtualenv under ~/.cache/invar-bench with its telemetry off,
builds invar in release mode, then runs the three side by side, interleaved, `--repeat` times.
Prints a Markdown table (median wall time, peak client RSS, ratios); `--write` also replaces
the results section of BENCHMARKS.md.
"""
import argparse, os, platform, shutil, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.path.expanduser("~/.cache/invar-bench")
PG = ["-h", "127.0.0.1", "-U", "postgres", "-d", "test"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def soda_bin():
    venv = os.path.join(CACHE, "soda")
    soda = os.path.join(venv, "bin", "soda")
    if not os.path.exists(soda):
        os.makedirs(CACHE, exist_ok=True)
        print("installing soda-core-postgres 3.5.6 into", venv, file=sys.stderr)
        sh([sys.executable, "-m", "venv", venv])
        sh([os.path.join(venv, "bin", "pip"), "install", "-q", "soda-core-postgres==3.5.6"])
    # Without this Soda waits on its telemetry endpoint, which a closed network never answers.
    cfg = os.path.expanduser("~/.soda/config.yml")
    os.makedirs(os.path.dirname(cfg), exist_ok=True)
    text = open(cfg).read() if os.path.exists(cfg) else ""
    if "send_anonymous_usage_stats: false" not in text:
        with open(cfg, "w") as f:
            f.write("send_anonymous_usage_stats: false\n")
    return soda


def invar_bin():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    sh(["cargo", "build", "--release", "-q", "-p", "invar"], cwd=ROOT)
    return os.path.join(target, "release", "invar")


def ensure_dataset(rows):
    schema = f"bench_{rows}"
    have = subprocess.run(["psql", *PG, "-XAtc", f"SELECT count(*) FROM {schema}.orders"],
                          capture_output=True, text=True)
    if have.returncode == 0 and have.stdout.strip() == str(rows):
        return schema
    print(f"generating {rows} orders into schema {schema} …", file=sys.stderr)
    t0 = time.time()
    sh(["psql", *PG, "-q", "-v", f"rows={rows}", "-v", f"schema={schema}", "-f",
        os.path.join(HERE, "dataset.sql")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"  done in {time.time() - t0:.0f} s", file=sys.stderr)
    return schema


def timed(cmd, env, ok_codes):
    """(wall seconds, peak RSS MiB) of one command, under GNU time."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode not in ok_codes:
        sys.exit(f"{cmd[0]} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    return wall, rss_kib / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    soda = soda_bin()
    invar = invar_bin()
    rows_out = []
    for rows in [int(s) for s in a.sizes.split(",")]:
        schema = ensure_dataset(rows)
        env = dict(os.environ, BENCH_SCHEMA=schema, BENCH_URL="postgres://postgres@127.0.0.1:5432/test",
                   PGHOST="127.0.0.1", PGUSER="postgres", PGDATABASE="test")
        runs = {
            "floor": (["bash", os.path.join(HERE, "floor.sh"), schema], {0}),
            "invar": ([invar, "run", "--config", os.path.join(HERE, "invar.yaml"), "--format", "json",
                       "--output", os.devnull], {1}),  # the data set has defects: exit 1
            "soda": ([soda, "scan", "-d", "bench", "-c", os.path.join(HERE, "soda", "configuration.yml"),
                      os.path.join(HERE, "soda", "checks.yml")], {1, 2}),  # 1/2: checks failed
        }
        samples = {k: [] for k in runs}
        for name, (cmd, ok) in runs.items():  # warm the cache once for everyone
            timed(cmd, env, ok)
        for _ in range(a.repeat):
            for name, (cmd, ok) in runs.items():
                samples[name].append(timed(cmd, env, ok))
        med = {k: statistics.median(w for w, _ in v) for k, v in samples.items()}
        rss = {k: max(r for _, r in v) for k, v in samples.items()}
        for k in runs:
            rows_out.append((rows, k, med[k], rss[k], med[k] / med["floor"], med["soda"] / med[k]))
    table = ["| orders | runner | median wall | peak client RSS | × floor | Soda ÷ runner |",
             "|---:|---|---:|---:|---:|---:|"]
    for rows, k, wall, rss, xf, xs in rows_out:
        table.append(f"| {rows:,} | {k} | {wall:.2f} s | {rss:.0f} MiB | {xf:.2f}× | {xs:.2f}× |")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
               + subprocess.run(["psql", *PG, "-XAtc", "SHOW server_version"], capture_output=True,
                                text=True).stdout.strip().join(["PostgreSQL ", ""]))
    text = "\n".join(table)
    print(text)
    print(f"\n{a.repeat} interleaved runs per cell after one warm-up; machine: {machine}")
    if a.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        doc = open(path).read()
        start, end = "<!-- metrics:start -->", "<!-- metrics:end -->"
        body = (f"{start}\n{text}\n\n{a.repeat} interleaved runs per cell after one warm-up. "
                f"Machine: {machine}. Command: `python3 bench/metrics/run.py --sizes {a.sizes} "
                f"--repeat {a.repeat} --write`.\n{end}")
        doc = doc[:doc.index(start)] + body + doc[doc.index(end) + len(end):]
        open(path, "w").write(doc)


if __name__ == "__main__":
    main()
