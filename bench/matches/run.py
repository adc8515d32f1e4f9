#!/usr/bin/env python3
"""`every_row` with `matches()` against `every_row` with `size()` over the same rows.

Target (issue 16): `matches()` within 3x of `size()` on 100k rows — the pattern is compiled
once per run, not once per row. Both configs read the same SQLite table; runs interleave so
machine noise hits both alike. Prints a Markdown table; `--write` puts it in BENCHMARKS.md.

    cargo build --release -p invar && python3 bench/matches/run.py --rows 100000 --repeat 5
"""
import argparse, os, re, sqlite3, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKS = {
    "size": "size(r.email) < 100",
    "matches": 'r.email.matches("^[a-z0-9._]+@[a-z]+\\\\d*[.][a-z]{2,}$")',
}


def binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/invar-target"))
    return os.environ.get("INVAR_BIN") or os.path.join(target, "release", "invar")


def setup(d, rows):
    db = sqlite3.connect(os.path.join(d, "bench.db"))
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    db.executemany(
        "INSERT INTO users VALUES (?, ?)",
        ((i, f"user.{i}@example{i % 97}.com") for i in range(rows)),
    )
    db.commit()
    for name, cond in CHECKS.items():
        with open(os.path.join(d, f"{name}.yaml"), "w") as f:
            f.write(
                "sources:\n  app: { type: sqlite, path: bench.db }\n"
                "invariants:\n  - id: EMAILS\n    title: Every email is well formed\n"
                "    probe: { source: app, sql: \"SELECT id, email FROM users\" }\n"
                f"    every_row: '{cond}'\n"
            )


def run(d, name):
    t = time.perf_counter()
    p = subprocess.run(
        [binary(), "run", "--dry-run", "--format", "json", "--config", f"{name}.yaml"],
        cwd=d, capture_output=True, text=True,
    )
    took = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{name}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        setup(d, a.rows)
        for name in CHECKS:  # warm-up
            run(d, name)
        times = {name: [] for name in CHECKS}
        for _ in range(a.repeat):
            for name in CHECKS:
                times[name].append(run(d, name))
    med = {n: statistics.median(t) for n, t in times.items()}
    lines = [
        "| check | median wall | per row | × size() |",
        "|---|---:|---:|---:|",
    ]
    for n in CHECKS:
        lines.append(
            f"| `every_row: {CHECKS[n]}` | {med[n]*1000:.0f} ms | "
            f"{med[n]/a.rows*1e6:.2f} µs | {med[n]/med['size']:.2f}× |"
        )
    lines.append("")
    lines.append(
        f"{a.rows:,} rows, {a.repeat} interleaved runs after a warm-up, each a whole `invar run "
        f"--dry-run` (reading the rows included). Command: `cargo build --release -p invar && "
        f"python3 bench/matches/run.py --rows {a.rows} --repeat {a.repeat} --write`."
    )
    table = "\n".join(lines)
    print(table)
    if a.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read()
        block = f"<!-- matches:start -->\n{table}\n<!-- matches:end -->"
        if "<!-- matches:start -->" in text:
            text = re.sub(r"<!-- matches:start -->.*?<!-- matches:end -->", block, text, flags=re.S)
        else:
            text += (
                "\n## `matches()` in `every_row` (SQLite)\n\n"
                "The same 100k rows checked with a regular expression and with `size()`; the "
                "pattern is compiled once per run (issue 16's target: within 3× of `size()`).\n\n"
                + block + "\n"
            )
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
