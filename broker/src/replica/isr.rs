//! Sends the ISR changes partition leaders ask for to the controller (AlterPartition, KIP-497), one
//! in flight per partition. The controller's answer is applied through the metadata log like any other
//! change; the in-flight slot is released once this broker's image shows the result (or the request
//! failed), so the next change is computed from the new ISR. While a change that adds a replica is
//! in flight, and after it was accepted until the image shows it, the added replica counts toward
//! the high watermark (KIP-497's maximal ISR, see [`super::Partition`]). The same path carries a
//! leader's LeaderRecoveryState=RECOVERED after an unclean election (KIP-704).

use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::convert::topic_id_to_bytes;
use chronik_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::manager::IsrChange;
use super::ReplicaManager;
use crate::controller_client::ControllerClient;
use crate::status::BrokerStatus;

/// How long to wait for the metadata to show an accepted change before allowing the next one.
const APPLY_WAIT: Duration = Duration::from_secs(5);

pub async fn run_isr_changes(
    replicas: Arc<ReplicaManager>,
    controller: Arc<ControllerClient>,
    status: watch::Receiver<BrokerStatus>,
    mut changes: mpsc::UnboundedReceiver<IsrChange>,
    cancel: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        let partition = change.partition.clone();
        let Some(broker_epoch) = status.borrow().broker_epoch else {
            partition.end_isr_change(false);
            continue;
        };
        let request = pb::AlterPartitionRequest {
            broker_id: replicas.broker_id(),
            broker_epoch,
            topics: vec![pb::AlterPartitionTopic {
                topic_id: topic_id_to_bytes(partition.topic_id),
                partitions: vec![pb::AlterPartitionItem {
                    partition_index: partition.index,
                    leader_epoch: change.leader_epoch,
                    partition_epoch: change.partition_epoch,
                    new_isr: change
                        .new_isr
                        .iter()
                        .map(|&(broker_id, broker_epoch)| pb::IsrMember {
                            broker_id,
                            broker_epoch,
                        })
                        .collect(),
                    leader_recovery_state: change.leader_recovery_state.map(|s| s.code()),
                }],
            }],
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = controller.alter_partition(request) => result,
        };
        let applied_epoch = match result {
            Ok(response) => {
                let outcome = response
                    .topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .cloned();
                match outcome {
                    Some(r) if r.error_code == 0 => {
                        info!(topic = %partition.topic, partition = partition.index, isr = ?r.isr, "ISR changed");
                        Some(r.partition_epoch)
                    }
                    Some(r) => {
                        warn!(topic = %partition.topic, partition = partition.index, error_code = r.error_code, "ISR change refused");
                        None
                    }
                    None => None,
                }
            }
            Err(e) => {
                warn!(topic = %partition.topic, partition = partition.index, "ISR change failed: {e}");
                None
            }
        };
        if let Some(epoch) = applied_epoch {
            let mut data = replicas.subscribe_data();
            let _ = tokio::time::timeout(APPLY_WAIT, async {
                while partition.state().partition_epoch < epoch {
                    if data.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
        }
        partition.end_isr_change(applied_epoch.is_some());
        replicas.data_changed();
    }
}

/// Every `lag / 2`, asks to drop ISR members that have not caught up for `lag`.
pub async fn run_isr_shrinker(
    replicas: Arc<ReplicaManager>,
    lag: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval((lag / 2).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => replicas.shrink_lagging_isrs(lag),
        }
    }
}
