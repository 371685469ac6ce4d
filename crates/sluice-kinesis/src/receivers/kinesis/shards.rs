//! Which shards to read, and from where: the rules that make resharding
//! lose nothing.
//!
//! A split or merge closes its parent shard(s) and opens children. Records
//! of one partition key are in the parent before the split and in a child
//! after it, so a child is read only once every parent listed in the stream
//! is finished: read to its end (`SHARD_END`), or never to be read
//! (`SKIPPED`). A parent no longer listed (past the retention period) counts
//! as finished.
//!
//! Where a shard without a checkpoint starts:
//!
//! | `initial_position` | shard | start |
//! | --- | --- | --- |
//! | `TRIM_HORIZON` | any | its oldest record |
//! | `AT_TIMESTAMP` | any | `initial_timestamp` |
//! | `LATEST` | a parent was read to its end | its oldest record (the child of a split seen while running) |
//! | `LATEST` | closed, no parent read to its end | not read: `SKIPPED` (it holds only the past) |
//! | `LATEST` | open, no parent read to its end | the tip |
//!
//! A reader that starts a shard at the tip first stores the time it started
//! (`at:<ms>`), so a crash before its first sequence-number checkpoint
//! resumes at that time instead of a later tip: what arrived while sluice
//! was down is read, not lost.

use std::collections::HashMap;

use aws_sdk_kinesis::primitives::DateTime;

use super::config::InitialPosition;

/// A shard as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// Parent and adjacent parent (a merge has two).
    pub parents: Vec<String>,
    /// The shard has an ending sequence number: nothing more is written.
    pub closed: bool,
}

/// How far a shard has been read and accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Everything up to and including this sequence number was accepted.
    Sequence(String),
    /// Reading began at the tip at this time (ms since the epoch); nothing
    /// read since has been accepted yet.
    StartedAt(i64),
    /// Read to the end and everything accepted.
    ShardEnd,
    /// Closed before anything of it was to be read (`LATEST`).
    Skipped,
}

impl Checkpoint {
    pub fn encode(&self) -> String {
        match self {
            Checkpoint::Sequence(s) => format!("seq:{s}"),
            Checkpoint::StartedAt(ms) => format!("at:{ms}"),
            Checkpoint::ShardEnd => "SHARD_END".to_string(),
            Checkpoint::Skipped => "SKIPPED".to_string(),
        }
    }

    /// Parses a stored checkpoint; `None` for anything else (reported by
    /// the caller, which then treats the shard as having none).
    pub fn decode(s: &str) -> Option<Checkpoint> {
        match s {
            "SHARD_END" => Some(Checkpoint::ShardEnd),
            "SKIPPED" => Some(Checkpoint::Skipped),
            _ => {
                if let Some(seq) = s.strip_prefix("seq:") {
                    (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| Checkpoint::Sequence(seq.to_string()))
                } else if let Some(ms) = s.strip_prefix("at:") {
                    ms.parse().ok().map(Checkpoint::StartedAt)
                } else {
                    None
                }
            }
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd | Checkpoint::Skipped)
    }
}

/// Where to open a shard iterator.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    After(String),
    TrimHorizon,
    /// The tip; the reader stores `StartedAt(now)` first.
    Latest,
    At(DateTime),
}

/// What to do with a shard now.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Read to its end already (or skipped): nothing to do.
    Finished,
    /// A parent is not finished yet.
    Waiting,
    /// Closed and only holding the past under `LATEST`: mark `SKIPPED`.
    Skip,
    /// Read it from here.
    Read(StartAt),
}

