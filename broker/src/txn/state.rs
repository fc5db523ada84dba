//! One transactional id's state and its transitions (Kafka's `TransactionMetadata` and the checks of
//! `TransactionCoordinator`, transaction version 1: one producer epoch per producer session, partitions
//! added explicitly).
//!
//! Every method is pure: it checks a request against the current state and returns the next state to
//! write, or the Kafka error to answer. The coordinator marks the id `pending` while that record is
//! written and replaces the state only once it is committed; a request meeting a pending transition is
//! told CONCURRENT_TRANSACTIONS.
//!
//! The states: Empty → (AddPartitions) Ongoing → (EndTxn) PrepareCommit | PrepareAbort → (markers
//! written) CompleteCommit | CompleteAbort → (AddPartitions) Ongoing … A new producer instance
//! (InitProducerId) bumps the epoch of an Empty or Complete id, and first aborts an Ongoing one with
//! an epoch bump (the fence). `Dead` and `PrepareEpochFence` exist for the wire and the record format
//! only: an expired id is removed, and the fence goes straight to PrepareAbort with the bumped epoch.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;

use super::records::TxnLogValue;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's `TransactionState`, with its ids (the log's `TransactionStatus`) and names (the admin APIs').
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether markers are being written: the transaction is decided but not complete.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Kafka's `TransactionMetadata.isEpochExhausted`: the next bump would overflow, so the id gets a new
/// producer id instead (KIP-360).
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What InitProducerId does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitTransit {
    /// Write this Empty state and answer with its producer id and epoch.
    Write(TxnMetadata),
    /// The epoch is exhausted: call again with a fresh producer id.
    NeedProducerId,
    /// An ongoing transaction is aborted first, under this bumped epoch (never returned to a client);
    /// the client is told CONCURRENT_TRANSACTIONS and retries.
    FenceAndAbort(TxnMetadata),
}

/// One transactional id's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The producer id before the last rotation (KIP-360: a retried InitProducerId names it).
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried bump gets the same answer (KIP-360).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// -1 when no transaction is open.
    pub start_timestamp_ms: i64,
    pub last_update_timestamp_ms: i64,
    /// The state being written, while its record is not yet committed.
    pub pending: Option<TxnState>,
}

