//! Fixtures the handler tests share: a broker context over an image replayed from records (its
//! controller unreachable unless a test serves one), brokers and topics as records, a small cluster,
//! and a check that a response encodes at a version.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chronik_metadata::records::{ConfigResource, PartitionChangeRecord, RegisterBrokerRecord};
use chronik_metadata::{BrokerId, Endpoint, Record, NO_LEADER};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::Encodable;
use tempfile::TempDir;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use uuid::Uuid;

use super::{BrokerContext, RequestContext};
use crate::controller_client::ControllerClient;
use crate::log::{LogConfig, LogManager};
use crate::metadata::tests::update;
use crate::metadata::MetadataCache;
use crate::replica::{IsrChange, ReplicaManager};

pub(crate) const CLUSTER_ID: &str = "chronik-test";
/// "Authorized operations not requested", the codec's default.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// A broker context over an image replayed from `records`; its controller is never reachable.
pub(crate) struct TestBroker {
    pub ctx: BrokerContext,
    pub header: RequestHeader,
    /// The connection's session: `User:ANONYMOUS` from 127.0.0.1.
    pub session: crate::authorizer::Session,
    _dir: TempDir,
}

impl TestBroker {
    pub(crate) fn new(broker_id: BrokerId, records: &[Record]) -> Self {
        // Nothing listens on port 1: every call fails fast, within the retry budget.
        let nowhere = vec!["127.0.0.1:1".into()];
        Self::with_controller(broker_id, records, nowhere, Duration::from_millis(100))
    }

    pub(crate) fn with_controller(
        broker_id: BrokerId,
        records: &[Record],
        controllers: Vec<String>,
        request_timeout: Duration,
    ) -> Self {
        let isr_changes = tokio::sync::mpsc::unbounded_channel().0;
        Self::build(
            broker_id,
            records,
            controllers,
            request_timeout,
            isr_changes,
        )
    }

    /// A broker whose leaders' ISR changes (AlterPartition requests) arrive on the receiver instead
    /// of failing at once for want of a controller.
    pub(crate) fn with_isr_changes(
        broker_id: BrokerId,
        records: &[Record],
    ) -> (Self, UnboundedReceiver<IsrChange>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let nowhere = vec!["127.0.0.1:1".into()];
        let broker = Self::build(
            broker_id,
            records,
            nowhere,
            Duration::from_millis(100),
            sender,
        );
        (broker, receiver)
    }

    fn build(
        broker_id: BrokerId,
        records: &[Record],
        controllers: Vec<String>,
        request_timeout: Duration,
        isr_changes: UnboundedSender<IsrChange>,
    ) -> Self {
        let metadata = Arc::new(MetadataCache::new());
        metadata
            .apply(&[update(10, true, records)])
            .expect("records apply");
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = LogManager::open(dir.path(), LogConfig::default()).expect("log manager");
        let controller = Arc::new(
            ControllerClient::new(controllers, request_timeout).expect("controller client"),
        );
        let replicas = Arc::new(ReplicaManager::new(broker_id, Arc::new(logs), isr_changes));
        let metadata_for_verifier = metadata.clone();
        let groups = crate::group::GroupCoordinator::new(
            broker_id,
            crate::group::GroupConfig::default(),
            metadata.clone(),
            replicas.clone(),
            controller.clone(),
            tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        );
        let (_, status) = tokio::sync::watch::channel(crate::status::BrokerStatus {
            broker_id,
            incarnation_id: uuid::Uuid::nil(),
            state: crate::status::BrokerState::Running,
            broker_epoch: Some(1),
            cluster_id: None,
            fenced: false,
            offline_log_dirs: Vec::new(),
        });
        let producer_ids = crate::producer_ids::ProducerIdManager::new(
            crate::producer_ids::ControllerBlockSource {
                broker_id,
                controller: controller.clone(),
                status,
            },
            tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        );
        let txns = crate::txn::TransactionCoordinator::new(
            broker_id,
            crate::txn::TxnConfig::default(),
            metadata.clone(),
            replicas.clone(),
            controller.clone(),
            producer_ids.clone(),
            crate::txn::markers::MarkerSender::new(
                chronik_wire::ClientConnector::plaintext("test"),
                "PLAINTEXT".into(),
                metadata.clone(),
                broker_id,
            ),
            tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        );
        TestBroker {
            ctx: BrokerContext {
                broker_id,
                metadata,
                replicas,
                controller,
                groups,
                txns,
                auto_create_topics: false,
                authorizer: None,
                producer_ids,
                txn_verifier: Arc::new(crate::txn_verifier::TxnVerifier::new(
                    true,
                    broker_id,
                    metadata_for_verifier,
                    "PLAINTEXT".into(),
                    chronik_wire::ClientConnector::plaintext("test"),
                )),
                fetch_sessions: Arc::new(crate::fetch_session::FetchSessionCache::new(
                    crate::config::DEFAULT_FETCH_SESSION_CACHE_SLOTS,
                )),
                connections: Arc::default(),
                quotas: Arc::new(crate::quota::ClientQuotaManager::new(Default::default())),
            },
            header: RequestHeader::default(),
            session: crate::authorizer::Session::anonymous(Some(
                std::net::Ipv4Addr::LOCALHOST.into(),
            )),
            _dir: dir,
        }
    }

