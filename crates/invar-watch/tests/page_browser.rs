//! The status page in a real browser: `page::render` is served at `/` by a tiny axum server on
//! loopback, and Debian's headless Chromium (`/usr/bin/chromium`) dumps the DOM it built and
//! takes a phone-sized screenshot (412×915) into `$CARGO_TARGET_TMPDIR/status-page.png` (the HTML
//! goes beside it as `status-page.html`).
//!
//! The DOM must list every invariant with its `data-outcome`, the firing one before the passing
//! ones; the screenshot must be a real PNG of that size showing the red header and green
//! passes (its pixels are decoded here with a small inflate, no extra dependency).
//!
//! Chromium comes from `scripts/ensure-services.sh`. Missing under `CI`: the test fails; on a
//! developer's machine it says loudly that it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use invar_watch::page;
use invar_watch::status::{
    DeliveryCounts, IncidentStatus, InvariantStatus, LastRun, RECENT_RUNS, RecentOutcome,
    StatusSnapshot, SuiteStatus, TimelineEvent, Trend,
};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Chromium can hang (a stuck GPU process, a profile lock); it is killed after this.
const CHROMIUM_TIMEOUT: StdDuration = StdDuration::from_secs(60);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 11, 4, 9, 41, 27).unwrap()
}

fn invariant(
    id: &str,
    title: &str,
    severity: &str,
    outcome: &str,
    firing: bool,
) -> InvariantStatus {
    // Passing for a while, then the current outcome for the last few runs.
    let streak = if outcome == "pass" { RECENT_RUNS } else { 5 };
    let recent = (0..RECENT_RUNS)
        .map(|k| RecentOutcome {
            run_id: format!("run-{k}"),
            at: now() - Duration::minutes(15 * (RECENT_RUNS - k) as i64),
            outcome: if k + streak >= RECENT_RUNS {
                outcome
            } else {
                "pass"
            }
            .to_string(),
        })
        .collect();
    InvariantStatus {
        id: id.into(),
        title: title.into(),
        severity: severity.into(),
        incident: if firing {
            IncidentStatus::Firing
        } else {
            IncidentStatus::Ok
        },
        incident_since: firing.then(|| now() - Duration::minutes(47)),
        last_outcome: Some(outcome.into()),
        last_reason: (outcome == "fail")
            .then(|| "42 paid orders have no ledger entry (first: order 1881)".to_string()),
        last_run_at: Some(now() - Duration::seconds(87)),
        last_change: Some(now() - Duration::minutes(15 * streak as i64)),
        violations: if outcome == "fail" { 42 } else { 0 },
        silenced: None,
        trend: trend(id, outcome, streak),
        recent,
    }
}

/// The main measure over the recent runs: about 1,000 rows a run, down to 400 while failing;
/// a failing invariant's incident opened (and notified) at the start of its streak, and
/// `terminal_stays_terminal` had one that opened and resolved within the window.
fn trend(id: &str, outcome: &str, streak: usize) -> Trend {
    let at = |k: usize| now() - Duration::minutes(15 * (RECENT_RUNS - k) as i64);
    let values = (0..RECENT_RUNS)
        .map(|k| {
            let base = 1_000.0 + 40.0 * ((k * 7) % 5) as f64;
            Some(if k + streak >= RECENT_RUNS && outcome == "fail" {
                400.0 + 10.0 * k as f64
            } else {
                base
            })
        })
        .collect();
    let event = |k: usize, event: &str, notice: &str| TimelineEvent {
        at: at(k),
        event: event.into(),
        notice: Some(notice.into()),
    };
    let events = match (id, outcome) {
        (_, "fail") => vec![event(RECENT_RUNS - streak, "opened", "firing")],
        ("terminal_stays_terminal", _) => {
            vec![
                event(4, "opened", "firing"),
                event(9, "resolved", "resolved"),
            ]
        }
        _ => vec![],
    };
    Trend {
        measure: Some("count".into()),
        values,
        events,
    }
}

