//! This broker's standing with the controller quorum: its state in Kafka's `BrokerState` terms and the
//! registration it holds (`BrokerStatus`). The lifecycle manager (`crate::lifecycle`) is its only
//! writer; replication, producer ids and the HTTP endpoints read it through a `watch` channel.

use chronik_metadata::BrokerId;

use crate::log::OfflineLogDir;
use uuid::Uuid;

/// Where the broker is in its life, as Kafka names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BrokerState {
    /// Registering, or registered and catching up on metadata; not yet unfenced since the process
    /// started.
    Starting,
    /// Was running, then lost its registration or was fenced by the controller (e.g. a missed session);
    /// working its way back.
    Fenced,
    /// Registered and unfenced: may lead partitions and join ISRs.
    Running,
    /// Handing its leaderships over before stopping.
    PendingControlledShutdown,
    /// No longer heartbeating.
    Stopped,
}

impl BrokerState {
    pub const ALL: [BrokerState; 5] = [
        BrokerState::Starting,
        BrokerState::Fenced,
        BrokerState::Running,
        BrokerState::PendingControlledShutdown,
        BrokerState::Stopped,
    ];

    /// The name used in logs, metrics and HTTP answers.
    pub fn name(self) -> &'static str {
        match self {
            BrokerState::Starting => "starting",
            BrokerState::Fenced => "fenced",
            BrokerState::Running => "running",
            BrokerState::PendingControlledShutdown => "pending_controlled_shutdown",
            BrokerState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the lifecycle manager knows about this broker's standing with the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerStatus {
    pub broker_id: BrokerId,
    /// Unique to this process start.
    pub incarnation_id: Uuid,
    pub state: BrokerState,
    /// The epoch of the current registration; `None` while not registered.
    pub broker_epoch: Option<i64>,
    /// The cluster this broker joined; kept across re-registrations and checked by the controller.
    pub cluster_id: Option<String>,
    /// Whether the controller last said this broker is fenced.
    pub fenced: bool,
    /// Log directories offline after an I/O failure, as last reported to the controller.
    pub offline_log_dirs: Vec<OfflineLogDir>,
}

impl BrokerStatus {
    pub(crate) fn new(broker_id: BrokerId, incarnation_id: Uuid) -> Self {
        BrokerStatus {
            broker_id,
            incarnation_id,
            state: BrokerState::Starting,
            broker_epoch: None,
            cluster_id: None,
            fenced: true,
            offline_log_dirs: Vec::new(),
        }
    }

    /// Why the broker cannot serve clients yet, or `None` when it can: registered, unfenced, and with
    /// metadata at least at its registration.
    pub fn not_ready_reason(&self, metadata_offset: u64) -> Option<String> {
        match self.state {
            BrokerState::Running => {}
            BrokerState::PendingControlledShutdown | BrokerState::Stopped => {
                return Some(format!("shutting down ({})", self.state))
            }
            BrokerState::Starting | BrokerState::Fenced => {}
        }
        if let Some(offline) = self.offline_log_dirs.first() {
            // Degraded, not dead: the process stays up and the controller has moved its replicas
            // away; a restart with room on the disk brings the directory back.
            return Some(format!(
                "log directory {} is offline ({}); restart the broker once the disk is fixed",
                offline.dir, offline.reason
            ));
        }
        let Some(epoch) = self.broker_epoch else {
            return Some("not registered with the controller".to_owned());
        };
        if self.fenced {
            return Some(format!("fenced (broker epoch {epoch})"));
        }
        if metadata_offset < epoch.max(0) as u64 {
            return Some(format!(
                "metadata at offset {metadata_offset}, behind its registration at {epoch}"
            ));
        }
        if self.state != BrokerState::Running {
            return Some(self.state.name().to_owned());
        }
        None
    }
}