impl TxnMetadata {
    /// A transactional id seen for the first time: epoch -1, so the first InitProducerId makes it 0.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            pending: None,
        }
    }

    pub fn from_log(value: TxnLogValue) -> Self {
        TxnMetadata {
            producer_id: value.producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: value.timeout_ms,
            state: value.state,
            partitions: value.partitions,
            start_timestamp_ms: value.start_timestamp_ms,
            last_update_timestamp_ms: value.last_update_timestamp_ms,
            pending: None,
        }
    }

    pub fn to_log(&self) -> TxnLogValue {
        TxnLogValue {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_timestamp_ms: self.last_update_timestamp_ms,
            start_timestamp_ms: self.start_timestamp_ms,
        }
    }

    fn to(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            state,
            last_update_timestamp_ms: now_ms,
            pending: None,
            ..self.clone()
        }
    }

    /// InitProducerId (Kafka's `prepareInitProducerIdTransit`). `expected` is the v3+ producer id and
    /// epoch the client names (KIP-360); `new_producer_id` is a fresh id once asked for.
    pub fn prepare_init(
        &self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitTransit, ResponseError> {
        // Fence unless: the id was just created; the client names the current producer id (its epoch
        // is checked below); or it names the previous one with an exhausted epoch (a retry of a
        // rotation whose answer it never got).
        let valid = |(producer_id, epoch): (i64, i16)| {
            self.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == self.producer_id
                || (producer_id == self.previous_producer_id && is_epoch_exhausted(epoch))
        };
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if !expected.is_none_or(valid) {
            return Err(ResponseError::ProducerFenced);
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let empty = |producer_id, previous, epoch, last_epoch| TxnMetadata {
                    producer_id,
                    previous_producer_id: previous,
                    producer_epoch: epoch,
                    last_producer_epoch: last_epoch,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_timestamp_ms: -1,
                    last_update_timestamp_ms: now_ms,
                    pending: None,
                };
                if is_epoch_exhausted(self.producer_epoch)
                    && expected.is_none_or(|(_, epoch)| epoch == self.producer_epoch)
                {
                    let Some(new_producer_id) = new_producer_id else {
                        return Ok(InitTransit::NeedProducerId);
                    };
                    let last_epoch = if expected.is_some() {
                        self.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                    return Ok(InitTransit::Write(empty(
                        new_producer_id,
                        self.producer_id,
                        0,
                        last_epoch,
                    )));
                }
                let bumped = self.producer_epoch + 1;
                let (epoch, last_epoch) = match expected {
                    None => (bumped, NO_PRODUCER_EPOCH),
                    Some((_, e))
                        if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch =>
                    {
                        (bumped, self.producer_epoch)
                    }
                    // A retry of the bump just made: the same answer again.
                    Some((_, e)) if e == self.last_producer_epoch => {
                        (self.producer_epoch, self.last_producer_epoch)
                    }
                    Some(_) => return Err(ResponseError::ProducerFenced),
                };
                Ok(InitTransit::Write(empty(
                    self.producer_id,
                    self.previous_producer_id,
                    epoch,
                    last_epoch,
                )))
            }
            TxnState::Ongoing => Ok(InitTransit::FenceAndAbort(self.fence_and_abort(now_ms))),
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ResponseError::UnknownServerError),
        }
    }

    /// An ongoing transaction aborted by the coordinator (a new instance, or the timeout): the epoch
    /// is bumped so the old producer is fenced (Kafka's `prepareFenceProducerEpoch`, then
    /// PrepareAbort).
    pub fn fence_and_abort(&self, now_ms: i64) -> TxnMetadata {
        let mut next = self.to(TxnState::PrepareAbort, now_ms);
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.last_producer_epoch = NO_PRODUCER_EPOCH;
        next
    }

    /// Checks a client's producer id and epoch as AddPartitions, AddOffsets and EndTxn do.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        if self.producer_id != producer_id {
            Err(ResponseError::InvalidProducerIdMapping)
        } else if self.producer_epoch != epoch {
            Err(ResponseError::ProducerFenced)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): `Ok(None)` when
    /// every partition is in the ongoing transaction already.
    pub fn prepare_add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ResponseError> {
        self.check_producer(producer_id, epoch)?;
        if self.pending.is_some() || self.state.is_prepared() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if self.state == TxnState::Ongoing && partitions.is_subset(&self.partitions) {
            return Ok(None);
        }
        let mut next = self.to(TxnState::Ongoing, now_ms);
        if self.state != TxnState::Ongoing {
            next.start_timestamp_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        Ok(Some(next))
    }

    /// AddPartitionsToTxn v4+ with VerifyOnly: whether each partition is in the producer's ongoing
    /// transaction (KIP-890 part 1). A pending transition is not checked: the partition leader's own
    /// append is the final check.
    pub fn verify_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_producer(producer_id, epoch)?;
        if self.state.is_prepared() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|p| (!self.partitions.contains(p)).then_some(ResponseError::TransactionAbortable))
            .collect())
    }

    /// EndTxn from the client (Kafka's `endTransaction`, transaction version 1): `Ok(None)` for a
    /// retry of an end already complete.
    pub fn prepare_end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ResponseError> {
        self.check_producer(producer_id, epoch)?;
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, true) => Ok(Some(self.to(TxnState::PrepareCommit, now_ms))),
            (TxnState::Ongoing, false) => Ok(Some(self.to(TxnState::PrepareAbort, now_ms))),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Once every marker is written: CompleteCommit or CompleteAbort, with no partitions.
    pub fn prepare_complete(&self, now_ms: i64) -> Option<TxnMetadata> {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut next = self.to(state, now_ms);
        next.partitions.clear();
        Some(next)
    }

    /// Whether the coordinator should abort this transaction now (open past its timeout).
    pub fn has_timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.pending.is_none()
            && self.start_timestamp_ms >= 0
            && now_ms.saturating_sub(self.start_timestamp_ms) > i64::from(self.timeout_ms)
    }

    /// Whether the id may be forgotten (`transactional.id.expiration.ms` with no transaction open).
    pub fn has_expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && self.pending.is_none()
            && now_ms.saturating_sub(self.last_update_timestamp_ms) >= expiration_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn written(transit: Result<InitTransit, ResponseError>) -> TxnMetadata {
        match transit {
            Ok(InitTransit::Write(next)) => next,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_runs_empty_ongoing_prepare_complete_and_again() {
        let fresh = TxnMetadata::new(10, 60_000, 1);
        let init = written(fresh.prepare_init(60_000, None, None, 2));
        assert_eq!((init.producer_id, init.producer_epoch), (10, 0));
        assert_eq!(init.state, TxnState::Empty);

        let added = init
            .prepare_add_partitions(10, 0, &parts(&[("t", 0)]), 3)
            .unwrap()
            .unwrap();
        assert_eq!(
            (added.state, added.start_timestamp_ms),
            (TxnState::Ongoing, 3)
        );
        // Adding what is in the transaction already writes nothing.
        assert_eq!(
            added.prepare_add_partitions(10, 0, &parts(&[("t", 0)]), 4),
            Ok(None)
        );
        let more = added
            .prepare_add_partitions(10, 0, &parts(&[("u", 1)]), 5)
            .unwrap()
            .unwrap();
        assert_eq!(more.partitions, parts(&[("t", 0), ("u", 1)]));
        assert_eq!(
            more.start_timestamp_ms, 3,
            "the transaction started at the first add"
        );

        let prepared = more.prepare_end(10, 0, true, 6).unwrap().unwrap();
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(prepared.partitions, more.partitions, "markers go to these");
        // While markers are written, everything else waits.
        assert_eq!(
            prepared.prepare_add_partitions(10, 0, &parts(&[("t", 0)]), 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.prepare_init(60_000, None, None, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.prepare_end(10, 0, true, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.prepare_end(10, 0, false, 7),
            Err(ResponseError::InvalidTxnState)
        );

        let complete = prepared.prepare_complete(8).unwrap();
        assert_eq!(complete.state, TxnState::CompleteCommit);
        assert!(complete.partitions.is_empty());
        assert_eq!(
            complete.prepare_end(10, 0, true, 9),
            Ok(None),
            "a retried commit"
        );
        assert_eq!(
            complete.prepare_end(10, 0, false, 9),
            Err(ResponseError::InvalidTxnState)
        );
        let next = complete
            .prepare_add_partitions(10, 0, &parts(&[("t", 1)]), 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            (next.state, next.start_timestamp_ms),
            (TxnState::Ongoing, 10)
        );
        assert_eq!(next.partitions, parts(&[("t", 1)]));
        assert_eq!(
            init.prepare_end(10, 0, true, 3),
            Err(ResponseError::InvalidTxnState),
            "nothing to end"
        );
    }

    #[test]
    fn wrong_producers_are_told_apart() {
        let meta = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        let p = parts(&[("t", 0)]);
        assert_eq!(
            meta.prepare_add_partitions(11, 0, &p, 1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            meta.prepare_add_partitions(10, 1, &p, 1),
            Err(ResponseError::ProducerFenced)
        );
        let mut pending = meta.clone();
        pending.pending = Some(TxnState::Ongoing);
        assert_eq!(
            pending.prepare_add_partitions(10, 0, &p, 1),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            pending.prepare_init(60_000, None, None, 1),
            Err(ResponseError::ConcurrentTransactions)
        );
    }

    #[test]
    fn a_new_instance_bumps_the_epoch_and_aborts_an_ongoing_transaction_first() {
        let meta = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        let again = written(meta.prepare_init(30_000, None, None, 1));
        assert_eq!((again.producer_id, again.producer_epoch), (10, 1));
        assert_eq!(again.timeout_ms, 30_000);

        let ongoing = again
            .prepare_add_partitions(10, 1, &parts(&[("t", 0)]), 2)
            .unwrap()
            .unwrap();
        let Ok(InitTransit::FenceAndAbort(abort)) = ongoing.prepare_init(30_000, None, None, 3)
        else {
            panic!("an ongoing transaction is aborted first");
        };
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 2)
        );
        assert_eq!(abort.partitions, parts(&[("t", 0)]));
        // The old producer, at epoch 1, is fenced from here on.
        assert_eq!(
            abort.prepare_end(10, 1, true, 4),
            Err(ResponseError::ProducerFenced)
        );
        let aborted = abort.prepare_complete(5).unwrap();
        let retried = written(aborted.prepare_init(30_000, None, None, 6));
        assert_eq!(
            retried.producer_epoch, 3,
            "the client never sees the fencing epoch"
        );
    }

    #[test]
    fn kip_360_bumps_the_named_epoch_and_repeats_a_retried_bump() {
        let meta = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        // The producer at (10, 0) hit a retriable error and asks for a bump.
        let bumped = written(meta.prepare_init(60_000, Some((10, 0)), None, 1));
        assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
        // Its response was lost; the retry names the old epoch and gets the same answer.
        let retry = written(bumped.prepare_init(60_000, Some((10, 0)), None, 2));
        assert_eq!(retry.producer_epoch, 1);
        // An epoch neither current nor the last one is a zombie.
        assert_eq!(
            bumped.prepare_init(60_000, Some((10, 5)), None, 2),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            bumped.prepare_init(60_000, Some((99, 1)), None, 2),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let mut meta = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        meta.producer_epoch = i16::MAX - 1;
        assert_eq!(
            meta.prepare_init(60_000, Some((10, i16::MAX - 1)), None, 1),
            Ok(InitTransit::NeedProducerId)
        );
        let rotated = written(meta.prepare_init(60_000, Some((10, i16::MAX - 1)), Some(20), 1));
        assert_eq!(
            (
                rotated.producer_id,
                rotated.producer_epoch,
                rotated.previous_producer_id
            ),
            (20, 0, 10)
        );
        // The client retries naming the old id and its exhausted epoch: not a zombie.
        assert!(matches!(
            rotated.prepare_init(60_000, Some((10, i16::MAX - 1)), None, 2),
            Ok(InitTransit::Write(_))
        ));
    }

    #[test]
    fn verify_only_answers_per_partition() {
        let meta = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        let ongoing = meta
            .prepare_add_partitions(10, 0, &parts(&[("t", 0)]), 1)
            .unwrap()
            .unwrap();
        let asked = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        assert_eq!(
            ongoing.verify_partitions(10, 0, &asked),
            Ok(vec![None, Some(ResponseError::TransactionAbortable)])
        );
        assert_eq!(
            ongoing.verify_partitions(10, 1, &asked),
            Err(ResponseError::ProducerFenced)
        );
        let prepared = ongoing.prepare_end(10, 0, false, 2).unwrap().unwrap();
        assert_eq!(
            prepared.verify_partitions(10, 0, &asked),
            Err(ResponseError::ConcurrentTransactions)
        );
    }

    #[test]
    fn timeouts_and_expiry() {
        let meta = written(TxnMetadata::new(10, 1_000, 0).prepare_init(1_000, None, None, 0));
        let ongoing = meta
            .prepare_add_partitions(10, 0, &parts(&[("t", 0)]), 100)
            .unwrap()
            .unwrap();
        assert!(!ongoing.has_timed_out(1_100));
        assert!(ongoing.has_timed_out(1_101));
        assert!(!ongoing.has_expired(1_000_000, 10));
        let abort = ongoing.fence_and_abort(1_101);
        assert_eq!(
            (abort.producer_epoch, abort.state),
            (1, TxnState::PrepareAbort)
        );
        assert!(meta.has_expired(10, 10));
        assert!(!meta.has_expired(9, 10));
    }

    #[test]
    fn states_have_kafkas_ids_and_names() {
        for state in TxnState::ALL {
            assert_eq!(TxnState::from_id(state.id()), Some(state));
            assert_eq!(TxnState::from_name(state.name()), Some(state));
        }
        assert_eq!(TxnState::PrepareEpochFence.id(), 7);
        assert_eq!(TxnState::CompleteAbort.name(), "CompleteAbort");
        assert_eq!(TxnState::from_id(8), None);
    }
}