fn snapshot() -> StatusSnapshot {
    StatusSnapshot {
        generated_at: now(),
        version: "0.1.0 (abc1234)".into(),
        store: "sqlite".into(),
        suites: vec![
            SuiteStatus {
                name: "sweep".into(),
                schedule: Some("*/15 * * * *".into()),
                timezone: "Europe/Berlin".into(),
                next_run: Some(now() + Duration::seconds(213)),
                last_run: Some(LastRun {
                    run_id: "r20".into(),
                    trigger: "schedule".into(),
                    started_at: now() - Duration::seconds(87),
                    duration_ms: 1_250,
                    status: "fail".into(),
                    lock_skipped: false,
                    skipped_budget: 0,
                }),
                running: false,
                overdue: false,
                overdue_since: None,
            },
            SuiteStatus {
                name: "weekly".into(),
                schedule: Some("0 3 * * 1".into()),
                timezone: "Europe/Berlin".into(),
                // Mondays 03:00 in Berlin (CET, UTC+1): this morning's tick never ran.
                next_run: Some(Utc.with_ymd_and_hms(2024, 11, 11, 2, 0, 0).unwrap()),
                last_run: None,
                running: false,
                overdue: true,
                overdue_since: Some(Utc.with_ymd_and_hms(2024, 11, 4, 2, 0, 0).unwrap()),
            },
            SuiteStatus {
                name: "gate".into(),
                schedule: None,
                timezone: "UTC".into(),
                next_run: None,
                last_run: None,
                running: true,
                overdue: false,
                overdue_since: None,
            },
        ],
        invariants: vec![
            invariant(
                "migrations_applied",
                "Every required migration is applied",
                "critical",
                "pass",
                false,
            ),
            invariant(
                "orders_paid_have_ledger_entries_in_the_billing_database",
                "Every paid order has a ledger entry",
                "critical",
                "fail",
                true,
            ),
            invariant(
                "terminal_stays_terminal",
                "A finished job never becomes runnable again",
                "major",
                "pass",
                false,
            ),
            invariant(
                "redis_jobs_match_sql",
                "Redis job keys and SQL job rows are the same set",
                "minor",
                "pass",
                false,
            ),
        ],
        deliveries: DeliveryCounts {
            delivered: 12,
            failed_attempts: 1,
            pending: 0,
        },
    }
}

/// `/usr/bin/chromium`, or None (after a loud note) when it is missing on a developer's
/// machine; panics when it is missing under `CI`.
fn chromium() -> Option<&'static Path> {
    let path = Path::new(CHROMIUM);
    if path.is_file() {
        return Some(path);
    }
    invar_testkit::skip(
        &format!("{CHROMIUM} is not installed"),
        "install it with `bash scripts/ensure-services.sh` (Debian package `chromium`)",
    );
    None
}