/// Decides what to do with `shard`, given every listed shard and the
/// checkpoints known.
pub fn plan(
    shard: &ShardInfo,
    listed: &HashMap<String, ShardInfo>,
    checkpoints: &HashMap<String, Checkpoint>,
    initial: InitialPosition,
    initial_timestamp: Option<DateTime>,
) -> Plan {
    match checkpoints.get(&shard.id) {
        Some(c) if c.is_finished() => return Plan::Finished,
        Some(Checkpoint::Sequence(s)) => return Plan::Read(StartAt::After(s.clone())),
        Some(Checkpoint::StartedAt(ms)) => {
            return Plan::Read(StartAt::At(DateTime::from_millis(*ms)));
        }
        _ => {}
    }
    let parent_state = |p: &String| {
        if !listed.contains_key(p) {
            // Past retention: nothing left to read.
            return (true, false);
        }
        match checkpoints.get(p) {
            Some(Checkpoint::ShardEnd) => (true, true),
            Some(Checkpoint::Skipped) => (true, false),
            _ => (false, false),
        }
    };
    let mut any_read_to_end = false;
    for p in &shard.parents {
        let (finished, read) = parent_state(p);
        if !finished {
            return Plan::Waiting;
        }
        any_read_to_end |= read;
    }
    match initial {
        InitialPosition::TrimHorizon => Plan::Read(StartAt::TrimHorizon),
        InitialPosition::AtTimestamp => match initial_timestamp {
            Some(t) => Plan::Read(StartAt::At(t)),
            // validate() requires it; be safe rather than lose data.
            None => Plan::Read(StartAt::TrimHorizon),
        },
        InitialPosition::Latest if any_read_to_end => Plan::Read(StartAt::TrimHorizon),
        InitialPosition::Latest if shard.closed => Plan::Skip,
        InitialPosition::Latest => Plan::Read(StartAt::Latest),
    }
}

