#!/usr/bin/env python3
"""`lines` with and without `since` on a large stamped log, side by side.

Generates a time-ordered log of SIZE MB spanning DAYS days up to now (one line in 5,000 is
an ERROR), then runs the release binary on three probes over it: the plain scan (no
`since`), `since: 3d` (part of the file) and `since: 3650d` (the whole file, the worst
case). Prints median wall time and peak RSS (`/usr/bin/time -v`) per mode.

    cargo build --release -p invar
    python3 bench/lines/since.py --mb 1024 --days 10 --repeat 3
"""
import argparse, datetime, os, re, statistics, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--mb", type=int, default=1024)
ap.add_argument("--days", type=float, default=10)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--bin", default=os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "invar"))
ap.add_argument("--dir", default=None, help="where the log goes (default: a temp dir)")
args = ap.parse_args()

work = args.dir or tempfile.mkdtemp(prefix="invar-lines-bench-")
log = os.path.join(work, "app.log")
size = args.mb * 1024 * 1024
if not os.path.exists(log) or os.path.getsize(log) < size:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    line_len = 100
    n = size // line_len
    step = args.days * 86400 / n
    start = now - datetime.timedelta(days=args.days)
    with open(log, "w") as f:
        buf = []
        for i in range(n):
            t = start + datetime.timedelta(seconds=i * step)
            level = "ERROR" if i % 5000 == 0 else "INFO "
            head = f"{t:%Y-%m-%d %H:%M:%S} {level} worker-{i % 16:02d} request {i} "
            buf.append(head + "." * max(0, line_len - 1 - len(head)) + "\n")
            if len(buf) == 10000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
print(f"log: {log} ({os.path.getsize(log) / 2**20:.0f} MiB, {args.days:g} days)", flush=True)

modes = {"plain": None, "since 3d": "3d", "since 3650d (whole file)": "3650d"}
configs = {}
for name, since in modes.items():
    cfg = os.path.join(work, f"{name.split()[0]}-{since or 'none'}.yaml")
    extra = f", since: {since}" if since else ""
    with open(cfg, "w") as f:
        f.write(f"""invariants:
  - id: LOG
    title: errors in the log
    severity: minor
    probe:
      lines: {{ path: {log}, match: ' ERROR ' {extra} }}
    fail_when: count > 0.0
""")
    configs[name] = cfg

results = {name: [] for name in modes}
for _ in range(args.repeat):
    for name, cfg in configs.items():  # interleaved, so machine noise hits all modes alike
        p = subprocess.run(["/usr/bin/time", "-v", args.bin, "run", "--config", cfg, "--format", "json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode not in (0, 1):
            sys.exit(f"{name}: exit {p.returncode}\n{p.stderr}")
        wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
        h, m, s = wall.groups()
        secs = int(h or 0) * 3600 + int(m) * 60 + float(s)
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
        rows = p.stdout.count('"line_no"')
        results[name].append((secs, rss, rows))

plain = statistics.median(r[0] for r in results["plain"])
print(f"| mode | median wall | × plain | peak RSS | runs |")
print(f"|---|---:|---:|---:|---:|")
for name, rs in results.items():
    w = statistics.median(r[0] for r in rs)
    rss = max(r[1] for r in rs) / 1024
    print(f"| {name} | {w:.2f} s | {w / plain:.2f}× | {rss:.0f} MiB | {len(rs)} |")
