//! Embedded migrations per backend, versioned in `invar_migrations`. Each applies in its own
//! transaction together with its version row; a store newer than this binary is refused.

/// (version, name, SQL). Append only; never edit a released migration.
pub(crate) type Migration = (i64, &'static str, &'static str);

pub(crate) const SQLITE: &[Migration] = &[
    (1, "history", SQLITE_1),
    (2, "watch", SQLITE_2),
    (3, "silences", SILENCES_3),
];
pub(crate) const POSTGRES: &[Migration] = &[
    (1, "history", POSTGRES_1),
    (2, "watch", POSTGRES_2),
    (3, "silences", SILENCES_3),
];

/// The version table, the same on both backends.
pub(crate) const VERSIONS: &str = "CREATE TABLE IF NOT EXISTS invar_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

const SQLITE_1: &str = r#"
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    exit_code BIGINT NOT NULL,
    n_pass BIGINT NOT NULL, n_warn BIGINT NOT NULL, n_fail BIGINT NOT NULL,
    n_skip BIGINT NOT NULL, n_error BIGINT NOT NULL,
    automation_error BOOLEAN NOT NULL,
    lock_skipped BOOLEAN NOT NULL,
    skipped_budget BIGINT NOT NULL,
    sources_unavailable TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_suite_started ON runs (suite, started_at);

CREATE TABLE results (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    invariant_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    suite TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    examined BIGINT NOT NULL,
    vacuous BOOLEAN NOT NULL,
    duration_ms BIGINT NOT NULL,
    measured TEXT NOT NULL,
    violations_total BIGINT NOT NULL,
    runbook TEXT,
    sources TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX results_invariant_started ON results (invariant_id, started_at);
CREATE INDEX results_started ON results (started_at);

CREATE TABLE violations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    invariant_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    observed TEXT NOT NULL
);
CREATE INDEX violations_at ON violations (at);
CREATE INDEX violations_invariant ON violations (invariant_id, id);
CREATE INDEX violations_run ON violations (run_id);

CREATE TABLE incident_states (
    subject TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    opened_run_id TEXT NOT NULL,
    resolved_at BIGINT,
    resolved_run_id TEXT,
    last_red_at BIGINT
);
CREATE INDEX incidents_subject ON incidents (subject, opened_at);
CREATE INDEX incidents_opened ON incidents (opened_at);
CREATE INDEX incidents_resolved ON incidents (resolved_at);

CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    incident_id TEXT,
    event TEXT NOT NULL,
    notice TEXT,
    at BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX incident_events_at ON incident_events (at);

CREATE TABLE remembered_states (
    invariant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (invariant_id, key)
);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    notice TEXT NOT NULL,
    incident_id TEXT,
    subject TEXT NOT NULL,
    run_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
CREATE INDEX outbox_incident ON outbox (incident_id, sink);

CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    ok BOOLEAN NOT NULL,
    code BIGINT,
    error TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
"#;

const POSTGRES_1: &str = r#"
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    exit_code BIGINT NOT NULL,
    n_pass BIGINT NOT NULL, n_warn BIGINT NOT NULL, n_fail BIGINT NOT NULL,
    n_skip BIGINT NOT NULL, n_error BIGINT NOT NULL,
    automation_error BOOLEAN NOT NULL,
    lock_skipped BOOLEAN NOT NULL,
    skipped_budget BIGINT NOT NULL,
    sources_unavailable TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_suite_started ON runs (suite, started_at);

CREATE TABLE results (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    invariant_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    suite TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    examined BIGINT NOT NULL,
    vacuous BOOLEAN NOT NULL,
    duration_ms BIGINT NOT NULL,
    measured TEXT NOT NULL,
    violations_total BIGINT NOT NULL,
    runbook TEXT,
    sources TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX results_invariant_started ON results (invariant_id, started_at);
CREATE INDEX results_started ON results (started_at);

CREATE TABLE violations (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    invariant_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    observed TEXT NOT NULL
);
CREATE INDEX violations_at ON violations (at);
CREATE INDEX violations_invariant ON violations (invariant_id, id);
CREATE INDEX violations_run ON violations (run_id);

CREATE TABLE incident_states (
    subject TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    opened_run_id TEXT NOT NULL,
    resolved_at BIGINT,
    resolved_run_id TEXT,
    last_red_at BIGINT
);
CREATE INDEX incidents_subject ON incidents (subject, opened_at);
CREATE INDEX incidents_opened ON incidents (opened_at);
CREATE INDEX incidents_resolved ON incidents (resolved_at);

CREATE TABLE incident_events (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    incident_id TEXT,
    event TEXT NOT NULL,
    notice TEXT,
    at BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX incident_events_at ON incident_events (at);

CREATE TABLE remembered_states (
    invariant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (invariant_id, key)
);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    notice TEXT NOT NULL,
    incident_id TEXT,
    subject TEXT NOT NULL,
    run_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
CREATE INDEX outbox_incident ON outbox (incident_id, sink);

CREATE TABLE delivery_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    ok BOOLEAN NOT NULL,
    code BIGINT,
    error TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
"#;

/// `invar watch`: claimed schedule ticks and named leases shared by replicas; violations
/// indexed for pages ordered by `(at, id)` under each filter (replacing the `id`-ordered
/// indexes). SQLite also gets a covering index for `violation_stats`: without it SQLite walks
/// an index and reads every row for its severity, ~5x slower at 100k violations. Postgres
/// hash-aggregates a sequential scan faster than it would use such an index.
const SQLITE_2: &str = r#"
CREATE TABLE schedule_ticks (
    suite TEXT NOT NULL,
    tick BIGINT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    -- Set when the tick's run is recorded: a claimed tick without it is still running, hung
    -- or lock_skipped (the dead-man's switch looks at finished ticks).
    run_id TEXT,
    PRIMARY KEY (suite, tick)
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

DROP INDEX violations_at;
DROP INDEX violations_invariant;
CREATE INDEX violations_at_id ON violations (at, id);
CREATE INDEX violations_invariant_at ON violations (invariant_id, at, id);
CREATE INDEX violations_severity_at ON violations (severity, at, id);
CREATE INDEX violations_stats ON violations (invariant_id, severity, at);
"#;

const POSTGRES_2: &str = r#"
CREATE TABLE schedule_ticks (
    suite TEXT NOT NULL,
    tick BIGINT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    -- Set when the tick's run is recorded: a claimed tick without it is still running, hung
    -- or lock_skipped (the dead-man's switch looks at finished ticks).
    run_id TEXT,
    PRIMARY KEY (suite, tick)
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

DROP INDEX violations_at;
DROP INDEX violations_invariant;
CREATE INDEX violations_at_id ON violations (at, id);
CREATE INDEX violations_invariant_at ON violations (invariant_id, at, id);
CREATE INDEX violations_severity_at ON violations (severity, at, id);
"#;

/// Silences (`Coordination::add_silence`): a CEL matcher as text and a time window in unix ms;
/// `expired_at` is set when one is ended early. The same DDL on both backends.
const SILENCES_3: &str = r#"
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    matcher TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expired_at BIGINT
);
CREATE INDEX silences_ends ON silences (ends_at);
"#;