/// Plans every listed shard; skipped shards are marked in `checkpoints`
/// (as the caller will store them) and planning repeats until nothing
/// changes, so that the children of a skipped parent are planned in the
/// same pass. Returns the shards to skip (to be stored) and the shards to
/// read with their start.
pub fn plan_all(
    listed: &HashMap<String, ShardInfo>,
    checkpoints: &HashMap<String, Checkpoint>,
    initial: InitialPosition,
    initial_timestamp: Option<DateTime>,
) -> (Vec<String>, Vec<(String, StartAt)>) {
    let mut known = checkpoints.clone();
    let mut skipped = Vec::new();
    loop {
        let mut changed = false;
        let mut ids: Vec<&String> = listed.keys().collect();
        ids.sort();
        for id in ids {
            if known.get(id).is_some_and(Checkpoint::is_finished) {
                continue;
            }
            if plan(&listed[id], listed, &known, initial, initial_timestamp) == Plan::Skip {
                known.insert(id.clone(), Checkpoint::Skipped);
                skipped.push(id.clone());
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut ids: Vec<&String> = listed.keys().collect();
    ids.sort();
    let read = ids
        .into_iter()
        .filter_map(
            |id| match plan(&listed[id], listed, &known, initial, initial_timestamp) {
                Plan::Read(at) => Some((id.clone(), at)),
                _ => None,
            },
        )
        .collect();
    (skipped, read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            id: id.to_string(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            closed,
        }
    }

    fn listing(shards: &[ShardInfo]) -> HashMap<String, ShardInfo> {
        shards.iter().map(|s| (s.id.clone(), s.clone())).collect()
    }

    fn cps(pairs: &[(&str, Checkpoint)]) -> HashMap<String, Checkpoint> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn checkpoints_round_trip_and_bad_ones_are_refused() {
        for c in [
            Checkpoint::Sequence("4959000000000000000000000000000000001".into()),
            Checkpoint::StartedAt(1_790_000_000_123),
            Checkpoint::ShardEnd,
            Checkpoint::Skipped,
        ] {
            assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        }
        for bad in ["", "seq:", "seq:12a", "at:x", "LATEST", "shard_end"] {
            assert_eq!(Checkpoint::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn children_wait_for_a_parent_that_is_not_finished() {
        let l = listing(&[
            shard("p", &[], true),
            shard("a", &["p"], false),
            shard("b", &["p"], false),
        ]);
        let c = cps(&[("p", Checkpoint::Sequence("10".into()))]);
        let (skipped, read) = plan_all(&l, &c, InitialPosition::Latest, None);
        assert!(skipped.is_empty());
        assert_eq!(read, vec![("p".to_string(), StartAt::After("10".into()))]);
    }

    #[test]
    fn children_of_a_parent_read_to_its_end_start_at_their_oldest_record() {
        let l = listing(&[
            shard("p", &[], true),
            shard("a", &["p"], false),
            shard("b", &["p"], false),
        ]);
        let c = cps(&[("p", Checkpoint::ShardEnd)]);
        for initial in [InitialPosition::Latest, InitialPosition::TrimHorizon] {
            let (_, read) = plan_all(&l, &c, initial, None);
            assert_eq!(
                read,
                vec![
                    ("a".to_string(), StartAt::TrimHorizon),
                    ("b".to_string(), StartAt::TrimHorizon)
                ]
            );
        }
    }

    #[test]
    fn latest_skips_closed_history_and_starts_open_children_at_the_tip() {
        // g -> p -> (a, b): a fresh start at LATEST reads only a and b, at
        // their tips.
        let l = listing(&[
            shard("g", &[], true),
            shard("p", &["g"], true),
            shard("a", &["p"], false),
            shard("b", &["p"], false),
        ]);
        let (mut skipped, read) = plan_all(&l, &HashMap::new(), InitialPosition::Latest, None);
        skipped.sort();
        assert_eq!(skipped, vec!["g".to_string(), "p".to_string()]);
        assert_eq!(
            read,
            vec![
                ("a".to_string(), StartAt::Latest),
                ("b".to_string(), StartAt::Latest)
            ]
        );
    }

    #[test]
    fn trim_horizon_reads_the_oldest_generation_first() {
        let l = listing(&[
            shard("p", &[], true),
            shard("a", &["p"], false),
            shard("b", &["p"], false),
        ]);
        let (skipped, read) = plan_all(&l, &HashMap::new(), InitialPosition::TrimHorizon, None);
        assert!(skipped.is_empty());
        assert_eq!(read, vec![("p".to_string(), StartAt::TrimHorizon)]);
    }

    #[test]
    fn a_merge_waits_for_both_parents() {
        let l = listing(&[
            shard("x", &[], true),
            shard("y", &[], true),
            shard("m", &["x", "y"], false),
        ]);
        let c = cps(&[
            ("x", Checkpoint::ShardEnd),
            ("y", Checkpoint::Sequence("5".into())),
        ]);
        let (_, read) = plan_all(&l, &c, InitialPosition::Latest, None);
        assert_eq!(read, vec![("y".to_string(), StartAt::After("5".into()))]);
        let c = cps(&[("x", Checkpoint::ShardEnd), ("y", Checkpoint::ShardEnd)]);
        let (_, read) = plan_all(&l, &c, InitialPosition::Latest, None);
        assert_eq!(read, vec![("m".to_string(), StartAt::TrimHorizon)]);
    }

    #[test]
    fn a_parent_past_retention_does_not_hold_its_children() {
        let l = listing(&[shard("a", &["gone"], false)]);
        let (_, read) = plan_all(&l, &HashMap::new(), InitialPosition::Latest, None);
        assert_eq!(read, vec![("a".to_string(), StartAt::Latest)]);
    }

    #[test]
    fn a_reader_that_started_at_the_tip_resumes_at_its_start_time() {
        let l = listing(&[shard("p", &[], true), shard("a", &["p"], false)]);
        // Started at the tip, then the shard was split: read from the start
        // time to the end (not skipped although closed).
        let c = cps(&[("p", Checkpoint::StartedAt(1_790_000_000_000))]);
        let (skipped, read) = plan_all(&l, &c, InitialPosition::Latest, None);
        assert!(skipped.is_empty());
        assert_eq!(
            read,
            vec![(
                "p".to_string(),
                StartAt::At(DateTime::from_millis(1_790_000_000_000))
            )]
        );
    }

    #[test]
    fn at_timestamp_applies_to_every_shard_without_a_checkpoint() {
        let t = DateTime::from_millis(1_790_000_000_000);
        let l = listing(&[shard("p", &[], true), shard("a", &["p"], false)]);
        let (_, read) = plan_all(&l, &HashMap::new(), InitialPosition::AtTimestamp, Some(t));
        assert_eq!(read, vec![("p".to_string(), StartAt::At(t))]);
        let c = cps(&[("p", Checkpoint::ShardEnd)]);
        let (_, read) = plan_all(&l, &c, InitialPosition::AtTimestamp, Some(t));
        assert_eq!(read, vec![("a".to_string(), StartAt::At(t))]);
    }
}
