//! One transactional id's state and its transitions (Kafka's `TransactionMetadata` and the checks of
//! `TransactionCoordinator`).
//!
//! Two transaction versions (KIP-890) live side by side, chosen per request: in version 1 (EndTxn
//! v0–4, AddPartitionsToTxn v0–3 from the client) the producer keeps one epoch for its session and
//! adds partitions itself; in version 2 (EndTxn v5, partitions added by their leaders) every EndTxn
//! bumps the epoch, and the bumped epoch (or, once the epoch is exhausted, a new producer id at epoch
//! 0) is what the producer uses for its next transaction and what the markers carry, so a batch or
//! an EndTxn of an earlier transaction is fenced. The state remembers which version its last
//! transaction used (`client_version`), which decides how an EndTxn retry is told from a new one.
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
    /// The producer id the id moves to when its prepared transaction completes (transaction version
    /// 2 with the epoch exhausted, Kafka's `nextProducerId`); -1 otherwise.
    pub next_producer_id: i64,
    /// The transaction version of the last request that wrote this state (Kafka's
    /// `clientTransactionVersion`): 2 when the epoch is bumped at every transaction end, else 0.
    pub client_version: i16,
    /// The state being written, while its record is not yet committed.
    pub pending: Option<TxnState>,
}

/// Transaction version 2 (KIP-890 part 2): the epoch is bumped at every transaction end.
pub const TRANSACTION_VERSION_2: i16 = 2;

