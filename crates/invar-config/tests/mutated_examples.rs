//! No input makes the loader panic or hang: every `examples/*.yaml`, mutated by a seeded
//! simple mutator (numbers replaced by huge, negative and NaN-ish values, lines deleted,
//! duplicated and swapped, characters flipped), goes through the loader in-process and its
//! diagnostics are rendered. Each case must return (no panic) within a bounded time.
//!
//! The issue that started this found 79 panics in 3,000 such cases through the binary, all
//! `Duration::from_secs_f64` on a huge duration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Cases per example file; ~17 files make a few thousand cases.
const CASES_PER_FILE: usize = 200;
/// One case may take this long (a debug build on a loaded 2-core machine takes ~1 ms).
const CASE_LIMIT: Duration = Duration::from_secs(2);

/// xorshift64*: deterministic, so a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const NUMBERS: &[&str] = &[
    "18446744073709551616",
    "99999999999999999999",
    "4294967296",
    "-1",
    "-0",
    "0",
    "NaN",
    ".nan",
    ".inf",
    "-.inf",
    "1e400",
    "1.5.5",
    "0x10",
    "9999999999999999999999999999999999999999999999999999999999999999999999999999999999",
];

const FLIPS: &[char] = &[
    ':', '-', '{', '}', '[', ']', '"', '\'', '*', '&', '!', '|', '>', '#', ' ', '\t', '\0', '\\',
    '$', '%', '@', 'é', '\u{feff}', '\n',
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(3) {
        if lines.is_empty() {
            break;
        }
        let i = rng.below(lines.len());
        match rng.below(6) {
            // Replace the n-th digit run of a line (durations keep their unit: `30s` → `…s`).
            0 | 1 => {
                let line = &lines[i];
                let runs: Vec<(usize, usize)> = digit_runs(line);
                if let Some(&(a, b)) = runs.get(rng.below(runs.len())) {
                    let with = NUMBERS[rng.below(NUMBERS.len())];
                    lines[i] = format!("{}{with}{}", &line[..a], &line[b..]);
                }
            }
            2 => {
                lines.remove(i);
            }
            3 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            4 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            _ => {
                let chars: Vec<char> = lines[i].chars().collect();
                if !chars.is_empty() {
                    let at = rng.below(chars.len());
                    let mut c = chars;
                    c[at] = FLIPS[rng.below(FLIPS.len())];
                    lines[i] = c.into_iter().collect();
                }
            }
        }
    }
    lines.join("\n")
}

fn digit_runs(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// Values for the examples' `${VAR}`s, so validation goes past interpolation.
fn env(name: &str) -> Option<String> {
    if name.ends_with("URL") {
        Some("postgres://app:hunter22@127.0.0.1:5432/test".into())
    } else if name.ends_with("TOKEN") {
        Some("tok-abcdefghijklmnopqrstuvwxyz".into())
    } else {
        Some("1".into())
    }
}

fn example_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("examples directory").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mutated_examples_never_panic_or_hang() {
    let files = example_files();
    assert!(files.len() >= 10, "examples found: {files:?}");
    let (mut cases, mut rejected, mut slowest) = (0usize, 0usize, Duration::ZERO);
    for (f, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("example readable");
        for case in 0..CASES_PER_FILE {
            let seed = 0x9E37_79B9_7F4A_7C15 ^ ((f as u64) << 32 | case as u64);
            let mut rng = Rng(seed);
            let mutated = mutate(&text, &mut rng);
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                match invar_config::load_from_str(path, &mutated, &env) {
                    Ok(_) => false,
                    Err(d) => {
                        // Rendering is part of what `invar validate` does.
                        let _ = d.render(false);
                        let _ = d.render(true);
                        true
                    }
                }
            }));
            let took = t.elapsed();
            let Ok(was_rejected) = outcome else {
                panic!(
                    "the loader panicked on {} mutated with seed {seed:#x}:\n{mutated}",
                    path.display()
                );
            };
            assert!(
                took < CASE_LIMIT,
                "{} mutated with seed {seed:#x} took {took:?}:\n{mutated}",
                path.display()
            );
            cases += 1;
            rejected += usize::from(was_rejected);
            slowest = slowest.max(took);
        }
    }
    // The mutator must actually break configs, or this test proves nothing.
    assert!(
        rejected * 3 > cases,
        "only {rejected} of {cases} mutated configs were rejected"
    );
    eprintln!("{cases} mutated configs, {rejected} rejected, slowest {slowest:?}");
}