    pub(crate) fn rc<'a>(&'a self, version: i16, listener: &'a str) -> RequestContext<'a> {
        RequestContext {
            header: &self.header,
            version,
            listener,
            peer: None,
            session: &self.session,
        }
    }
}

pub(crate) fn broker(id: BrokerId, rack: Option<&str>, fenced: bool) -> Record {
    let port = 9090 + id as u16;
    Record::RegisterBroker(RegisterBrokerRecord {
        broker_id: id,
        incarnation_id: Uuid::new_v4(),
        broker_epoch: -1,
        endpoints: vec![
            Endpoint {
                name: "PLAINTEXT".into(),
                host: format!("broker{id}.example"),
                port,
            },
            Endpoint {
                name: "INTERNAL".into(),
                host: format!("10.0.0.{id}"),
                port: port + 1000,
            },
        ],
        rack: rack.map(str::to_owned),
        fenced,
        in_controlled_shutdown: false,
        supported_features: Default::default(),
        log_dir_id: None,
    })
}

/// Broker `id` of [`cluster`] with the standard authorizer (everyone allowed where no ACL applies)
/// and one ACL on the cluster, for `User:admin` only: ANONYMOUS may do nothing on the cluster, as
/// the admin handlers' authorization tests need.
pub(crate) fn broker_with_admin_only_cluster(id: BrokerId) -> TestBroker {
    use chronik_metadata::acl::{
        AclBinding, AclOperation, AclPermissionType, PatternType, ResourceType, CLUSTER_NAME,
    };

    let mut records = cluster().records;
    records.push(Record::AccessControlEntry {
        id: Uuid::new_v4(),
        acl: AclBinding {
            resource_type: ResourceType::Cluster,
            resource_name: CLUSTER_NAME.into(),
            pattern_type: PatternType::Literal,
            principal: "User:admin".into(),
            host: "*".into(),
            operation: AclOperation::All,
            permission: AclPermissionType::Allow,
        },
    });
    let mut broker = TestBroker::new(id, &records);
    broker.ctx.authorizer = Some(crate::authorizer::Authorizer {
        allow_everyone_if_no_acl_found: true,
        ..Default::default()
    });
    broker
}

/// A topic whose partition `i` has replicas and ISR `replicas[i]`, led by the first of them.
pub(crate) fn topic(name: &str, id: Uuid, replicas: &[&[BrokerId]]) -> Vec<Record> {
    let mut records = vec![Record::Topic {
        name: name.into(),
        topic_id: id,
    }];
    for (index, replicas) in replicas.iter().enumerate() {
        records.push(Record::Partition(
            chronik_metadata::records::PartitionRecord {
                topic_id: id,
                partition: index as i32,
                replicas: replicas.to_vec(),
                isr: replicas.to_vec(),
                leader: replicas.first().copied().unwrap_or(NO_LEADER),
                leader_epoch: 0,
                partition_epoch: 0,
                recovering: false,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                elr: Vec::new(),
            },
        ));
    }
    records
}

pub(crate) struct Cluster {
    pub records: Vec<Record>,
    pub orders: Uuid,
    pub audit: Uuid,
    pub offsets: Uuid,
}

/// Brokers 1 and 2 live, 3 fenced; `orders` (2 partitions; p1 led by 2, then left leaderless at
/// epoch 1), `audit` (replicas on the fenced 3) and `__consumer_offsets`.
pub(crate) fn cluster() -> Cluster {
    let (orders, audit, offsets) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut records = vec![
        Record::ClusterId {
            cluster_id: CLUSTER_ID.into(),
        },
        broker(1, Some("rack-a"), false),
        broker(2, None, false),
        broker(3, Some("rack-c"), true),
        Record::Config {
            resource: ConfigResource::Cluster,
            key: "min.insync.replicas".into(),
            value: Some("1".into()),
        },
    ];
    records.extend(topic("orders", orders, &[&[1, 2], &[2, 1]]));
    records.push(Record::PartitionChange(PartitionChangeRecord {
        topic_id: orders,
        partition: 1,
        leader: Some(NO_LEADER),
        isr: Some(vec![2]),
        ..Default::default()
    }));
    records.extend(topic("audit", audit, &[&[1, 3]]));
    records.push(Record::Config {
        resource: ConfigResource::Topic("audit".into()),
        key: "retention.ms".into(),
        value: Some("1000".into()),
    });
    records.extend(topic("__consumer_offsets", offsets, &[&[2]]));
    Cluster {
        records,
        orders,
        audit,
        offsets,
    }
}

/// The response must encode at the version it answers (the codec refuses fields a version lacks).
pub(crate) fn assert_encodes(response: &impl Encodable, version: i16) {
    let mut buf = BytesMut::new();
    response
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encodes at v{version}: {e}"));
}
