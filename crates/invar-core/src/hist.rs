//! What an invariant's own history says. The caller loads the measurements of its earlier
//! runs from the store (the window, and the weekday when `same_weekday` is set, already
//! applied: see invar-record); here they become `hist.<measure>.<stat>` for its conditions
//! and the robust z-score of `anomaly`. Pure: the same past gives the same verdict.

use crate::model::{Anomaly, Direction};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The statistics `hist.<measure>` offers, in the order the docs list them.
pub const STATS: [&str; 10] = [
    "median", "mean", "stddev", "mad", "min", "max", "p10", "p90", "last", "count",
];

/// The measurements of one earlier run in which the invariant's probe was read.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub at: DateTime<Utc>,
    pub measured: serde_json::Map<String, serde_json::Value>,
}

/// One measure over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub stddev: f64,
    /// Median absolute deviation from the median (unscaled).
    pub mad: f64,
    pub min: f64,
    pub max: f64,
    /// Percentiles by linear interpolation between closest ranks.
    pub p10: f64,
    pub p90: f64,
    /// The most recent run's value.
    pub last: f64,
    pub count: usize,
}

impl Stats {
    /// None for no values. `values` oldest first.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let last = *values.last()?;
        let n = values.len();
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let median = percentile(&sorted, 0.5);
        let mut dev: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        Some(Stats {
            median,
            mean,
            stddev: var.sqrt(),
            mad: percentile(&dev, 0.5),
            min: sorted[0],
            max: sorted[n - 1],
            p10: percentile(&sorted, 0.1),
            p90: percentile(&sorted, 0.9),
            last,
            count: n,
        })
    }

    fn get(&self, stat: &str) -> Option<f64> {
        Some(match stat {
            "median" => self.median,
            "mean" => self.mean,
            "stddev" => self.stddev,
            "mad" => self.mad,
            "min" => self.min,
            "max" => self.max,
            "p10" => self.p10,
            "p90" => self.p90,
            "last" => self.last,
            "count" => self.count as f64,
            _ => return None,
        })
    }
}

/// `q` in [0, 1] over sorted, non-empty values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (sorted[lo], sorted[hi.min(sorted.len() - 1)]);
    a + (b - a) * (pos - lo as f64)
}

/// The window's runs reduced per numeric measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Runs in the window (the `min_runs` count).
    pub runs: usize,
    pub measures: BTreeMap<String, Stats>,
}

impl Summary {
    /// `past` in any order; each measure from the runs where it was a finite number.
    pub fn of(past: &[PastRun]) -> Summary {
        let mut ordered: Vec<&PastRun> = past.iter().collect();
        ordered.sort_by_key(|p| p.at);
        let mut series: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for p in &ordered {
            for (k, v) in &p.measured {
                if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                    series.entry(k.as_str()).or_default().push(x);
                }
            }
        }
        Summary {
            runs: ordered.len(),
            measures: series
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), Stats::of(&v)?)))
                .collect(),
        }
    }

    /// `hist` as CEL sees it: a map of measures, each a map of its statistics (doubles).
    pub fn to_cel(&self) -> cel::Value {
        let measures: std::collections::HashMap<cel::objects::Key, cel::Value> = self
            .measures
            .iter()
            .map(|(m, s)| {
                let stats: std::collections::HashMap<cel::objects::Key, cel::Value> = STATS
                    .iter()
                    .filter_map(|st| {
                        Some((
                            cel::objects::Key::String(Arc::new((*st).to_string())),
                            cel::Value::Float(s.get(st)?),
                        ))
                    })
                    .collect();
                (
                    cel::objects::Key::String(Arc::new(m.clone())),
                    cel::Value::Map(cel::objects::Map {
                        map: Arc::new(stats),
                    }),
                )
            })
            .collect();
        cel::Value::Map(cel::objects::Map {
            map: Arc::new(measures),
        })
    }
}

/// Monday = 0 … Sunday = 6 of `t` in `zone` (an IANA name; None or unknown: UTC), for
/// `same_weekday`.
pub fn weekday(t: DateTime<Utc>, zone: Option<&str>) -> u8 {
    let tz = zone
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_second(t.timestamp())
        .map(|ts| ts.to_zoned(tz).weekday().to_monday_zero_offset() as u8)
        .unwrap_or_else(|_| {
            use chrono::Datelike;
            t.weekday().num_days_from_monday() as u8
        })
}

/// What `anomaly` found: the robust z-score of `x` against the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub x: f64,
    pub median: f64,
    pub mad: f64,
    /// `(x − median) / (1.4826 · MAD)`, signed; ±∞ when MAD is 0 and x differs, 0 when equal.
    pub z: f64,
}

