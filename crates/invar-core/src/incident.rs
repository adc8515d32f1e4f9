//! Incidents: the alert state of one invariant (or one source), as a pure state machine.
//!
//! Each run gives every *subject* — an invariant, or a source (`source:NAME`) — a [`Signal`]:
//!
//! | outcome | signal | effect |
//! |---|---|---|
//! | `fail` | red | counts towards opening (`fire_after` consecutive reds) |
//! | `pass`, `warn` | green | counts towards resolving (`resolve_after` consecutive greens) |
//! | `skip`, `error` | neutral | nothing: neither opens, resolves, nor breaks a streak |
//!
//! **`warn` is green.** A warning means the invariant holds (its `fail_when` did not), so it
//! neither opens an incident nor keeps one open; the run report still shows the warning and a
//! suite with `fail_on: warn` still exits 1. Skips and errors are transparent: a run that
//! could not assess the invariant tells nothing about it, so `red, error, red` is two
//! consecutive reds.
//!
//! An incident sends **one** firing notice when it opens and **one** resolved notice when it
//! resolves. Two things hold a firing notice back (it is released later, or dropped if the
//! incident resolves first — a resolve is only sent for a firing that was sent):
//! - **a source incident**: a source that cannot be read opens its own incident (one notice);
//!   the invariants that read it are held until it recovers;
//! - **flapping**: more than [`FLAP_LIMIT`] transitions (opens + resolves) of one subject within
//!   [`FLAP_WINDOW`] send one flapping notice instead of a storm; further firings of that
//!   subject are held until the window calms down. A resolve of a firing that *was* sent is
//!   always sent.
//!
//! When an incident opens, `last_red_at` is the last red run before the current red streak
//! (the "last red 42m ago" of a reopening), if there was one.

use crate::model::{Config, Invariant};
use crate::report::{Outcome, RunReport, Trigger};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// More transitions than this within [`FLAP_WINDOW`] is flapping.
pub const FLAP_LIMIT: usize = 6;
/// The window over which transitions are counted for flapping.
pub const FLAP_WINDOW: TimeDelta = TimeDelta::hours(24);
/// The prefix of a source subject: `source:app`.
pub const SOURCE_PREFIX: &str = "source:";
/// The prefix of a suite subject (the dead-man's switch of a scheduled suite): `suite:nightly`.
pub const SUITE_PREFIX: &str = "suite:";

/// What one run says about a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Red,
    Green,
    Neutral,
}

impl Signal {
    /// `fail` is red; `pass` and `warn` are green; `skip` and `error` are neutral.
    pub fn from_outcome(o: Outcome) -> Signal {
        match o {
            Outcome::Fail => Signal::Red,
            Outcome::Pass | Outcome::Warn => Signal::Green,
            Outcome::Skip | Outcome::Error => Signal::Neutral,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    #[default]
    Invariant,
    Source,
    /// A scheduled suite whose run did not happen on time.
    Suite,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Invariant => "invariant",
            SubjectKind::Source => "source",
            SubjectKind::Suite => "suite",
        }
    }
}

/// Consecutive runs needed to open and to resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub fire_after: u32,
    pub resolve_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fire_after: 1,
            resolve_after: 1,
        }
    }
}

/// An open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub id: String,
    pub opened_at: DateTime<Utc>,
    /// Whether its firing notice was released (false while held back).
    pub alerted: bool,
    /// The last red run before the streak that opened it.
    pub last_red_at: Option<DateTime<Utc>>,
}

/// The remembered state of one subject between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IncidentState {
    /// An invariant id, or `source:NAME`.
    pub subject: String,
    pub kind: SubjectKind,
    pub red_streak: u32,
    pub green_streak: u32,
    pub open: Option<OpenIncident>,
    /// The last red run.
    pub last_red_at: Option<DateTime<Utc>>,
    /// The last red run before the current red streak began.
    pub red_before_streak: Option<DateTime<Utc>>,
    /// Opens and resolves within [`FLAP_WINDOW`] (older ones are dropped).
    pub transitions: Vec<DateTime<Utc>>,
    /// A flapping notice was sent and the window has not calmed down since.
    pub flapping: bool,
}

