#!/usr/bin/env python3
"""`same` between a 1,000,000-member Redis zset and 1,000,000 Postgres rows, beside the floor:
the time to merely read both sides (redis-cli ZRANGE … WITHSCORES and psql COPY, in parallel).

    python3 bench/redis/same.py [--members 1000000] [--repeat 3]

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (user postgres, db test), and a
release build (`cargo build --release`). Uses the key `invar-bench:slots` and the table
`invar_bench_same`, both replaced on every run of the script.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Xq"]
KEY = "invar-bench:slots"


def seed(n):
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "DEL", KEY], check=True, capture_output=True)
    # Redis protocol through --pipe: ZADD in batches of 1000 members.
    lines = []
    for start in range(0, n, 1000):
        args = ["ZADD", KEY]
        for i in range(start, min(n, start + 1000)):
            args += [str(1_700_000_000 + i), f"exec-{i}"]
        lines.append(f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args))
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "--pipe"], input="".join(lines).encode(), check=True,
                   capture_output=True)
    subprocess.run(PG + ["-c", f"DROP TABLE IF EXISTS invar_bench_same; CREATE TABLE invar_bench_same AS "
                        f"SELECT 'exec-' || i AS id, to_timestamp(1700000000 + i) AS started_at "
                        f"FROM generate_series(0, {n - 1}) AS i; ANALYZE invar_bench_same"], check=True)


def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} exited {p.returncode}: {p.stderr[-1500:]}")
    return wall, int(p.stderr.strip().splitlines()[-1]) / 1024, p.returncode


def floor():
    """Both sides read in parallel, to /dev/null; wall of the slower, RSS of the larger."""
    t0 = time.perf_counter()
    a = subprocess.Popen(["/usr/bin/time", "-f", "%M", "redis-cli", "-h", "127.0.0.1", "ZRANGE", KEY, "0", "-1",
                          "WITHSCORES"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(["/usr/bin/time", "-f", "%M", *PG, "-c",
                          "COPY (SELECT id, started_at FROM invar_bench_same) TO STDOUT"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ea, eb = a.communicate()[1], b.communicate()[1]
    wall = time.perf_counter() - t0
    rss = max(int(ea.strip().splitlines()[-1]), int(eb.strip().splitlines()[-1])) / 1024
    return wall, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "release", "invar")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: cargo build --release first")
    print(f"seeding {a.members:,} members and rows …", file=sys.stderr)
    seed(a.members)
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "invar.yaml")
        with open(cfg, "w") as f:
            f.write(f"""sources:
  cache: {{ type: redis, url: "redis://127.0.0.1:6379", max_keys: 10 }}
  app: {{ type: postgres, url: "postgres://postgres@127.0.0.1:5432/test" }}
invariants:
  - id: S-01
    title: every slot is a running execution and every running execution holds a slot
    same:
      left: {{ source: cache, redis: {{ zset: "{KEY}" }}, key: member, age: score }}
      right: {{ source: app, sql: "SELECT id, started_at FROM invar_bench_same", key: id, age: started_at }}
      grace: 3s
""")
        runs = {"floor": [], "invar": []}
        for _ in range(a.repeat):
            runs["floor"].append(floor())
            w, r, code = timed([binary, "run", "--config", cfg, "--dry-run", "--format", "json", "--output", os.devnull])
            if code != 0:
                sys.exit("the check did not pass on identical sides")
            runs["invar"].append((w, r))
    fw = statistics.median(w for w, _ in runs["floor"])
    iw = statistics.median(w for w, _ in runs["invar"])
    print("| runner | median wall | peak RSS | × floor |\n|---|---:|---:|---:|")
    print(f"| floor (read both sides) | {fw:.2f} s | {max(r for _, r in runs['floor']):.0f} MiB | 1.00× |")
    print(f"| invar `same` | {iw:.2f} s | {max(r for _, r in runs['invar']):.0f} MiB | {iw / fw:.2f}× |")
    print(f"\n{a.members:,} members and rows, {a.repeat} interleaved runs.")


if __name__ == "__main__":
    main()