/// 1.4826 · MAD estimates the standard deviation of normally distributed data.
pub const MAD_SCALE: f64 = 1.4826;

impl Score {
    pub fn of(x: f64, s: &Stats) -> Score {
        let spread = MAD_SCALE * s.mad;
        let d = x - s.median;
        let z = if d == 0.0 {
            0.0
        } else if spread == 0.0 {
            d.signum() * f64::INFINITY
        } else {
            d / spread
        };
        Score {
            x,
            median: s.median,
            mad: s.mad,
            z,
        }
    }

    /// How far past the threshold in the direction that counts (`up`: x above the median).
    pub fn beyond(&self, a: &Anomaly, threshold: f64) -> bool {
        let z = match a.direction {
            Direction::Both => self.z.abs(),
            Direction::Up => self.z,
            Direction::Down => -self.z,
        };
        z > threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(day: u32, n: f64) -> PastRun {
        let mut measured = serde_json::Map::new();
        measured.insert("n".into(), n.into());
        measured.insert("label".into(), "x".into());
        PastRun {
            at: Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap(),
            measured,
        }
    }

    #[test]
    fn statistics_of_a_known_series() {
        let s = Stats::of(&[10.0, 12.0, 11.0, 13.0, 100.0]).unwrap();
        assert_eq!(s.median, 12.0);
        assert_eq!(s.mean, 29.2);
        assert_eq!((s.min, s.max, s.last, s.count), (10.0, 100.0, 100.0, 5));
        // |x − 12| = 2, 0, 1, 1, 88 → sorted 0, 1, 1, 2, 88 → 1.
        assert_eq!(s.mad, 1.0);
        assert!((s.p10 - 10.4).abs() < 1e-9, "{}", s.p10);
        assert!((s.p90 - 65.2).abs() < 1e-9, "{}", s.p90);
        // Σ(x − 29.2)² = 6270.8; / 4 = 1567.7.
        assert!((s.stddev - 1567.7f64.sqrt()).abs() < 1e-9, "{}", s.stddev);
        assert_eq!(Stats::of(&[]), None);
        let one = Stats::of(&[4.0]).unwrap();
        assert_eq!(
            (one.stddev, one.mad, one.p10, one.p90),
            (0.0, 0.0, 4.0, 4.0)
        );
    }

    #[test]
    fn the_summary_orders_runs_and_skips_what_is_not_a_number() {
        let past = vec![run(3, 30.0), run(1, 10.0), run(2, f64::NAN), run(4, 40.0)];
        let s = Summary::of(&past);
        assert_eq!(s.runs, 4);
        let n = s.measures["n"];
        assert_eq!((n.count, n.last, n.median), (3, 40.0, 30.0));
        assert!(!s.measures.contains_key("label"));
    }

    #[test]
    fn weekdays_follow_the_zone() {
        // 2026-11-30 23:30 UTC is a Monday in UTC and already Tuesday in Berlin.
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 23, 30, 0).unwrap();
        assert_eq!(weekday(t, None), 0);
        assert_eq!(weekday(t, Some("Europe/Berlin")), 1);
        assert_eq!(weekday(t, Some("America/Los_Angeles")), 0);
        assert_eq!(weekday(t, Some("Not/AZone")), 0);
    }

    #[test]
    fn robust_z_scores_and_a_constant_history() {
        let s = Stats::of(&[10.0, 11.0, 12.0, 13.0, 14.0]).unwrap();
        // median 12, MAD 1: (20 − 12) / 1.4826 = 5.396
        let z = Score::of(20.0, &s);
        assert!((z.z - 8.0 / MAD_SCALE).abs() < 1e-9);
        let a = |direction| Anomaly {
            measure: "n".into(),
            threshold: 3.5,
            warn_threshold: None,
            direction,
        };
        assert!(z.beyond(&a(Direction::Both), 3.5));
        assert!(z.beyond(&a(Direction::Up), 3.5));
        assert!(!z.beyond(&a(Direction::Down), 3.5));
        let flat = Stats::of(&[5.0, 5.0, 5.0]).unwrap();
        assert_eq!(Score::of(5.0, &flat).z, 0.0);
        assert_eq!(Score::of(6.0, &flat).z, f64::INFINITY);
        assert!(Score::of(6.0, &flat).beyond(&a(Direction::Both), 1e9));
        assert!(!Score::of(4.0, &flat).beyond(&a(Direction::Up), 3.5));
    }
}