impl IncidentState {
    pub fn new(subject: impl Into<String>, kind: SubjectKind) -> IncidentState {
        IncidentState {
            subject: subject.into(),
            kind,
            ..IncidentState::default()
        }
    }
}

/// What happened, in order. Only events with an `alert` produce notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An incident opened (its firing notice may be held).
    Opened,
    /// An incident resolved.
    Resolved,
    /// A held firing notice is released (the source recovered, or flapping calmed down).
    Released,
    /// The subject started flapping: one notice instead of a storm.
    Flapping,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Resolved => "resolved",
            EventKind::Released => "released",
            EventKind::Flapping => "flapping",
        }
    }
}

/// The notice an event sends, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    Firing,
    Resolved,
    Flapping,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Firing => "firing",
            Notice::Resolved => "resolved",
            Notice::Flapping => "flapping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub subject: String,
    pub subject_kind: SubjectKind,
    pub kind: EventKind,
    pub incident_id: Option<String>,
    pub at: DateTime<Utc>,
    /// For an opened/released incident: the last red before it ("last red Xm ago").
    pub last_red_at: Option<DateTime<Utc>>,
    /// For a resolved incident: when it opened.
    pub opened_at: Option<DateTime<Utc>>,
    /// The notice to send; None when held back or suppressed.
    pub notice: Option<Notice>,
    /// Why a firing notice is held: the sources with an open incident, or `flapping`.
    pub held_by: Vec<String>,
    /// For flapping: transitions within the window.
    pub transitions: usize,
}

/// One step of one subject: the previous state, this run's signal, the sources that hold its
/// notices back (open source incidents), and the time. `new_id` names a new incident.
pub fn step(
    prev: &IncidentState,
    policy: Policy,
    signal: Signal,
    held_by: &[String],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> String,
) -> (IncidentState, Vec<IncidentEvent>) {
    let mut s = prev.clone();
    let mut events = Vec::new();
    s.transitions.retain(|t| now - *t < FLAP_WINDOW);
    let event = |s: &IncidentState, kind: EventKind| IncidentEvent {
        subject: s.subject.clone(),
        subject_kind: s.kind,
        kind,
        incident_id: s.open.as_ref().map(|o| o.id.clone()),
        at: now,
        last_red_at: None,
        opened_at: None,
        notice: None,
        held_by: Vec::new(),
        transitions: s.transitions.len(),
    };
    let fire_after = policy.fire_after.max(1);
    let resolve_after = policy.resolve_after.max(1);

    match signal {
        Signal::Neutral => {}
        Signal::Red => {
            if s.red_streak == 0 {
                s.red_before_streak = s.last_red_at;
            }
            s.red_streak = s.red_streak.saturating_add(1);
            s.green_streak = 0;
            s.last_red_at = Some(now);
            if s.open.is_none() && s.red_streak >= fire_after {
                s.transitions.push(now);
                let flapping_now = s.transitions.len() > FLAP_LIMIT;
                s.open = Some(OpenIncident {
                    id: new_id(),
                    opened_at: now,
                    alerted: false,
                    last_red_at: s.red_before_streak,
                });
                if flapping_now && !s.flapping {
                    s.flapping = true;
                    let mut e = event(&s, EventKind::Flapping);
                    e.notice = Some(Notice::Flapping);
                    events.push(e);
                }
                let mut e = event(&s, EventKind::Opened);
                e.last_red_at = s.red_before_streak;
                if s.flapping {
                    e.held_by = vec!["flapping".into()];
                } else if !held_by.is_empty() {
                    e.held_by = held_by.to_vec();
                } else {
                    e.notice = Some(Notice::Firing);
                    if let Some(o) = &mut s.open {
                        o.alerted = true;
                    }
                }
                events.push(e);
            }
        }
        Signal::Green => {
            s.green_streak = s.green_streak.saturating_add(1);
            s.red_streak = 0;
            if s.open.is_some() && s.green_streak >= resolve_after {
                s.transitions.push(now);
                if s.transitions.len() > FLAP_LIMIT && !s.flapping {
                    s.flapping = true;
                    let mut e = event(&s, EventKind::Flapping);
                    e.notice = Some(Notice::Flapping);
                    events.push(e);
                }
                if let Some(open) = s.open.take() {
                    let mut e = event(&s, EventKind::Resolved);
                    e.incident_id = Some(open.id);
                    e.opened_at = Some(open.opened_at);
                    // A resolve is sent exactly when its firing was.
                    e.notice = open.alerted.then_some(Notice::Resolved);
                    events.push(e);
                }
            }
        }
    }

    // Flapping ends when the window holds no more than the limit again.
    if s.flapping && s.transitions.len() <= FLAP_LIMIT {
        s.flapping = false;
    }
    // A held firing is released once nothing holds it.
    if !s.flapping
        && held_by.is_empty()
        && let Some(open) = &mut s.open
        && !open.alerted
    {
        open.alerted = true;
        let last_red_at = open.last_red_at;
        let mut e = event(&s, EventKind::Released);
        e.last_red_at = last_red_at;
        e.notice = Some(Notice::Firing);
        events.push(e);
    }
    (s, events)
}

