//! [`Outbox`] on any backend: pending deliveries, their leases and every attempt.

use super::rows::{self, ATTEMPT_COLS, Cols, DELIVERY_COLS};
use super::{Backend, Exec, Filter, SqlStore, Stmt, db, limit_of};
use crate::types::*;
use crate::{Outbox, Result};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

impl<B: Backend> SqlStore<B> {
    async fn record_attempt_inner(&self, a: &AttemptRecord) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        tx.execute(
            Stmt::new(
                "INSERT INTO delivery_attempts \
                 (delivery_id, attempt, at, duration_ms, ok, code, error) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7)",
            )
            .bind(&a.delivery_id)
            .bind(i64::from(a.attempt))
            .bind(ms(a.at))
            .bind(a.duration_ms as i64)
            .bind(a.ok)
            .bind(a.code.map(i64::from))
            .bind(a.error.as_deref()),
        )
        .await?;
        let outcome = if a.ok {
            Stmt::new(
                "UPDATE outbox SET status = 'delivered', delivered_at = $1, attempts = $2, \
                 last_error = NULL, lease_owner = NULL, lease_until = NULL WHERE id = $3",
            )
            .bind(ms(a.at))
            .bind(i64::from(a.attempt))
            .bind(&a.delivery_id)
        } else {
            Stmt::new(
                "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $4 AND status = 'pending'",
            )
            .bind(i64::from(a.attempt))
            .bind(ms(a.next_attempt_at.unwrap_or(a.at)))
            .bind(a.error.as_deref())
            .bind(&a.delivery_id)
        };
        tx.execute(outcome).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Outbox rows under `f`, oldest first.
    async fn outbox_rows(&self, f: Filter, limit: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM outbox {} ORDER BY created_at, id LIMIT {limit}",
            f.where_sql(),
        );
        let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
        rows.iter().map(rows::delivery).collect()
    }
}

impl<B: Backend> Outbox for SqlStore<B> {
    fn pending(
        &self,
        due_at: Option<DateTime<Utc>>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let mut f = Filter::default();
            f.clauses.push("status = 'pending'".into());
            if let Some(t) = due_at {
                f.add("next_attempt_at <= {}", ms(t));
            }
            self.outbox_rows(f, limit_of(limit)).await
        })
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n = self
                .execute(
                    Stmt::new(
                        "UPDATE outbox SET lease_owner = $1, lease_until = $2 \
                         WHERE id = $3 AND status = 'pending' \
                         AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)",
                    )
                    .bind(owner)
                    .bind(ms(until))
                    .bind(id)
                    .bind(ms(now)),
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn record_attempt<'a>(&'a self, a: &'a AttemptRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.record_attempt_inner(a))
    }

    fn deliveries<'a>(&'a self, q: &'a DeliveryQuery) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let mut f = Filter::default();
            if let Some(s) = &q.incident_id {
                f.add("incident_id = {}", s);
            }
            if let Some(s) = &q.subject {
                f.add("subject = {}", s);
            }
            if let Some(s) = &q.sink {
                f.add("sink = {}", s);
            }
            let limit = if q.limit == 0 {
                10_000
            } else {
                i64::from(q.limit)
            };
            self.outbox_rows(f, limit).await
        })
    }

    fn attempts<'a>(&'a self, delivery_id: &'a str) -> BoxFuture<'a, Result<Vec<AttemptRecord>>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {ATTEMPT_COLS} FROM delivery_attempts \
                 WHERE delivery_id = $1 ORDER BY attempt, id"
            );
            let rows = self.fetch_all(Stmt::built(sql).bind(delivery_id)).await?;
            rows.iter().map(rows::attempt).collect()
        })
    }

    fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts>> {
        Box::pin(async move {
            let r = self
                .fetch_one(Stmt::new(
                    "SELECT (SELECT count(*) FROM outbox WHERE status = 'delivered') AS delivered, \
                     (SELECT count(*) FROM delivery_attempts WHERE NOT ok) AS failed_attempts, \
                     (SELECT count(*) FROM outbox WHERE status = 'pending') AS pending",
                ))
                .await?;
            Ok(DeliveryCounts {
                delivered: r.get("delivered")?,
                failed_attempts: r.get("failed_attempts")?,
                pending: r.get("pending")?,
            })
        })
    }
}
