//! A Fetch request's session id and epoch (KIP-227; Kafka's `FetchMetadata`), which the leader's
//! session cache (`fetch_session`) and the follower's replica fetcher (`replica::fetcher`) read alike.

/// No session (Kafka's `FetchMetadata.INVALID_SESSION_ID`).
pub const INVALID_SESSION_ID: i32 = 0;
/// A full fetch that asks for a session (Kafka's `FetchMetadata.INITIAL_EPOCH`).
pub const INITIAL_EPOCH: i32 = 0;
/// A full fetch without a session (Kafka's `FetchMetadata.FINAL_EPOCH`).
pub const FINAL_EPOCH: i32 = -1;

/// The epoch after `epoch` (Kafka's `FetchMetadata.nextEpoch`): after the last `i32` comes 1 (0 asks
/// for a new session), and a negative epoch stays final.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_epoch_wraps_as_kafkas() {
        assert_eq!(next_epoch(INITIAL_EPOCH), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1, "0 would ask for a new session");
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
    }
}
