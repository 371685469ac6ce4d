//! Shard leases and checkpoints in PostgreSQL, for several sluice instances
//! reading one stream.
//!
//! One row per (application, shard): the owner, until when its lease runs
//! (`lease_until`, in the database's clock, so instance clocks do not
//! matter), a counter bumped at every change of owner, and the shard's
//! checkpoint. The checkpoint lives in the lease row, not in a local
//! storage extension, because the instance that takes a shard over must
//! read where the previous owner got to.
//!
//! **Fencing.** Renewals and checkpoint writes are `UPDATE`s conditional on
//! `owner` and `lease_counter` both still being this instance's. An
//! instance that lost a shard (taken over after it stopped renewing, or
//! stolen to balance) finds its next write affects no row and stops reading
//! that shard; it can never move the new owner's checkpoint.
//!
//! **Balancing.** Every instance aims at `ceil(shards to read / live
//! owners)` leases. It takes free or expired leases up to that share, and
//! when none is free and another owner holds more than the share, it takes
//! one of that owner's (one per round). The owner that lost it notices at
//! its next renewal. Records it read but had not checkpointed are read
//! again by the new owner (duplicates, never loss).
//!
//! Hand-written SQL over `sqlx` (no macros, no migration runner): the table
//! is one `CREATE TABLE IF NOT EXISTS`, serialised between instances by a
//! transaction-scoped advisory lock.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

/// A lease-table failure (connection, SQL).
#[derive(Debug, thiserror::Error)]
#[error("leases ({table}): {message}")]
pub struct LeaseError {
    pub table: String,
    pub message: String,
}

/// One row as read by [`LeaseTable::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: String,
    pub owner: Option<String>,
    /// The lease has not run out (by the database's clock).
    pub live: bool,
    pub counter: i64,
    pub checkpoint: Option<String>,
}

/// The lease table of one application on one stream.
pub struct LeaseTable {
    pool: PgPool,
    table: String,
    application: String,
    owner: String,
    duration_ms: i64,
}