/// Runs headless Chromium with `extra` arguments in its own process group and a fresh
/// profile; kills the whole group after [`CHROMIUM_TIMEOUT`]. Returns stdout.
async fn run_chromium(bin: &Path, profile: &Path, extra: &[String]) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let child = cmd.spawn().expect("start chromium");
    let pid = child.id().expect("chromium's pid");
    match tokio::time::timeout(CHROMIUM_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("wait for chromium");
            assert!(
                out.status.success(),
                "chromium {extra:?} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("chromium's stdout is UTF-8")
        }
        Err(_) => {
            // The renderer and GPU processes share the group: kill them all.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &format!("-{pid}")])
                .status();
            panic!("chromium {extra:?} did not finish within {CHROMIUM_TIMEOUT:?}; killed it");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium_on_a_phone() {
    let Some(bin) = chromium() else { return };

    let snap = snapshot();
    let html = page::render(&snap);
    // Beside the screenshot, for a person to open.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(tmp.join("status-page.html"), &html).unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let profile = tempfile::tempdir().unwrap();

    // The DOM Chromium built.
    let dom = run_chromium(bin, profile.path(), &["--dump-dom".into(), url.clone()]).await;
    let rows = invariant_rows(&dom);
    let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders_paid_have_ledger_entries_in_the_billing_database",
            "migrations_applied",
            "terminal_stays_terminal",
            "redis_jobs_match_sql",
        ],
        "the firing invariant comes first, then config order:\n{dom}"
    );
    for (id, outcome, incident) in &rows {
        let want = snap.invariants.iter().find(|i| &i.id == id).unwrap();
        assert_eq!(Some(outcome.as_str()), want.last_outcome.as_deref(), "{id}");
        let firing = want.incident == IncidentStatus::Firing;
        assert_eq!(incident, if firing { "firing" } else { "ok" }, "{id}");
    }
    assert!(dom.contains("data-suite=\"weekly\" data-overdue=\"true\""));
    assert!(dom.contains("data-suite=\"sweep\" data-overdue=\"false\""));
    assert!(dom.contains("1 firing · 1 overdue"));
    assert!(!dom.contains("<script"), "the page has no JavaScript");
    // Every invariant has its trend chart (inline SVG, in the DOM Chromium built); the firing
    // one's timeline shows the opening with its notice, terminal_stays_terminal's a resolution.
    assert_eq!(
        dom.matches("<svg class=\"trend\" data-measure=\"count\"")
            .count(),
        4,
        "{dom}"
    );
    assert_eq!(dom.matches("data-outcome=\"fail\" cx=").count(), 5, "{dom}");
    assert!(
        dom.matches("<circle class=\"p-pass\"").count() >= 60,
        "{dom}"
    );
    let firing = &dom[dom.find("data-invariant=\"orders_paid").unwrap()..];
    let firing = &firing[..firing.find("</li></ol></li>").unwrap()];
    assert!(
        firing.contains("<path class=\"e-opened\" data-event=\"opened\""),
        "{firing}"
    );
    assert!(
        firing.contains("<li data-event=\"opened\">opened <time"),
        "{firing}"
    );
    assert!(firing.contains("(firing notice)"), "{firing}");
    assert_eq!(
        dom.matches("<li data-event=\"resolved\">resolved <time")
            .count(),
        1,
        "{dom}"
    );

    // A phone-sized screenshot.
    let png = tmp.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        bin,
        profile.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=412,915".into(),
            url,
        ],
    )
    .await;
    server.abort();

    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(
        bytes.len() > 10_000,
        "{} is only {} bytes",
        png.display(),
        bytes.len()
    );
    let img = png::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!(
        (img.width, img.height),
        (412, 915),
        "a phone-sized screenshot"
    );

    // The header (a firing incident) is red; passes show green; fails show red further down.
    let red = [0xcf, 0x22, 0x2e];
    let green = [0x1a, 0x7f, 0x37];
    assert!(
        near(img.pixel(8, 8), red),
        "header pixel {:?} is not red",
        img.pixel(8, 8)
    );
    let count = |c: [u8; 3], from_y: usize| {
        (from_y..img.height)
            .flat_map(|y| (0..img.width).map(move |x| (x, y)))
            .filter(|&(x, y)| near(img.pixel(x, y), c))
            .count()
    };
    let header_end = (0..img.height)
        .find(|&y| !near(img.pixel(8, y), red))
        .unwrap();
    let (reds, greens) = (count(red, header_end), count(green, 0));
    assert!(
        greens > 500,
        "only {greens} green pixels in {}",
        png.display()
    );
    assert!(
        reds > 500,
        "only {reds} red pixels below the header in {}",
        png.display()
    );
    eprintln!(
        "status page screenshot: {} ({} bytes, {greens} green and {reds} red pixels below the header)",
        png.display(),
        bytes.len()
    );
}

/// The trend chart's own marks, in pixels: one invariant (15 passes, then 5 fails with an
/// incident opened) screenshotted with its chart and again with the chart's `<svg>` cut out of
/// the same HTML — the chart must add red (fail marks, the opening) and green (pass marks).
/// The header is green and no suite is listed, so all other red is the strip's, in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trend_chart_draws_red_and_green_marks() {
    let Some(bin) = chromium() else { return };
    let mut snap = snapshot();
    snap.suites.clear();
    snap.invariants = vec![invariant(
        "orders_paid",
        "Every paid order has a ledger entry",
        "critical",
        "fail",
        false,
    )];
    let with = page::render(&snap);
    let start = with.find("<svg class=\"trend\"").unwrap();
    let end = with[start..].find("</svg>").unwrap() + start + "</svg>".len();
    let without = format!("{}{}", &with[..start], &with[end..]);
    let dir = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for (name, html) in [("with", &with), ("without", &without)] {
        let file = dir.path().join(format!("{name}.html"));
        std::fs::write(&file, html).unwrap();
        let png = dir.path().join(format!("{name}.png"));
        let profile = tempfile::tempdir().unwrap();
        run_chromium(
            bin,
            profile.path(),
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=412,915".into(),
                format!("file://{}", file.display()),
            ],
        )
        .await;
        let img = png::decode(&std::fs::read(&png).unwrap()).unwrap();
        let count = |c: [u8; 3]| {
            (0..img.height)
                .flat_map(|y| (0..img.width).map(move |x| (x, y)))
                .filter(|&(x, y)| near(img.pixel(x, y), c))
                .count()
        };
        counts.push((count([0xcf, 0x22, 0x2e]), count([0x1a, 0x7f, 0x37])));
    }
    let [(red, green), (red0, green0)] = counts[..] else {
        unreachable!()
    };
    assert!(
        red >= red0 + 100,
        "red: {red} with the chart, {red0} without"
    );
    assert!(
        green >= green0 + 300,
        "green: {green} with the chart, {green0} without"
    );
    eprintln!(
        "the chart adds {} red and {} green pixels",
        red - red0,
        green - green0
    );
}

