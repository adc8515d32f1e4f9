//! Silences: while one holds an invariant, its runs are evaluated and recorded and its
//! incidents open and resolve, but its firing notice is held back — released by the first run
//! after the silence ends if the incident is still open, never sent if it resolved meanwhile.
//!
//! Two kinds, matched alike by a CEL expression over `id`, `severity`, `tags` and `suite`:
//! - recurring windows from the config (`silences:` — `every` a cron in a zone, for `for`);
//! - one-off silences from `invar silence add` or `POST /api/v1/silences`, kept in the store
//!   so replicas share them.

use crate::condition::{Condition, Scope};
use crate::model::Invariant;
use crate::schedule::Schedule;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// A recurring maintenance window from the config.
#[derive(Debug, Clone)]
pub struct SilenceRule {
    pub matcher: Condition,
    /// Each tick opens a window (DST-correct, the scheduler's cron rules).
    pub every: Schedule,
    pub duration: Duration,
    pub reason: String,
    /// `file:line` of its entry: its id is `config:<defined_at>`.
    pub defined_at: String,
}

impl SilenceRule {
    /// The window holding `t`, `[start, end)`, if any: the first tick after `t - for`, when
    /// it is not after `t`.
    pub fn window_at(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let len = TimeDelta::from_std(self.duration).ok()?;
        let start = self.every.next_after(t.checked_sub_signed(len)?)?;
        (start <= t).then(|| {
            (
                start,
                start
                    .checked_add_signed(len)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            )
        })
    }

    pub fn id(&self) -> String {
        format!("config:{}", self.defined_at)
    }
}

/// A silence in force at a run's instant.
#[derive(Debug, Clone)]
pub struct ActiveSilence {
    /// `config:FILE:LINE` for a window of the config, the store's id for a one-off.
    pub id: String,
    pub matcher: Condition,
    /// Exclusive.
    pub until: DateTime<Utc>,
    pub reason: String,
}

impl ActiveSilence {
    /// A one-off silence's matcher as stored; an expression that no longer compiles matches
    /// nothing (and says why).
    pub fn compile(
        id: &str,
        matcher: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<ActiveSilence, String> {
        let matcher = compile_matcher(matcher)
            .map_err(|e| format!("silence {id}: `{matcher}` is not a valid matcher: {e}"))?;
        Ok(ActiveSilence {
            id: id.to_string(),
            matcher,
            until,
            reason: reason.to_string(),
        })
    }

    /// Whether it holds `inv` in a run of `suite`; an evaluation error is `Err`.
    pub fn matches(&self, inv: &Invariant, suite: &str) -> Result<bool, String> {
        let mut ctx = inv.cel_context();
        ctx.add_variable_from_value("suite", suite.to_string());
        self.matcher.eval_bool(&ctx)
    }
}

/// A silence's `match` (CEL over `id`, `severity`, `tags`, `suite`), or its first error.
pub fn compile_matcher(src: &str) -> Result<Condition, String> {
    Condition::compile(src, Scope::Silence)
        .map_err(|e| e.first().map(|e| e.message.clone()).unwrap_or_default())
}

/// The config's windows open at `now`.
pub fn active_rules(rules: &[SilenceRule], now: DateTime<Utc>) -> Vec<ActiveSilence> {
    rules
        .iter()
        .filter_map(|r| {
            let (_, until) = r.window_at(now)?;
            Some(ActiveSilence {
                id: r.id(),
                matcher: r.matcher.clone(),
                until,
                reason: r.reason.clone(),
            })
        })
        .collect()
}

/// The first silence holding `inv`, if any (errors are logged by the caller and match nothing).
pub fn holding<'a>(
    silences: &'a [ActiveSilence],
    inv: &Invariant,
    suite: &str,
) -> (Option<&'a ActiveSilence>, Vec<String>) {
    let mut errors = Vec::new();
    for s in silences {
        match s.matches(inv, suite) {
            Ok(true) => return (Some(s), errors),
            Ok(false) => {}
            Err(e) => errors.push(format!("silence {}: {e}", s.id)),
        }
    }
    (None, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rule(cron: &str, zone: &str, mins: u64) -> SilenceRule {
        SilenceRule {
            matcher: Condition::compile("'db' in tags", Scope::Silence).unwrap(),
            every: Schedule::parse(cron, Some(zone)).unwrap(),
            duration: Duration::from_secs(mins * 60),
            reason: "vacuum".into(),
            defined_at: "invar.yaml:3".into(),
        }
    }

    #[test]
    fn a_window_across_the_spring_dst_change_lasts_its_real_duration() {
        // Europe/Berlin, Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST. A 01:30 window of
        // 2 h runs from 00:30 UTC to 02:30 UTC (04:30 CEST on the wall).
        let r = rule("30 1 * * 0", "Europe/Berlin", 120);
        let silenced = |t: &str| r.window_at(at(t)).is_some();
        assert!(!silenced("2026-03-29T00:29:59Z"));
        assert!(silenced("2026-03-29T00:30:00Z"));
        assert!(silenced("2026-03-29T02:29:59Z"));
        assert!(!silenced("2026-03-29T02:30:00Z"));
        assert_eq!(
            r.window_at(at("2026-03-29T01:00:00Z")),
            Some((at("2026-03-29T00:30:00Z"), at("2026-03-29T02:30:00Z")))
        );
        // The week before (CET, UTC+1) and after (CEST, UTC+2): the same wall time.
        assert!(silenced("2026-03-22T00:30:00Z"));
        assert!(silenced("2026-04-04T23:30:00Z"));
        assert!(!silenced("2026-04-05T01:30:00Z"));
    }

    #[test]
    fn a_window_in_the_repeated_autumn_hour_opens_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice; the scheduler
        // fires the first one only (its DST rule), and the window is 30 minutes from it.
        let r = rule("30 2 * * 0", "Europe/Berlin", 30);
        assert!(r.window_at(at("2026-10-25T00:30:00Z")).is_some());
        assert!(r.window_at(at("2026-10-25T00:59:59Z")).is_some());
        assert!(r.window_at(at("2026-10-25T01:00:00Z")).is_none());
        assert!(r.window_at(at("2026-10-25T01:30:00Z")).is_none());
    }

    #[test]
    fn matchers_see_id_severity_tags_and_suite() {
        let inv = Invariant {
            id: "ORD-01".into(),
            title: "t".into(),
            severity: crate::model::Severity::Major,
            tags: vec!["db".into()],
            runbook: None,
            owner: None,
            timeout: None,
            skip_if: None,
            fire_after: 1,
            resolve_after: 1,
            alerts: vec![],
            check: crate::model::Check::Probe(crate::model::ProbeCheck {
                probe: crate::model::Probe::Values(vec![]),
                skip_when: None,
                fail_when: None,
                warn_when: None,
                every_row: None,
                on_empty: crate::model::OnEmpty::Pass,
                anomaly: None,
            }),
            history: None,
            vacuous_after: None,
            defined_at: "x:1".into(),
        };
        let s = ActiveSilence::compile(
            "x",
            "id == 'ORD-01' && suite == 'nightly' && 'db' in tags && severity == 'major'",
            at("2026-01-01T00:00:00Z"),
            "r",
        )
        .unwrap();
        assert_eq!(s.matches(&inv, "nightly"), Ok(true));
        assert_eq!(s.matches(&inv, "gate"), Ok(false));
        assert!(ActiveSilence::compile("x", "id ==", at("2026-01-01T00:00:00Z"), "r").is_err());
    }
}
