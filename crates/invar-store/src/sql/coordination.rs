//! [`Coordination`] on any backend: schedule ticks, named leases and silences. Each method is
//! one statement, race-free across processes.

use super::rows::{self, Cols, SILENCE_COLS};
use super::{Backend, Filter, SqlStore, Stmt};
use crate::types::*;
use crate::{Coordination, Result};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

impl<B: Backend> SqlStore<B> {
    /// The `tick` column of `sql` (a `max(tick)` of `suite`'s ticks).
    async fn max_tick(&self, sql: &'static str, suite: &str) -> Result<Option<DateTime<Utc>>> {
        self.fetch_one(Stmt::new(sql).bind(suite))
            .await?
            .get("tick")
    }

    async fn add_silence_inner(&self, s: &NewSilence) -> Result<Silence> {
        // Stored at millisecond precision: answer what a read gives back.
        let exact = |t: DateTime<Utc>| from_ms(ms(t));
        let silence = Silence {
            id: uuid::Uuid::now_v7().to_string(),
            matcher: s.matcher.clone(),
            starts_at: exact(s.starts_at),
            ends_at: exact(s.ends_at),
            reason: s.reason.clone(),
            created_by: s.created_by.clone(),
            created_at: exact(s.created_at),
            expired_at: None,
        };
        self.execute(
            Stmt::new(
                "INSERT INTO silences (id, matcher, starts_at, ends_at, reason, created_by, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&silence.id)
            .bind(&silence.matcher)
            .bind(ms(silence.starts_at))
            .bind(ms(silence.ends_at))
            .bind(&silence.reason)
            .bind(&silence.created_by)
            .bind(ms(silence.created_at)),
        )
        .await?;
        Ok(silence)
    }

    async fn silences_inner(&self, active_at: Option<DateTime<Utc>>) -> Result<Vec<Silence>> {
        let mut f = Filter::default();
        if let Some(t) = active_at {
            f.add(
                "starts_at <= {} AND ends_at > {} AND (expired_at IS NULL OR expired_at > {})",
                ms(t),
            );
        }
        let sql = format!(
            "SELECT {SILENCE_COLS} FROM silences {} ORDER BY starts_at, id",
            f.where_sql()
        );
        let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
        rows.iter().map(rows::silence).collect()
    }
}

impl<B: Backend> Coordination for SqlStore<B> {
    fn claim_tick<'a>(
        &'a self,
        suite: &'a str,
        tick: DateTime<Utc>,
        owner: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n = self
                .execute(
                    Stmt::new(
                        "INSERT INTO schedule_ticks (suite, tick, owner, claimed_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (suite, tick) DO NOTHING",
                    )
                    .bind(suite)
                    .bind(ms(tick))
                    .bind(owner)
                    .bind(ms(now)),
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn last_tick<'a>(&'a self, suite: &'a str) -> BoxFuture<'a, Result<Option<DateTime<Utc>>>> {
        Box::pin(self.max_tick(
            "SELECT max(tick) AS tick FROM schedule_ticks WHERE suite = $1",
            suite,
        ))
    }

    fn reclaim_tick<'a>(
        &'a self,
        suite: &'a str,
        tick: DateTime<Utc>,
        owner: &'a str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n = self
                .execute(
                    Stmt::new(
                        "UPDATE schedule_ticks SET owner = $1, claimed_at = $2 \
                         WHERE suite = $3 AND tick = $4 AND run_id IS NULL AND claimed_at < $5",
                    )
                    .bind(owner)
                    .bind(ms(now))
                    .bind(suite)
                    .bind(ms(tick))
                    .bind(ms(stale_before)),
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn finish_tick<'a>(
        &'a self,
        suite: &'a str,
        tick: DateTime<Utc>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.execute(
                Stmt::new("UPDATE schedule_ticks SET run_id = $1 WHERE suite = $2 AND tick = $3")
                    .bind(run_id)
                    .bind(suite)
                    .bind(ms(tick)),
            )
            .await?;
            Ok(())
        })
    }

    fn last_finished_tick<'a>(
        &'a self,
        suite: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>>> {
        Box::pin(self.max_tick(
            "SELECT max(tick) AS tick FROM schedule_ticks WHERE suite = $1 AND run_id IS NOT NULL",
            suite,
        ))
    }

    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            // The conflict update's WHERE is evaluated on the row as it stands once locked
            // (Postgres) or under the write lock (SQLite): zero rows means another owner holds
            // an unexpired lease.
            let n = self
                .execute(
                    Stmt::new(
                        "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE \
                         SET owner = excluded.owner, expires_at = excluded.expires_at \
                         WHERE leases.expires_at <= $4 OR leases.owner = excluded.owner",
                    )
                    .bind(name)
                    .bind(owner)
                    .bind(ms(until))
                    .bind(ms(now)),
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n = self
                .execute(
                    Stmt::new("UPDATE leases SET expires_at = $1 WHERE name = $2 AND owner = $3")
                        .bind(ms(until))
                        .bind(name)
                        .bind(owner),
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn release_lease<'a>(&'a self, name: &'a str, owner: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.execute(
                Stmt::new("DELETE FROM leases WHERE name = $1 AND owner = $2")
                    .bind(name)
                    .bind(owner),
            )
            .await?;
            Ok(())
        })
    }

    fn add_silence<'a>(&'a self, s: &'a NewSilence) -> BoxFuture<'a, Result<Silence>> {
        Box::pin(self.add_silence_inner(s))
    }

    fn silences(&self, active_at: Option<DateTime<Utc>>) -> BoxFuture<'_, Result<Vec<Silence>>> {
        Box::pin(self.silences_inner(active_at))
    }

    fn expire_silence<'a>(&'a self, id: &'a str, at: DateTime<Utc>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n = self
                .execute(
                    Stmt::new(
                        "UPDATE silences SET expired_at = $1 WHERE id = $2 AND expired_at IS NULL",
                    )
                    .bind(ms(at))
                    .bind(id),
                )
                .await?;
            Ok(n == 1)
        })
    }
}
