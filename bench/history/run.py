#!/usr/bin/env python3
"""What `history:` costs a run: N invariants that read their own history over a SQLite store
holding D days of 15-minute runs, against the same N invariants without `history:`.

    python3 bench/history/run.py [--invariants 1000] [--days 90] [--window 14d] [--repeat 5]

Builds invar in release mode, creates the store with one real run, then fills it with
D × 96 runs of N results each straight through SQLite (invar's own schema), and times
`invar run --dry-run` (reads the history, records nothing) for both configs, interleaved.
Prints the medians and the difference.
"""
import argparse, os, sqlite3, statistics, subprocess, sys, tempfile, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(n, window, history):
    lines = ["store: sqlite://h.db", "invariants:"]
    for i in range(n):
        lines.append(f"  - id: H-{i:05d}")
        lines.append("    title: a list that keeps its length")
        if history:
            lines.append(f"    history: {{ window: {window}, min_runs: 3 }}")
            lines.append("    probe: { values: [a, b, c] }")
            lines.append("    fail_when: count < 0.5 * hist.count.median")
        else:
            lines.append("    probe: { values: [a, b, c] }")
            lines.append("    fail_when: count < 1.5")
    return "\n".join(lines) + "\n"


def fill(db, n, days):
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    now_ms = int(time.time() * 1000)
    runs = days * 96
    t0 = time.time()
    with con:
        for k in range(runs):
            at = now_ms - (runs - k) * 15 * 60 * 1000
            run_id = str(uuid.uuid4())
            con.execute(
                "INSERT INTO runs VALUES (?, 'all', 'schedule', ?, 5, 'pass', 0, ?, 0, 0, 0, 0, 0, 0, 0, '[]')",
                (run_id, at, n),
            )
            con.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, 'all', 't', 'major', 'pass', NULL, 3, 0, 1, ?, 0, NULL, '[]')",
                (
                    (run_id, i, f"H-{i:05d}", at, '{"count":%d}' % (3 + (k + i) % 2))
                    for i in range(n)
                ),
            )
    con.close()
    print(f"filled {runs} runs × {n} results in {time.time() - t0:.0f} s", file=sys.stderr)


def timed(binary, cfg):
    t0 = time.perf_counter()
    p = subprocess.run([binary, "run", "--dry-run", "--format", "json", "--config", cfg],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        sys.exit(f"invar run failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--invariants", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--window", default="14d")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/invar-target"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "invar"], cwd=ROOT, check=True)
    binary = os.path.join(target, "release", "invar")
    d = tempfile.mkdtemp(prefix="invar-hist-bench-")
    with_h, without = os.path.join(d, "with.yaml"), os.path.join(d, "without.yaml")
    open(with_h, "w").write(config(a.invariants, a.window, True))
    open(without, "w").write(config(a.invariants, a.window, False))
    # One real run creates the store with invar's schema.
    subprocess.run([binary, "run", "--config", without], stdout=subprocess.DEVNULL, check=False)
    fill(os.path.join(d, "h.db"), a.invariants, a.days)
    timed(binary, with_h), timed(binary, without)  # warm the page cache
    w, wo = [], []
    for _ in range(a.repeat):
        w.append(timed(binary, with_h))
        wo.append(timed(binary, without))
    mw, mwo = statistics.median(w) * 1000, statistics.median(wo) * 1000
    print(f"| invariants | days stored | window | without history | with history | added |")
    print(f"|---:|---:|---|---:|---:|---:|")
    print(f"| {a.invariants} | {a.days} | {a.window} | {mwo:.0f} ms | {mw:.0f} ms | {mw - mwo:.0f} ms |")
    print(f"store: {os.path.getsize(os.path.join(d, 'h.db')) / 2**20:.0f} MiB in {d}", file=sys.stderr)


if __name__ == "__main__":
    main()