/// `(id, data-outcome, data-incident)` of each `data-invariant` element, in document order.
fn invariant_rows(dom: &str) -> Vec<(String, String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        let start = tag
            .find(&key)
            .unwrap_or_else(|| panic!("{name} missing in {tag}"))
            + key.len();
        tag[start..][..tag[start..].find('"').unwrap()].to_string()
    };
    dom.match_indices("data-invariant=\"")
        .map(|(at, _)| {
            let open = dom[..at].rfind('<').unwrap();
            let tag = &dom[open..at + dom[at..].find('>').unwrap()];
            (
                attr(tag, "data-invariant"),
                attr(tag, "data-outcome"),
                attr(tag, "data-incident"),
            )
        })
        .collect()
}

fn near(p: [u8; 3], c: [u8; 3]) -> bool {
    p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 12)
}

/// Just enough PNG to read Chromium's screenshots: 8-bit RGB or RGBA, not interlaced.
mod png {
    pub struct Image {
        pub width: usize,
        pub height: usize,
        channels: usize,
        data: Vec<u8>,
    }

    impl Image {
        pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
            let i = (y * self.width + x) * self.channels;
            [self.data[i], self.data[i + 1], self.data[i + 2]]
        }
    }

    fn be32(b: &[u8]) -> usize {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    pub fn decode(bytes: &[u8]) -> Result<Image, String> {
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err("not a PNG".into());
        }
        let (mut pos, mut idat) = (8, Vec::new());
        let (mut width, mut height, mut channels) = (0, 0, 0);
        while pos + 8 <= bytes.len() {
            let len = be32(&bytes[pos..]);
            let kind = &bytes[pos + 4..pos + 8];
            let body = bytes.get(pos + 8..pos + 8 + len).ok_or("truncated chunk")?;
            match kind {
                b"IHDR" => {
                    width = be32(body);
                    height = be32(&body[4..]);
                    let (depth, color, interlace) = (body[8], body[9], body[12]);
                    channels = match color {
                        2 => 3,
                        6 => 4,
                        _ => return Err(format!("colour type {color} not supported")),
                    };
                    if depth != 8 || interlace != 0 {
                        return Err(format!(
                            "depth {depth}, interlace {interlace} not supported"
                        ));
                    }
                }
                b"IDAT" => idat.extend_from_slice(body),
                b"IEND" => break,
                _ => {}
            }
            pos += 12 + len;
        }
        // zlib: a 2-byte header, deflate data, an Adler-32 we do not check.
        let raw = super::inflate::inflate(idat.get(2..).ok_or("no image data")?)?;
        let stride = width * channels;
        if raw.len() != height * (stride + 1) {
            return Err(format!(
                "{} bytes of pixels for {width}x{height}",
                raw.len()
            ));
        }
        let mut data = vec![0u8; height * stride];
        for y in 0..height {
            let filter = raw[y * (stride + 1)];
            let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
            for x in 0..stride {
                let a = if x >= channels {
                    data[y * stride + x - channels]
                } else {
                    0
                };
                let b = if y > 0 { data[(y - 1) * stride + x] } else { 0 };
                let c = if x >= channels && y > 0 {
                    data[(y - 1) * stride + x - channels]
                } else {
                    0
                };
                let predict = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((a as u16 + b as u16) / 2) as u8,
                    4 => {
                        let p = a as i16 + b as i16 - c as i16;
                        let (pa, pb, pc) = (
                            (p - a as i16).abs(),
                            (p - b as i16).abs(),
                            (p - c as i16).abs(),
                        );
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                    f => return Err(format!("filter {f}")),
                };
                data[y * stride + x] = line[x].wrapping_add(predict);
            }
        }
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }
}