/// What EndTxn does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndTransit {
    /// Nothing to write (a retry of an end already complete): answer with this producer id and epoch.
    Answer(i64, i16),
    /// Write this Prepare state; once committed, answer with its [`TxnMetadata::producer_after_completion`].
    Write(TxnMetadata),
    /// Transaction version 2 with the epoch exhausted: call again with a fresh producer id.
    NeedProducerId,
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
            next_producer_id: NO_PRODUCER_ID,
            client_version: 0,
            pending: None,
        }
    }

    pub fn from_log(value: TxnLogValue) -> Self {
        TxnMetadata {
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: value.timeout_ms,
            state: value.state,
            partitions: value.partitions,
            start_timestamp_ms: value.start_timestamp_ms,
            last_update_timestamp_ms: value.last_update_timestamp_ms,
            next_producer_id: value.next_producer_id,
            client_version: value.client_version,
            pending: None,
        }
    }

    pub fn to_log(&self) -> TxnLogValue {
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_timestamp_ms: self.last_update_timestamp_ms,
            start_timestamp_ms: self.start_timestamp_ms,
            client_version: self.client_version,
        }
    }

    /// The producer id and epoch the producer goes on with once this (prepared) transaction
    /// completes: what EndTxn v5 answers (Kafka's `prepareComplete`).
    pub fn producer_after_completion(&self) -> (i64, i16) {
        if self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
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
                    next_producer_id: NO_PRODUCER_ID,
                    client_version: self.client_version,
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
    /// PrepareAbort). The state is written as transaction version 1 whatever the transaction was:
    /// an EndTxn of the fenced producer, one epoch behind, must not pass for the retry of a version
    /// 2 end (which would hand it the fencing epoch); it is PRODUCER_FENCED.
    pub fn fence_and_abort(&self, now_ms: i64) -> TxnMetadata {
        let mut next = self.to(TxnState::PrepareAbort, now_ms);
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.last_producer_epoch = NO_PRODUCER_EPOCH;
        next.next_producer_id = NO_PRODUCER_ID;
        next.client_version = 0;
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

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition; in transaction
    /// version 2 a partition leader or group coordinator adding for the producer): `Ok(None)` when
    /// every partition is in the ongoing transaction already. `client_version` is the transaction
    /// version of the request.
    pub fn prepare_add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        client_version: i16,
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
        next.client_version = client_version;
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

    /// EndTxn from the client (Kafka's `TransactionCoordinator.endTransaction`). `client_version` is
    /// the request's transaction version (2 for EndTxn v5); `new_producer_id` a fresh id once asked
    /// for.
    ///
    /// In transaction version 2 the epoch is bumped at every end, so the same epoch means the next
    /// end, not a retry: a retry names the epoch before the bump (or the previous producer id at the
    /// exhausted epoch, once the id rotated). And since partitions are added by their leaders, a
    /// producer cannot know whether its transaction reached the coordinator: an abort with nothing
    /// open is a real, empty abort (it bumps the epoch as any end does).
    pub fn prepare_end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        client_version: i16,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<EndTransit, ResponseError> {
        let stored_v2 = self.client_version >= TRANSACTION_VERSION_2;
        let retry_on_bump = stored_v2 && i32::from(self.producer_epoch) == i32::from(epoch) + 1;
        let retry_on_overflow = stored_v2
            && producer_id != self.producer_id
            && producer_id == self.previous_producer_id
            && epoch == i16::MAX - 1
            && self.producer_epoch == 0;
        let is_retry = retry_on_bump || retry_on_overflow;
        if producer_id != self.producer_id && !retry_on_overflow {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        let valid_epoch = if stored_v2 {
            match self.state {
                TxnState::PrepareCommit
                | TxnState::PrepareAbort
                | TxnState::CompleteCommit
                | TxnState::CompleteAbort => is_retry || epoch == self.producer_epoch,
                _ => epoch == self.producer_epoch,
            }
        } else {
            epoch == self.producer_epoch
        };
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if self.pending.is_some() || (stored_v2 && self.state.is_prepared() && !is_retry) {
            // The end of the next transaction (at the bumped epoch) while this one's markers are
            // still being written: it waits for them, as its first partition's add does (Kafka's
            // KAFKA-18575).
            return Err(ResponseError::ConcurrentTransactions);
        }
        let request_v2 = client_version >= TRANSACTION_VERSION_2;
        let answer = || Ok(EndTransit::Answer(self.producer_id, self.producer_epoch));
        match (self.state, commit) {
            (TxnState::Ongoing, true) => self.prepare(
                TxnState::PrepareCommit,
                client_version,
                new_producer_id,
                now_ms,
            ),
            (TxnState::Ongoing, false) => self.prepare(
                TxnState::PrepareAbort,
                client_version,
                new_producer_id,
                now_ms,
            ),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false)
                if !stored_v2 || is_retry =>
            {
                answer()
            }
            (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false)
                if request_v2 && !is_retry =>
            {
                self.prepare(
                    TxnState::PrepareAbort,
                    client_version,
                    new_producer_id,
                    now_ms,
                )
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Whether a refused transaction version 1 EndTxn is an abort of a transaction this coordinator
    /// never recorded, by the current producer: nothing was added (the id is Empty, or its last
    /// transaction is committed), and with partition verification on no leader wrote a batch of it,
    /// so there is nothing to abort. librdkafka sends EndTxn(abort) after every AddPartitionsToTxn it
    /// attempted, including one lost with a coordinator that died before recording it; Kafka answers
    /// INVALID_TXN_STATE, fatal to the producer. The coordinator answers such an abort as done.
    pub fn is_abort_of_nothing_recorded(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        client_version: i16,
    ) -> bool {
        !commit
            && client_version < TRANSACTION_VERSION_2
            && self.client_version < TRANSACTION_VERSION_2
            && self.pending.is_none()
            && (self.producer_id, self.producer_epoch) == (producer_id, epoch)
            && matches!(self.state, TxnState::Empty | TxnState::CompleteCommit)
    }

    /// The Prepare state of an end: in transaction version 2 with the epoch bumped (and a new
    /// producer id to move to when the epoch is exhausted).
    fn prepare(
        &self,
        state: TxnState,
        client_version: i16,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<EndTransit, ResponseError> {
        let mut next = self.to(state, now_ms);
        if client_version >= TRANSACTION_VERSION_2 {
            if is_epoch_exhausted(self.producer_epoch) {
                let Some(id) = new_producer_id else {
                    return Ok(EndTransit::NeedProducerId);
                };
                next.next_producer_id = id;
            }
            next.producer_epoch = self.producer_epoch.saturating_add(1);
            next.last_producer_epoch = self.producer_epoch;
            if self.state != TxnState::Ongoing {
                // An abort with nothing added: it starts and ends now.
                next.partitions.clear();
                next.start_timestamp_ms = now_ms;
            }
        }
        next.client_version = client_version;
        Ok(EndTransit::Write(next))
    }

    /// Once every marker is written: CompleteCommit or CompleteAbort, with no partitions; with the
    /// new producer id at epoch 0 if the end rotated it.
    pub fn prepare_complete(&self, now_ms: i64) -> Option<TxnMetadata> {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut next = self.to(state, now_ms);
        next.partitions.clear();
        if self.next_producer_id >= 0 {
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = NO_PRODUCER_ID;
        }
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

    /// The transaction version 1 forms of AddPartitionsToTxn and EndTxn (`None`: nothing to write).
    trait Version1 {
        fn add_v1(
            &self,
            producer_id: i64,
            epoch: i16,
            partitions: &BTreeSet<(String, i32)>,
            now_ms: i64,
        ) -> Result<Option<TxnMetadata>, ResponseError>;
        fn end_v1(
            &self,
            producer_id: i64,
            epoch: i16,
            commit: bool,
            now_ms: i64,
        ) -> Result<Option<TxnMetadata>, ResponseError>;
    }

    impl Version1 for TxnMetadata {
        fn add_v1(
            &self,
            producer_id: i64,
            epoch: i16,
            partitions: &BTreeSet<(String, i32)>,
            now_ms: i64,
        ) -> Result<Option<TxnMetadata>, ResponseError> {
            self.prepare_add_partitions(producer_id, epoch, partitions, 0, now_ms)
        }

        fn end_v1(
            &self,
            producer_id: i64,
            epoch: i16,
            commit: bool,
            now_ms: i64,
        ) -> Result<Option<TxnMetadata>, ResponseError> {
            match self.prepare_end(producer_id, epoch, commit, 0, None, now_ms)? {
                EndTransit::Write(next) => Ok(Some(next)),
                EndTransit::Answer(..) => Ok(None),
                EndTransit::NeedProducerId => panic!("version 1 never rotates the producer id"),
            }
        }
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

        let added = init.add_v1(10, 0, &parts(&[("t", 0)]), 3).unwrap().unwrap();
        assert_eq!(
            (added.state, added.start_timestamp_ms),
            (TxnState::Ongoing, 3)
        );
        // Adding what is in the transaction already writes nothing.
        assert_eq!(added.add_v1(10, 0, &parts(&[("t", 0)]), 4), Ok(None));
        let more = added
            .add_v1(10, 0, &parts(&[("u", 1)]), 5)
            .unwrap()
            .unwrap();
        assert_eq!(more.partitions, parts(&[("t", 0), ("u", 1)]));
        assert_eq!(
            more.start_timestamp_ms, 3,
            "the transaction started at the first add"
        );

        let prepared = more.end_v1(10, 0, true, 6).unwrap().unwrap();
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(prepared.partitions, more.partitions, "markers go to these");
        // While markers are written, everything else waits.
        assert_eq!(
            prepared.add_v1(10, 0, &parts(&[("t", 0)]), 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.prepare_init(60_000, None, None, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.end_v1(10, 0, true, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.end_v1(10, 0, false, 7),
            Err(ResponseError::InvalidTxnState)
        );

        let complete = prepared.prepare_complete(8).unwrap();
        assert_eq!(complete.state, TxnState::CompleteCommit);
        assert!(complete.partitions.is_empty());
        assert_eq!(
            complete.end_v1(10, 0, true, 9),
            Ok(None),
            "a retried commit"
        );
        assert_eq!(
            complete.end_v1(10, 0, false, 9),
            Err(ResponseError::InvalidTxnState)
        );
        let next = complete
            .add_v1(10, 0, &parts(&[("t", 1)]), 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            (next.state, next.start_timestamp_ms),
            (TxnState::Ongoing, 10)
        );
        assert_eq!(next.partitions, parts(&[("t", 1)]));
        assert_eq!(
            init.end_v1(10, 0, true, 3),
            Err(ResponseError::InvalidTxnState),
            "nothing to end"
        );
    }

    #[test]
    fn wrong_producers_are_told_apart() {
        let meta = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        let p = parts(&[("t", 0)]);
        assert_eq!(
            meta.add_v1(11, 0, &p, 1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            meta.add_v1(10, 1, &p, 1),
            Err(ResponseError::ProducerFenced)
        );
        let mut pending = meta.clone();
        pending.pending = Some(TxnState::Ongoing);
        assert_eq!(
            pending.add_v1(10, 0, &p, 1),
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
            .add_v1(10, 1, &parts(&[("t", 0)]), 2)
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
            abort.end_v1(10, 1, true, 4),
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
        let ongoing = meta.add_v1(10, 0, &parts(&[("t", 0)]), 1).unwrap().unwrap();
        let asked = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        assert_eq!(
            ongoing.verify_partitions(10, 0, &asked),
            Ok(vec![None, Some(ResponseError::TransactionAbortable)])
        );
        assert_eq!(
            ongoing.verify_partitions(10, 1, &asked),
            Err(ResponseError::ProducerFenced)
        );
        let prepared = ongoing.end_v1(10, 0, false, 2).unwrap().unwrap();
        assert_eq!(
            prepared.verify_partitions(10, 0, &asked),
            Err(ResponseError::ConcurrentTransactions)
        );
    }

    #[test]
    fn timeouts_and_expiry() {
        let meta = written(TxnMetadata::new(10, 1_000, 0).prepare_init(1_000, None, None, 0));
        let ongoing = meta
            .add_v1(10, 0, &parts(&[("t", 0)]), 100)
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

    fn end_v2(
        meta: &TxnMetadata,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        new_producer_id: Option<i64>,
    ) -> Result<EndTransit, ResponseError> {
        meta.prepare_end(
            producer_id,
            epoch,
            commit,
            TRANSACTION_VERSION_2,
            new_producer_id,
            0,
        )
    }

    /// Producer 10 at epoch 0 with `t-0` added by its leader (transaction version 2).
    fn ongoing_v2(timeout_ms: i32) -> TxnMetadata {
        written(TxnMetadata::new(10, timeout_ms, 0).prepare_init(timeout_ms, None, None, 0))
            .prepare_add_partitions(10, 0, &parts(&[("t", 0)]), TRANSACTION_VERSION_2, 1)
            .unwrap()
            .unwrap()
    }

    fn prepared_v2(transit: Result<EndTransit, ResponseError>) -> TxnMetadata {
        match transit {
            Ok(EndTransit::Write(next)) => next,
            other => panic!("expected a Prepare to write, got {other:?}"),
        }
    }

    #[test]
    fn a_version_1_abort_of_nothing_recorded_is_told_apart() {
        let init = written(TxnMetadata::new(10, 60_000, 0).prepare_init(60_000, None, None, 0));
        assert_eq!(
            init.end_v1(10, 0, false, 1),
            Err(ResponseError::InvalidTxnState)
        );
        assert!(init.is_abort_of_nothing_recorded(10, 0, false, 0));
        let committed = init
            .add_v1(10, 0, &parts(&[("t", 0)]), 1)
            .unwrap()
            .unwrap()
            .end_v1(10, 0, true, 2)
            .unwrap()
            .unwrap()
            .prepare_complete(3)
            .unwrap();
        assert!(committed.is_abort_of_nothing_recorded(10, 0, false, 0));
        // Not a commit, not another producer or epoch, not transaction version 2, not while
        // something is being written.
        assert!(!committed.is_abort_of_nothing_recorded(10, 0, true, 0));
        assert!(!committed.is_abort_of_nothing_recorded(10, 1, false, 0));
        assert!(!committed.is_abort_of_nothing_recorded(11, 0, false, 0));
        assert!(!committed.is_abort_of_nothing_recorded(10, 0, false, TRANSACTION_VERSION_2));
        let mut pending = committed.clone();
        pending.pending = Some(TxnState::Ongoing);
        assert!(!pending.is_abort_of_nothing_recorded(10, 0, false, 0));
        let ongoing = committed
            .add_v1(10, 0, &parts(&[("t", 0)]), 4)
            .unwrap()
            .unwrap();
        assert!(!ongoing.is_abort_of_nothing_recorded(10, 0, false, 0));
    }

    #[test]
    fn version_2_bumps_the_epoch_at_every_end_and_tells_a_retry_from_the_next_end() {
        let ongoing = ongoing_v2(60_000);
        assert_eq!(ongoing.client_version, TRANSACTION_VERSION_2);

        let prepared = prepared_v2(end_v2(&ongoing, 10, 0, true, None));
        assert_eq!(
            (
                prepared.state,
                prepared.producer_epoch,
                prepared.last_producer_epoch
            ),
            (TxnState::PrepareCommit, 1, 0),
            "the markers carry the bumped epoch"
        );
        assert_eq!(prepared.partitions, parts(&[("t", 0)]));
        assert_eq!(prepared.producer_after_completion(), (10, 1));
        // While the markers are written, the retry waits, and so does the next transaction's end.
        for (epoch, commit) in [(0, true), (1, true), (1, false)] {
            assert_eq!(
                end_v2(&prepared, 10, epoch, commit, None),
                Err(ResponseError::ConcurrentTransactions)
            );
        }
        assert_eq!(
            end_v2(&prepared, 10, 2, true, None),
            Err(ResponseError::ProducerFenced)
        );
        // The next transaction's first partition waits for this one to complete.
        assert_eq!(
            prepared.prepare_add_partitions(10, 1, &parts(&[("t", 0)]), TRANSACTION_VERSION_2, 2),
            Err(ResponseError::ConcurrentTransactions)
        );

        let complete = prepared.prepare_complete(3).unwrap();
        assert_eq!(
            (complete.state, complete.producer_epoch),
            (TxnState::CompleteCommit, 1)
        );
        assert_eq!(
            end_v2(&complete, 10, 0, true, None),
            Ok(EndTransit::Answer(10, 1)),
            "a retried commit gets the epoch to go on with"
        );
        assert_eq!(
            end_v2(&complete, 10, 0, false, None),
            Err(ResponseError::InvalidTxnState),
            "a retry that asks the other outcome"
        );
        assert_eq!(
            end_v2(&complete, 10, 1, true, None),
            Err(ResponseError::InvalidTxnState),
            "a commit of nothing"
        );
        // An abort of nothing is a real end: the producer may have sent to a partition whose
        // leader never added it.
        let empty_abort = prepared_v2(end_v2(&complete, 10, 1, false, None));
        assert_eq!(
            (empty_abort.state, empty_abort.producer_epoch),
            (TxnState::PrepareAbort, 2)
        );
        assert!(empty_abort.partitions.is_empty());
        // A batch or an add of the finished transaction's epoch is fenced.
        assert_eq!(
            complete.prepare_add_partitions(10, 0, &parts(&[("u", 0)]), TRANSACTION_VERSION_2, 4),
            Err(ResponseError::ProducerFenced)
        );
        let next = complete
            .prepare_add_partitions(10, 1, &parts(&[("u", 0)]), TRANSACTION_VERSION_2, 4)
            .unwrap()
            .unwrap();
        assert_eq!(
            (next.state, next.start_timestamp_ms),
            (TxnState::Ongoing, 4)
        );
        // Two ends later the first epoch is a zombie.
        let done = prepared_v2(end_v2(&next, 10, 1, false, None))
            .prepare_complete(5)
            .unwrap();
        assert_eq!(done.producer_epoch, 2);
        assert_eq!(
            end_v2(&done, 10, 0, false, None),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end_v2(&done, 11, 2, false, None),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn version_2_rotates_an_exhausted_producer_id_when_the_transaction_ends() {
        let mut ongoing = ongoing_v2(60_000);
        ongoing.producer_epoch = i16::MAX - 1;
        assert_eq!(
            end_v2(&ongoing, 10, i16::MAX - 1, true, None),
            Ok(EndTransit::NeedProducerId)
        );
        let prepared = prepared_v2(end_v2(&ongoing, 10, i16::MAX - 1, true, Some(20)));
        assert_eq!(
            (
                prepared.producer_id,
                prepared.producer_epoch,
                prepared.next_producer_id
            ),
            (10, i16::MAX, 20),
            "the markers go out under the old id with the last epoch"
        );
        assert_eq!(prepared.producer_after_completion(), (20, 0));
        let complete = prepared.prepare_complete(2).unwrap();
        assert_eq!(
            (
                complete.producer_id,
                complete.producer_epoch,
                complete.previous_producer_id,
                complete.next_producer_id
            ),
            (20, 0, 10, NO_PRODUCER_ID)
        );
        assert_eq!(
            end_v2(&complete, 10, i16::MAX - 1, true, None),
            Ok(EndTransit::Answer(20, 0)),
            "the retry names the old id and gets the new one"
        );
        assert_eq!(
            end_v2(&complete, 10, 5, true, None),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn a_producer_fenced_by_the_coordinator_cannot_pass_for_a_version_2_retry() {
        let mut ongoing = ongoing_v2(1_000);
        ongoing.producer_epoch = 3;
        let aborted = ongoing
            .fence_and_abort(2_000)
            .prepare_complete(2_001)
            .unwrap();
        assert_eq!(
            (aborted.state, aborted.producer_epoch),
            (TxnState::CompleteAbort, 4)
        );
        assert_eq!(
            end_v2(&aborted, 10, 3, false, None),
            Err(ResponseError::ProducerFenced),
            "one epoch behind after a fence is a zombie, not a retry"
        );
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
