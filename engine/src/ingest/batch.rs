//! Multi-row inserts that stay under the databases' parameter limits and one TLS record each.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QuerySelect, TryInsertResult,
};
use serde_json::Value;

/// Rows per multi-row statement: far below the bind-parameter limits of Postgres (65,535) and
/// SQLite (32,766) at the widest row (messages, 19 columns).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// Bytes per multi-row statement, at most (about). sqlx 0.9.0 leaves Nagle's algorithm on
/// (launchbadge/sqlx#4335): a statement larger than one TLS record (16 KiB) leaves in more
/// than one write, and its tail then waits for the server's delayed ACK, ~40 ms a statement.
/// Measured: at 1,600 webhooks/s over TLS, p99 1.5 s with 500-row statements; in one write
/// each, no wait. Without TLS the limit does not matter, and costs little.
pub(super) const STATEMENT_BYTES: usize = 12 * 1024;

/// Fixed bytes of a row besides its text and raw JSON (ids, timestamps, kinds), roughly.
pub(super) const ROW_OVERHEAD_BYTES: usize = 256;

/// Where the chunk of rows starting at `start` ends: as many as fit [`ROWS_PER_STATEMENT`]
/// and [`STATEMENT_BYTES`], and at least one.
pub(super) fn chunk_end(sizes: &[usize], start: usize) -> usize {
    let mut end = start;
    let mut bytes = 0;
    while end < sizes.len() && end - start < ROWS_PER_STATEMENT {
        bytes += sizes[end];
        if bytes > STATEMENT_BYTES && end > start {
            break;
        }
        end += 1;
    }
    end
}

/// Rows whose (first, second) column pair is one of `keys`, as one condition per first value
/// (`first = ? AND second IN (…)`), for an index that leads with both (a number and its
/// wamids; a channel and its contacts). Two separate `IN` lists let Postgres match the few
/// first values on the index and then filter every row under them, a scan that grew with the
/// history (4-5 ms a look-up at 10,000 messages, seen in the statement log).
pub(super) fn by_pairs<C, A, B>(keys: &[(A, B)], first: C, second: C) -> sea_orm::Condition
where
    C: ColumnTrait,
    A: Ord + std::hash::Hash,
    B: Ord,
    for<'k> &'k A: Into<sea_orm::Value>,
    for<'k> &'k B: Into<sea_orm::Value>,
{
    let mut grouped: HashMap<&A, Vec<&B>> = HashMap::new();
    for (a, b) in keys {
        grouped.entry(a).or_default().push(b);
    }
    let mut grouped: Vec<_> = grouped.into_iter().collect();
    grouped.sort();
    grouped
        .into_iter()
        .fold(sea_orm::Condition::any(), |any, (a, mut bs)| {
            bs.sort_unstable();
            bs.dedup();
            any.add(
                sea_orm::Condition::all()
                    .add(first.eq(a))
                    .add(second.is_in(bs)),
            )
        })
}

/// The length of `value` as JSON, without building the string.
pub(super) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A row (a message or a status) waiting for the batch's multi-row insert.
pub(super) struct Pending<A> {
    pub(super) row: A,
    /// Its primary key, fresh: finds it again if another process's row won the unique index.
    pub(super) id: String,
    /// About how many bytes the row adds to a statement.
    pub(super) bytes: usize,
    /// The submission that stored it (reports are per submission).
    pub(super) submission: usize,
    /// Its message opened a conversation (messages only).
    pub(super) opened: bool,
}

/// Inserts `pending`, one statement per chunk of [`chunk_end`], skipping rows whose key the
/// unique index `conflict` already holds (another process stored them first). Returns the
/// ids of the rows skipped.
pub(super) async fn insert_pending<A>(
    txn: &DatabaseTransaction,
    pending: &[Pending<A>],
    conflict: &[<A::Entity as EntityTrait>::Column],
    id_column: <A::Entity as EntityTrait>::Column,
) -> Result<HashSet<String>, DbErr>
where
    A: ActiveModelTrait + Send,
{
    let sizes: Vec<usize> = pending.iter().map(|p| p.bytes).collect();
    let mut skipped = HashSet::new();
    let mut start = 0;
    while start < pending.len() {
        let end = chunk_end(&sizes, start);
        let chunk = &pending[start..end];
        start = end;
        let rows: Vec<A> = chunk.iter().map(|p| p.row.clone()).collect();
        let inserted = A::Entity::insert_many(rows)
            .on_conflict_do_nothing_on(conflict.iter().copied())
            .exec_without_returning(txn)
            .await?;
        if matches!(inserted, TryInsertResult::Inserted(n) if n as usize == chunk.len()) {
            continue;
        }
        // Rare (two processes raced): find which of our fresh ids did not go in.
        let ids: Vec<String> = chunk.iter().map(|p| p.id.clone()).collect();
        let present: HashSet<String> = A::Entity::find()
            .select_only()
            .column(id_column)
            .filter(id_column.is_in(ids.clone()))
            .into_tuple::<String>()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        skipped.extend(ids.into_iter().filter(|id| !present.contains(id)));
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_their_byte_and_row_limits() {
        let half = STATEMENT_BYTES / 2;
        // Two halves fit, the third starts the next statement.
        let sizes = [half, half, half];
        assert_eq!(chunk_end(&sizes, 0), 2);
        assert_eq!(chunk_end(&sizes, 2), 3);
        // A row larger than the limit still goes, alone.
        let sizes = [STATEMENT_BYTES * 3, 10];
        assert_eq!(chunk_end(&sizes, 0), 1);
        assert_eq!(chunk_end(&sizes, 1), 2);
        // Many small rows stop at the row limit.
        let sizes = vec![1; ROWS_PER_STATEMENT * 2 + 7];
        assert_eq!(chunk_end(&sizes, 0), ROWS_PER_STATEMENT);
        assert_eq!(
            chunk_end(&sizes, ROWS_PER_STATEMENT * 2),
            ROWS_PER_STATEMENT * 2 + 7
        );
    }

    #[test]
    fn json_length_is_counted_without_building_the_text() {
        let value = serde_json::json!({"text": {"body": "héllo \"there\""}, "n": [1, 2.5, null]});
        assert_eq!(json_len(&value), value.to_string().len());
    }
}