impl LeaseTable {
    /// Connects and creates the table when it is missing. `table` was
    /// validated as a plain identifier.
    pub async fn connect(
        url: &str,
        table: &str,
        application: &str,
        owner: &str,
        duration: Duration,
    ) -> Result<LeaseTable, LeaseError> {
        let err = |m: String| LeaseError {
            table: table.to_string(),
            message: m,
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| err(format!("cannot connect to PostgreSQL: {e}")))?;
        let t = LeaseTable {
            pool,
            table: table.to_string(),
            application: application.to_string(),
            owner: owner.to_string(),
            duration_ms: duration.as_millis().min(i64::MAX as u128) as i64,
        };
        t.create().await?;
        Ok(t)
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn err(&self, what: &str, e: sqlx::Error) -> LeaseError {
        LeaseError {
            table: self.table.clone(),
            message: format!("{what}: {e}"),
        }
    }

    async fn create(&self) -> Result<(), LeaseError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err("begin", e))?;
        // Two instances starting together must not both create the table.
        sqlx::query("SELECT pg_advisory_xact_lock(7369636531)")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("lock", e))?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (
                application text NOT NULL,
                shard_id text NOT NULL,
                owner text,
                lease_until timestamptz,
                lease_counter bigint NOT NULL DEFAULT 0,
                checkpoint text,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (application, shard_id)
            )",
            self.table
        );
        sqlx::query(&ddl)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("create table", e))?;
        tx.commit().await.map_err(|e| self.err("commit", e))?;
        Ok(())
    }

    /// Adds a row (no owner, no checkpoint) for each shard that has none.
    pub async fn ensure(&self, shards: &[String]) -> Result<(), LeaseError> {
        let sql = format!(
            "INSERT INTO {} (application, shard_id)
             SELECT $1, s FROM UNNEST($2::text[]) AS s
             ON CONFLICT DO NOTHING",
            self.table
        );
        sqlx::query(&sql)
            .bind(&self.application)
            .bind(shards)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("insert shards", e))?;
        Ok(())
    }

    /// Every row of this application.
    pub async fn snapshot(&self) -> Result<Vec<LeaseRow>, LeaseError> {
        let sql = format!(
            "SELECT shard_id, owner, coalesce(lease_until > now(), false) AS live,
                    lease_counter, checkpoint
             FROM {} WHERE application = $1 ORDER BY shard_id",
            self.table
        );
        let rows = sqlx::query(&sql)
            .bind(&self.application)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("read leases", e))?;
        rows.into_iter()
            .map(|r| {
                Ok(LeaseRow {
                    shard: r.try_get("shard_id")?,
                    owner: r.try_get("owner")?,
                    live: r.try_get("live")?,
                    counter: r.try_get("lease_counter")?,
                    checkpoint: r.try_get("checkpoint")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err("read leases", e))
    }

    /// Takes the lease of `shard` if its counter is still `seen_counter`
    /// (nobody took or released it since the snapshot). Returns the new
    /// counter and the checkpoint, or `None` when someone was faster.
    pub async fn acquire(
        &self,
        shard: &str,
        seen_counter: i64,
    ) -> Result<Option<(i64, Option<String>)>, LeaseError> {
        let sql = format!(
            "UPDATE {} SET owner = $3, lease_until = now() + $4::bigint * interval '1 millisecond',
                    lease_counter = lease_counter + 1, updated_at = now()
             WHERE application = $1 AND shard_id = $2 AND lease_counter = $5
             RETURNING lease_counter, checkpoint",
            self.table
        );
        let row = sqlx::query(&sql)
            .bind(&self.application)
            .bind(shard)
            .bind(&self.owner)
            .bind(self.duration_ms)
            .bind(seen_counter)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("acquire", e))?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                r.try_get("lease_counter")
                    .map_err(|e| self.err("acquire", e))?,
                r.try_get("checkpoint")
                    .map_err(|e| self.err("acquire", e))?,
            ))),
        }
    }

    /// Extends a held lease; `false` when it is no longer ours.
    pub async fn renew(&self, shard: &str, counter: i64) -> Result<bool, LeaseError> {
        let sql = format!(
            "UPDATE {} SET lease_until = now() + $4::bigint * interval '1 millisecond'
             WHERE application = $1 AND shard_id = $2 AND owner = $3 AND lease_counter = $5",
            self.table
        );
        let n = sqlx::query(&sql)
            .bind(&self.application)
            .bind(shard)
            .bind(&self.owner)
            .bind(self.duration_ms)
            .bind(counter)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("renew", e))?
            .rows_affected();
        Ok(n == 1)
    }

    /// Stores a checkpoint under a held lease (and extends it); `false`
    /// when the lease is no longer ours (nothing written).
    pub async fn save(
        &self,
        shard: &str,
        counter: i64,
        checkpoint: &str,
    ) -> Result<bool, LeaseError> {
        let sql = format!(
            "UPDATE {} SET checkpoint = $6, updated_at = now(),
                    lease_until = now() + $4::bigint * interval '1 millisecond'
             WHERE application = $1 AND shard_id = $2 AND owner = $3 AND lease_counter = $5",
            self.table
        );
        let n = sqlx::query(&sql)
            .bind(&self.application)
            .bind(shard)
            .bind(&self.owner)
            .bind(self.duration_ms)
            .bind(counter)
            .bind(checkpoint)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("checkpoint", e))?
            .rows_affected();
        Ok(n == 1)
    }

    /// Gives a held lease up, so another instance can take it at once.
    pub async fn release(&self, shard: &str, counter: i64) -> Result<(), LeaseError> {
        let sql = format!(
            "UPDATE {} SET owner = NULL, lease_until = NULL,
                    lease_counter = lease_counter + 1, updated_at = now()
             WHERE application = $1 AND shard_id = $2 AND owner = $3 AND lease_counter = $4",
            self.table
        );
        sqlx::query(&sql)
            .bind(&self.application)
            .bind(shard)
            .bind(&self.owner)
            .bind(counter)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("release", e))?;
        Ok(())
    }

    /// Drops the whole table (every application's rows). For tests and
    /// tooling; the receiver never calls it.
    #[doc(hidden)]
    pub async fn drop_table(&self) -> Result<(), LeaseError> {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", self.table))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("drop table", e))?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What this instance should take, given a snapshot: free or expired
/// leases up to its fair share, else one lease of the most loaded owner
/// holding more than the share. `readable` are the shards that need a
/// reader now (planned `Read` or `Skip`). Returns (shard, seen counter).
pub fn choose(rows: &[LeaseRow], readable: &[String], me: &str) -> Vec<(String, i64)> {
    use std::collections::BTreeMap;
    let relevant: Vec<&LeaseRow> = rows
        .iter()
        .filter(|r| readable.contains(&r.shard))
        .collect();
    if relevant.is_empty() {
        return Vec::new();
    }
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    held.insert(me, 0);
    // Owners alive anywhere in the table count, even if their shards are
    // not readable right now (they are running).
    for r in rows {
        if let (Some(o), true) = (r.owner.as_deref(), r.live) {
            held.entry(o).or_insert(0);
        }
    }
    for r in &relevant {
        if let (Some(o), true) = (r.owner.as_deref(), r.live) {
            *held.entry(o).or_insert(0) += 1;
        }
    }
    let share = relevant.len().div_ceil(held.len());
    let mine = held[me];
    if mine >= share {
        return Vec::new();
    }
    let free: Vec<(String, i64)> = relevant
        .iter()
        .filter(|r| r.owner.is_none() || !r.live)
        .map(|r| (r.shard.clone(), r.counter))
        .take(share - mine)
        .collect();
    if !free.is_empty() {
        return free;
    }
    // Nothing free: take one from the most loaded owner above the share.
    let Some((victim, &n)) = held
        .iter()
        .filter(|(o, _)| **o != me)
        .max_by_key(|(o, n)| (**n, std::cmp::Reverse(**o)))
    else {
        return Vec::new();
    };
    if n <= share || n <= mine + 1 {
        return Vec::new();
    }
    relevant
        .iter()
        .filter(|r| r.live && r.owner.as_deref() == Some(*victim))
        .max_by(|a, b| a.shard.cmp(&b.shard))
        .map(|r| vec![(r.shard.clone(), r.counter)])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(shard: &str, owner: Option<&str>, live: bool) -> LeaseRow {
        LeaseRow {
            shard: shard.to_string(),
            owner: owner.map(str::to_string),
            live,
            counter: 7,
            checkpoint: None,
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_lone_instance_takes_every_free_shard() {
        let rows = [row("a", None, false), row("b", None, false)];
        let got = choose(&rows, &ids(&["a", "b"]), "me");
        assert_eq!(got, vec![("a".to_string(), 7), ("b".to_string(), 7)]);
    }

    #[test]
    fn expired_leases_are_taken_over() {
        let rows = [row("a", Some("dead"), false), row("b", Some("me"), true)];
        let got = choose(&rows, &ids(&["a", "b"]), "me");
        assert_eq!(got, vec![("a".to_string(), 7)]);
    }

    #[test]
    fn a_newcomer_steals_one_from_an_owner_above_its_share() {
        let rows = [
            row("a", Some("old"), true),
            row("b", Some("old"), true),
            row("c", Some("old"), true),
            row("d", Some("old"), true),
        ];
        let got = choose(&rows, &ids(&["a", "b", "c", "d"]), "new");
        assert_eq!(got.len(), 1);
        // Two owners, four shards: a share of two; old keeps three for
        // now, and the newcomer takes another one next round.
        let rows = [
            row("a", Some("old"), true),
            row("b", Some("old"), true),
            row("c", Some("old"), true),
            row("d", Some("new"), true),
        ];
        assert_eq!(choose(&rows, &ids(&["a", "b", "c", "d"]), "new").len(), 1);
        let rows = [
            row("a", Some("old"), true),
            row("b", Some("old"), true),
            row("c", Some("new"), true),
            row("d", Some("new"), true),
        ];
        assert!(choose(&rows, &ids(&["a", "b", "c", "d"]), "new").is_empty());
        assert!(choose(&rows, &ids(&["a", "b", "c", "d"]), "old").is_empty());
    }

    #[test]
    fn balanced_owners_do_not_steal_back_and_forth() {
        // 3 shards, 2 owners: 2 and 1 is as even as it gets.
        let rows = [
            row("a", Some("x"), true),
            row("b", Some("x"), true),
            row("c", Some("y"), true),
        ];
        assert!(choose(&rows, &ids(&["a", "b", "c"]), "y").is_empty());
        assert!(choose(&rows, &ids(&["a", "b", "c"]), "x").is_empty());
    }

    #[test]
    fn shards_not_readable_yet_are_not_taken() {
        let rows = [row("parent", None, false), row("child", None, false)];
        assert_eq!(
            choose(&rows, &ids(&["parent"]), "me"),
            vec![("parent".to_string(), 7)]
        );
    }
}