/// One subject's observation in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub subject: String,
    pub kind: SubjectKind,
    pub signal: Signal,
    pub policy: Policy,
    /// For invariants: the sources it reads (their open incidents hold its notices).
    pub sources: Vec<String>,
    /// What else holds its firing notice this run: `silence <id>` while a silence matches.
    pub held_by: Vec<String>,
}

/// What a run says about every subject it touched: each source it needed (red when
/// unavailable, green when read, absent when no check needed it), then each invariant.
/// Invariants missing from `config` (renamed since) get the default policy and no sources.
pub fn observe(config: &Config, report: &RunReport) -> Vec<Observation> {
    let unavailable: BTreeSet<&str> = report
        .sources_unavailable
        .iter()
        .filter_map(|s| s.source_name())
        .collect();
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut invs = Vec::new();
    for r in &report.results {
        let inv: Option<&Invariant> = config.invariant(&r.id);
        let sources: Vec<String> = inv
            .map(|i| i.check.sources().into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        if r.outcome != Outcome::Skip {
            needed.extend(sources.iter().cloned());
        }
        invs.push(Observation {
            held_by: Vec::new(),
            subject: r.id.clone(),
            kind: SubjectKind::Invariant,
            signal: Signal::from_outcome(r.outcome),
            policy: inv
                .map(|i| Policy {
                    fire_after: i.fire_after,
                    resolve_after: i.resolve_after,
                })
                .unwrap_or_default(),
            sources,
        });
    }
    // Only problems about a configured source say anything about sources (a watchdog's
    // `overdue` or a failed `select` do not, whatever a source happens to be called).
    for s in &unavailable {
        if config.sources.contains_key(*s) {
            needed.insert(s.to_string());
        }
    }
    let mut out: Vec<Observation> = needed
        .into_iter()
        .map(|name| Observation {
            held_by: Vec::new(),
            signal: if unavailable.contains(name.as_str()) {
                Signal::Red
            } else {
                Signal::Green
            },
            subject: format!("{SOURCE_PREFIX}{name}"),
            kind: SubjectKind::Source,
            policy: Policy::default(),
            sources: Vec::new(),
        })
        .collect();
    out.extend(invs);
    // The dead-man's switch of a scheduled suite: red on the watchdog's record, green on any
    // scheduled run that was recorded (a lock_skipped tick says nothing).
    let scheduled = config
        .suite(&report.suite)
        .is_some_and(|s| s.schedule.is_some());
    let signal = if report.trigger == Trigger::Watchdog {
        Some(Signal::Red)
    } else if report.trigger == Trigger::Schedule && !report.lock_skipped {
        Some(Signal::Green)
    } else {
        None
    };
    if let (true, Some(signal)) = (scheduled, signal) {
        out.push(Observation {
            held_by: Vec::new(),
            subject: format!("{SUITE_PREFIX}{}", report.suite),
            kind: SubjectKind::Suite,
            signal,
            policy: Policy::default(),
            sources: Vec::new(),
        });
    }
    out
}

/// The result of advancing every observed subject by one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Advance {
    /// The new state of every observed subject (unobserved subjects are unchanged).
    pub states: Vec<IncidentState>,
    /// Every event, sources first.
    pub events: Vec<IncidentEvent>,
}

