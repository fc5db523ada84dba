//! `broker list`: one row per registered broker (also the brokers table of `cluster status`).

use std::io::Write;

use super::{dash_if_empty, table};
use crate::cmd::BrokerStatus;

/// One row per broker; `-` for a broker without addresses or rack.
pub(super) fn list(out: &mut impl Write, brokers: &[BrokerStatus]) -> std::io::Result<()> {
    let rows = brokers
        .iter()
        .map(|broker| {
            vec![
                broker.broker_id.to_string(),
                dash_if_empty(broker.endpoints.join(",")),
                broker.rack.clone().unwrap_or_else(|| "-".to_owned()),
                match (broker.offline_log_dir, broker.cordoned) {
                    (true, true) => format!("{} (log dir offline, cordoned)", broker.state),
                    (true, false) => format!("{} (log dir offline)", broker.state),
                    (false, true) => format!("{} (cordoned)", broker.state),
                    (false, false) => broker.state.to_string(),
                },
                broker.epoch.to_string(),
                broker.leader_count.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "BROKER ID",
            "ADDRESSES",
            "RACK",
            "STATE",
            "EPOCH",
            "LEADERS",
        ],
        &rows,
    )
}
