#!/usr/bin/env python3
"""Harness overhead and cost growth of `invar run` over SQLite.

Generates a SQLite database and configs of N invariants (a mix of check kinds, each with its
own cheap indexed query, so the run is dominated by the harness), runs each config several
times side by side with the release binary, and prints a Markdown table of median wall time,
peak RSS and the per-invariant cost.

    python3 bench/scale.py [--sizes 10,100,1000,10000] [--repeat 5] [--bin PATH]
"""
import argparse, os, sqlite3, statistics, subprocess, sys, tempfile, time

KINDS = ["default", "fail_when", "every_row", "subset", "same"]


def make_db(path, rows=20000):
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE accounts (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, email TEXT, balance INTEGER NOT NULL);
        CREATE INDEX accounts_grp ON accounts(grp);
        CREATE TABLE ledger (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, grp INTEGER NOT NULL);
        CREATE INDEX ledger_grp ON ledger(grp);
        """
    )
    con.executemany(
        "INSERT INTO accounts VALUES (?, ?, ?, ?)",
        ((i, i % 10000, f"a{i}@example.org", (i * 37) % 1000) for i in range(rows)),
    )
    con.executemany("INSERT INTO ledger VALUES (?, ?, ?)", ((i, i, i % 10000) for i in range(rows)))
    con.commit()
    con.close()


def make_config(path, db, n):
    out = [f"sources:\n  db: {{ type: sqlite, path: {db}, max_connections: 2 }}\ninvariants:\n"]
    for i in range(n):
        g = i % 10000
        kind = KINDS[i % len(KINDS)]
        head = f"  - id: INV-{i}\n    title: invariant {i} ({kind})\n"
        if kind == "default":
            body = f'    probe: {{ source: db, sql: "SELECT id FROM accounts WHERE grp = {g} AND balance < 0" }}\n'
        elif kind == "fail_when":
            body = (f'    probe: {{ source: db, sql: "SELECT count(*) AS n, sum(email IS NULL) AS missing FROM accounts WHERE grp = {g}" }}\n'
                    "    skip_when: row.n < 1.0\n    fail_when: row.missing / row.n > 0.01\n")
        elif kind == "every_row":
            body = (f'    probe: {{ source: db, sql: "SELECT id, balance FROM accounts WHERE grp = {g}" }}\n'
                    "    every_row: r.balance >= 0.0\n")
        elif kind == "subset":
            body = ("    subset:\n"
                    f'      each: {{ source: db, sql: "SELECT account_id FROM ledger WHERE grp = {g}", key: account_id }}\n'
                    f'      in: {{ source: db, sql: "SELECT id FROM accounts WHERE grp = {g}", key: id }}\n')
        else:
            body = ("    same:\n"
                    f'      left: {{ source: db, sql: "SELECT account_id FROM ledger WHERE grp = {g}", key: account_id }}\n'
                    f'      right: {{ source: db, sql: "SELECT id FROM accounts WHERE grp = {g}", key: id }}\n')
        out.append(head + body)
    with open(path, "w") as f:
        f.write("".join(out))


def measure(binary, config):
    """(wall seconds, peak RSS KiB, exit code) of one run."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "run", "--config", config, "--format", "json",
                        "--output", os.devnull], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = int(p.stderr.strip().splitlines()[-1])
    return wall, rss, p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "invar")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build with `cargo build --release` first")
    sizes = [int(s) for s in a.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "bench.db")
        make_db(db)
        configs = {}
        for n in sizes:
            configs[n] = os.path.join(d, f"invar-{n}.yaml")
            make_config(configs[n], db, n)
        samples = {n: [] for n in sizes}
        for _ in range(a.repeat):  # interleaved, so machine noise hits every size alike
            for n in sizes:
                wall, rss, code = measure(binary, configs[n])
                if code not in (0, 1):
                    sys.exit(f"run of {n} invariants exited {code}")
                samples[n].append((wall, rss))
    base = sizes[0]
    base_wall = statistics.median(w for w, _ in samples[base])
    print(f"| invariants | median wall | peak RSS | per invariant (wall / N) | marginal per invariant vs {base} |")
    print("|---:|---:|---:|---:|---:|")
    for n in sizes:
        wall = statistics.median(w for w, _ in samples[n])
        rss = max(r for _, r in samples[n])
        marginal = (wall - base_wall) / (n - base) * 1000 if n != base else float("nan")
        marginal_s = f"{marginal:.3f} ms" if n != base else "—"
        print(f"| {n} | {wall*1000:.0f} ms | {rss/1024:.1f} MiB | {wall/n*1000:.3f} ms | {marginal_s} |")


if __name__ == "__main__":
    main()