/// Advances every observed subject. Sources go first, so an invariant is held by exactly the
/// source incidents open *after* this run.
pub fn advance(
    prev: &BTreeMap<String, IncidentState>,
    observations: &[Observation],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> String,
) -> Advance {
    let mut out = Advance::default();
    let mut open_sources: BTreeSet<String> = prev
        .values()
        .filter(|s| s.kind == SubjectKind::Source && s.open.is_some())
        .map(|s| s.subject[SOURCE_PREFIX.len()..].to_string())
        .collect();
    let mut ordered: Vec<&Observation> = observations
        .iter()
        .filter(|o| o.kind == SubjectKind::Source)
        .collect();
    ordered.extend(
        observations
            .iter()
            .filter(|o| o.kind != SubjectKind::Source),
    );
    for o in ordered {
        let before = prev
            .get(&o.subject)
            .cloned()
            .unwrap_or_else(|| IncidentState::new(o.subject.clone(), o.kind));
        let held: Vec<String> = o
            .sources
            .iter()
            .filter(|s| open_sources.contains(*s))
            .cloned()
            .chain(o.held_by.iter().cloned())
            .collect();
        let (after, events) = step(&before, o.policy, o.signal, &held, now, new_id);
        if o.kind == SubjectKind::Source {
            let name = o.subject[SOURCE_PREFIX.len()..].to_string();
            if after.open.is_some() {
                open_sources.insert(name);
            } else {
                open_sources.remove(&name);
            }
        }
        out.states.push(after);
        out.events.extend(events);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + TimeDelta::minutes(min)
    }

    /// Runs `signals` (one per `gap` minutes) through one subject; returns the notices sent.
    fn run(signals: &[Signal], policy: Policy, gap: i64) -> Vec<(Notice, i64)> {
        let mut s = IncidentState::new("INV-1", SubjectKind::Invariant);
        let mut n = 0;
        let mut out = Vec::new();
        for (i, sig) in signals.iter().enumerate() {
            let mut id = || {
                n += 1;
                format!("inc-{n}")
            };
            let (next, events) = step(&s, policy, *sig, &[], t(i as i64 * gap), &mut id);
            for e in events {
                if let Some(notice) = e.notice {
                    out.push((notice, i as i64));
                }
            }
            s = next;
        }
        out
    }

    use Signal::{Green as G, Neutral as N, Red as R};

    #[test]
    fn red_red_green_red_fires_resolves_fires() {
        let notices = run(&[R, R, G, R], Policy::default(), 60);
        assert_eq!(
            notices,
            vec![
                (Notice::Firing, 0),
                (Notice::Resolved, 2),
                (Notice::Firing, 3)
            ]
        );
    }

    #[test]
    fn fire_after_two_waits_for_the_second_red() {
        let p = Policy {
            fire_after: 2,
            resolve_after: 1,
        };
        assert_eq!(run(&[R], p, 60), vec![]);
        assert_eq!(run(&[R, R], p, 60), vec![(Notice::Firing, 1)]);
        assert_eq!(run(&[R, G, R], p, 60), vec![]);
        // Skips and errors are transparent: red, error, red is two reds.
        assert_eq!(run(&[R, N, R], p, 60), vec![(Notice::Firing, 2)]);
    }

    #[test]
    fn resolve_after_needs_consecutive_greens() {
        let p = Policy {
            fire_after: 1,
            resolve_after: 3,
        };
        assert_eq!(
            run(&[R, G, G, R, G, N, G, G], p, 60),
            vec![(Notice::Firing, 0), (Notice::Resolved, 7)]
        );
    }

    #[test]
    fn warn_is_green() {
        assert_eq!(Signal::from_outcome(Outcome::Warn), Signal::Green);
        assert_eq!(Signal::from_outcome(Outcome::Skip), Signal::Neutral);
        assert_eq!(Signal::from_outcome(Outcome::Error), Signal::Neutral);
    }

    #[test]
    fn reopening_knows_when_it_was_last_red() {
        let mut s = IncidentState::new("X", SubjectKind::Invariant);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("i{n}")
        };
        for (m, sig) in [(0, R), (10, R), (20, G)] {
            s = step(&s, Policy::default(), sig, &[], t(m), &mut id).0;
        }
        let (_, ev) = step(&s, Policy::default(), R, &[], t(62), &mut id);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Opened);
        assert_eq!(ev[0].last_red_at, Some(t(10)));
        assert_eq!(ev[0].incident_id.as_deref(), Some("i2"));
    }

    #[test]
    fn a_storm_becomes_one_flapping_notice() {
        // 20 alternations an hour apart: 6 transitions alert, then one flapping notice.
        let signals: Vec<Signal> = (0..20).map(|i| if i % 2 == 0 { R } else { G }).collect();
        let notices = run(&signals, Policy::default(), 60);
        let kinds: Vec<Notice> = notices.iter().map(|n| n.0).collect();
        assert_eq!(
            kinds,
            vec![
                Notice::Firing,
                Notice::Resolved,
                Notice::Firing,
                Notice::Resolved,
                Notice::Firing,
                Notice::Resolved,
                Notice::Flapping,
            ]
        );
    }

    #[test]
    fn flapping_calms_down_and_a_held_firing_is_released() {
        // Flap for 7 transitions, then stay red: after the window passes, one firing.
        let mut signals: Vec<Signal> = (0..7).map(|i| if i % 2 == 0 { R } else { G }).collect();
        signals.extend(std::iter::repeat_n(R, 30));
        let notices = run(&signals, Policy::default(), 60);
        let kinds: Vec<Notice> = notices.iter().map(|n| n.0).collect();
        assert_eq!(kinds.iter().filter(|k| **k == Notice::Flapping).count(), 1);
        assert_eq!(kinds.last(), Some(&Notice::Firing));
        assert_eq!(kinds.iter().filter(|k| **k == Notice::Firing).count(), 4);
    }

    #[test]
    fn a_source_incident_holds_its_invariants() {
        let mut states: BTreeMap<String, IncidentState> = BTreeMap::new();
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("i{n}")
        };
        let obs = |src: Signal, inv: Signal| {
            vec![
                Observation {
                    held_by: Vec::new(),
                    subject: "source:app".into(),
                    kind: SubjectKind::Source,
                    signal: src,
                    policy: Policy::default(),
                    sources: vec![],
                },
                Observation {
                    held_by: Vec::new(),
                    subject: "INV".into(),
                    kind: SubjectKind::Invariant,
                    signal: inv,
                    policy: Policy::default(),
                    sources: vec!["app".into()],
                },
            ]
        };
        let mut notices = Vec::new();
        // The source is down (invariant error), then reads partially (a red while the source
        // incident is still open is held), then recovers: the held firing is released.
        for (i, (src, inv)) in [(R, N), (R, N), (R, R), (G, R), (G, G)]
            .into_iter()
            .enumerate()
        {
            let adv = advance(&states, &obs(src, inv), t(i as i64), &mut id);
            for s in adv.states {
                states.insert(s.subject.clone(), s);
            }
            for e in adv.events {
                notices.push((e.subject.clone(), e.kind, e.notice, i));
            }
        }
        assert_eq!(
            notices,
            vec![
                (
                    "source:app".into(),
                    EventKind::Opened,
                    Some(Notice::Firing),
                    0
                ),
                ("INV".into(), EventKind::Opened, None, 2),
                (
                    "source:app".into(),
                    EventKind::Resolved,
                    Some(Notice::Resolved),
                    3
                ),
                ("INV".into(), EventKind::Released, Some(Notice::Firing), 3),
                ("INV".into(), EventKind::Resolved, Some(Notice::Resolved), 4),
            ]
        );
    }

    #[test]
    fn a_held_incident_that_resolves_sends_nothing() {
        let mut s = IncidentState::new("X", SubjectKind::Invariant);
        let mut id = || "i".to_string();
        let held = vec!["app".to_string()];
        let (s1, e1) = step(&s, Policy::default(), R, &held, t(0), &mut id);
        assert_eq!(e1[0].notice, None);
        assert_eq!(e1[0].held_by, held);
        s = s1;
        let (_, e2) = step(&s, Policy::default(), G, &held, t(1), &mut id);
        assert_eq!(e2.len(), 1);
        assert_eq!(e2[0].kind, EventKind::Resolved);
        assert_eq!(e2[0].notice, None);
    }

    fn signal() -> impl Strategy<Value = Signal> {
        prop_oneof![Just(R), Just(G), Just(N)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Firing and resolved notices alternate: never two firings without a resolve between,
        /// never a resolve without a firing before it.
        #[test]
        fn notices_alternate(
            steps in prop::collection::vec((signal(), any::<bool>(), 1i64..600), 1..120),
            fire_after in 1u32..4,
            resolve_after in 1u32..4,
        ) {
            let policy = Policy { fire_after, resolve_after };
            let mut s = IncidentState::new("X", SubjectKind::Invariant);
            let mut now = t(0);
            let mut n = 0;
            let mut firing = false;
            for (sig, held, gap) in steps {
                now += TimeDelta::minutes(gap);
                let held_by = if held { vec!["app".to_string()] } else { vec![] };
                let mut id = || { n += 1; format!("i{n}") };
                let (next, events) = step(&s, policy, sig, &held_by, now, &mut id);
                for e in events {
                    match e.notice {
                        Some(Notice::Firing) => { prop_assert!(!firing, "two firings"); firing = true; }
                        Some(Notice::Resolved) => { prop_assert!(firing, "resolve without firing"); firing = false; }
                        _ => {}
                    }
                }
                // A sent firing is exactly an open incident that was alerted.
                prop_assert_eq!(firing, next.open.as_ref().is_some_and(|o| o.alerted));
                s = next;
            }
        }

        /// Skip and error never open, resolve, or move a streak.
        #[test]
        fn neutral_changes_nothing(
            steps in prop::collection::vec(signal(), 0..40),
            fire_after in 1u32..4,
            resolve_after in 1u32..4,
        ) {
            let policy = Policy { fire_after, resolve_after };
            let mut s = IncidentState::new("X", SubjectKind::Invariant);
            let mut n = 0;
            for (i, sig) in steps.iter().enumerate() {
                let mut id = || { n += 1; format!("i{n}") };
                s = step(&s, policy, *sig, &[], t(i as i64 * 30), &mut id).0;
            }
            let mut id = || "never".to_string();
            let (after, events) = step(&s, policy, Signal::Neutral, &[], t(steps.len() as i64 * 30), &mut id);
            prop_assert_eq!(after.open.as_ref().map(|o| &o.id), s.open.as_ref().map(|o| &o.id));
            prop_assert_eq!(after.red_streak, s.red_streak);
            prop_assert_eq!(after.green_streak, s.green_streak);
            prop_assert!(events.iter().all(|e| !matches!(e.kind, EventKind::Opened | EventKind::Resolved)));
        }

        /// Many failing runs in a row send exactly one firing.
        #[test]
        fn one_alert_per_incident(reds in 1usize..200, fire_after in 1u32..5) {
            let p = Policy { fire_after, resolve_after: 1 };
            let notices = run(&vec![R; reds], p, 15);
            let expected = usize::from(reds >= fire_after as usize);
            prop_assert_eq!(notices.len(), expected);
        }
    }
}