/// A small DEFLATE decoder (RFC 1951: stored, fixed and dynamic Huffman blocks), after
/// Mark Adler's `puff`.
mod inflate {
    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
        buf: u32,
        count: u32,
    }

    impl Bits<'_> {
        fn take(&mut self, n: u32) -> Result<u32, String> {
            while self.count < n {
                let byte = *self.data.get(self.pos).ok_or("deflate data ends early")?;
                self.pos += 1;
                self.buf |= (byte as u32) << self.count;
                self.count += 8;
            }
            let v = self.buf & ((1u64 << n) - 1) as u32;
            self.buf >>= n;
            self.count -= n;
            Ok(v)
        }
    }

    struct Huffman {
        count: [u16; 16],
        symbol: Vec<u16>,
    }

    impl Huffman {
        fn new(lengths: &[u8]) -> Self {
            let mut count = [0u16; 16];
            for &l in lengths {
                count[l as usize] += 1;
            }
            count[0] = 0;
            let mut offs = [0u16; 16];
            for len in 1..15 {
                offs[len + 1] = offs[len] + count[len];
            }
            let mut symbol = vec![0u16; lengths.len()];
            for (sym, &l) in lengths.iter().enumerate() {
                if l != 0 {
                    symbol[offs[l as usize] as usize] = sym as u16;
                    offs[l as usize] += 1;
                }
            }
            Huffman { count, symbol }
        }

        fn decode(&self, bits: &mut Bits) -> Result<u16, String> {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for len in 1..16 {
                code |= bits.take(1)? as i32;
                let count = self.count[len] as i32;
                if code - count < first {
                    return Ok(self.symbol[(index + code - first) as usize]);
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            Err("bad Huffman code".into())
        }
    }

    const LBASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEXT: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DBASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DEXT: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];

    pub fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
        let mut bits = Bits {
            data,
            pos: 0,
            buf: 0,
            count: 0,
        };
        let mut out = Vec::new();
        loop {
            let last = bits.take(1)?;
            match bits.take(2)? {
                0 => {
                    bits.buf = 0;
                    bits.count = 0;
                    let p = bits.pos;
                    let head = data.get(p..p + 4).ok_or("stored block ends early")?;
                    let len = u16::from_le_bytes([head[0], head[1]]) as usize;
                    let body = data
                        .get(p + 4..p + 4 + len)
                        .ok_or("stored block ends early")?;
                    out.extend_from_slice(body);
                    bits.pos = p + 4 + len;
                }
                1 => {
                    let mut lengths = [0u8; 288];
                    lengths[..144].fill(8);
                    lengths[144..256].fill(9);
                    lengths[256..280].fill(7);
                    lengths[280..].fill(8);
                    let dist = Huffman::new(&[5u8; 30]);
                    codes(&mut bits, &mut out, &Huffman::new(&lengths), &dist)?;
                }
                2 => {
                    let nlen = bits.take(5)? as usize + 257;
                    let ndist = bits.take(5)? as usize + 1;
                    let ncode = bits.take(4)? as usize + 4;
                    const ORDER: [usize; 19] = [
                        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                    ];
                    let mut cl = [0u8; 19];
                    for &i in &ORDER[..ncode] {
                        cl[i] = bits.take(3)? as u8;
                    }
                    let clh = Huffman::new(&cl);
                    let mut lengths = vec![0u8; nlen + ndist];
                    let mut i = 0;
                    while i < nlen + ndist {
                        let sym = clh.decode(&mut bits)?;
                        let (value, repeat) = match sym {
                            0..=15 => (sym as u8, 1),
                            16 => {
                                let prev = *lengths[..i].last().ok_or("repeat with no length")?;
                                (prev, 3 + bits.take(2)? as usize)
                            }
                            17 => (0, 3 + bits.take(3)? as usize),
                            _ => (0, 11 + bits.take(7)? as usize),
                        };
                        let end = i + repeat;
                        if end > lengths.len() {
                            return Err("too many code lengths".into());
                        }
                        lengths[i..end].fill(value);
                        i = end;
                    }
                    let lit = Huffman::new(&lengths[..nlen]);
                    let dist = Huffman::new(&lengths[nlen..]);
                    codes(&mut bits, &mut out, &lit, &dist)?;
                }
                _ => return Err("bad block type".into()),
            }
            if last == 1 {
                return Ok(out);
            }
        }
    }

    fn codes(
        bits: &mut Bits,
        out: &mut Vec<u8>,
        lit: &Huffman,
        dist: &Huffman,
    ) -> Result<(), String> {
        loop {
            let sym = lit.decode(bits)? as usize;
            match sym {
                0..=255 => out.push(sym as u8),
                256 => return Ok(()),
                _ => {
                    let k = sym - 257;
                    if k >= 29 {
                        return Err("bad length code".into());
                    }
                    let len = LBASE[k] as usize + bits.take(LEXT[k] as u32)? as usize;
                    let d = dist.decode(bits)? as usize;
                    if d >= 30 {
                        return Err("bad distance code".into());
                    }
                    let back = DBASE[d] as usize + bits.take(DEXT[d] as u32)? as usize;
                    if back > out.len() {
                        return Err("distance too far back".into());
                    }
                    let from = out.len() - back;
                    for j in 0..len {
                        out.push(out[from + j]);
                    }
                }
            }
        }
    }
}
