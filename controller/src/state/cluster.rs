//! Broker lifecycle (Kafka's `ClusterControlManager` and `BrokerHeartbeatManager`, KIP-631):
//! registration, the heartbeat state machine, fencing and unfencing, controlled shutdown, offline log
//! directories (KIP-858), and producer-id blocks. Liveness (who heartbeats in time) is tracked by the
//! active controller in memory and passed in; everything here is pure.
//!
//! What must stay true: a broker that is fenced, shutting down or has an offline log directory leads
//! nothing and is in no ISR beyond the last member an ISR keeps (never emptied, so nothing
//! acknowledged is lost); an offline log directory does not fence the broker (it stays registered and
//! heartbeats), and only a new registration clears it, since a directory never comes back online
//! without a restart and its crash recovery.

use std::collections::{BTreeMap, BTreeSet};

use chronik_metadata::features::{self, FeatureRange};
use uuid::Uuid;

use crate::error::{ApiError, ResponseError};

use super::configs::{effective_bool, UNCLEAN_LEADER_ELECTION};
use super::election::{isr_without, lose_replica, min_isr, partition_change, Election};
use super::image::{BrokerRegistration, MetadataImage};
use super::records::{BrokerId, Endpoint, Record, RegisterBrokerRecord, NO_LEADER};
use super::ControllerResult;

/// How many producer ids one AllocateProducerIds hands out.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

#[derive(Clone, Debug)]
pub struct RegisterBroker {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The cluster id the broker saw before, if any.
    pub cluster_id: Option<String>,
    /// The feature levels it supports (empty from a release before brokers reported them).
    pub supported_features: BTreeMap<String, FeatureRange>,
    /// Its log directory's id (`None` from a release before brokers reported it).
    pub log_dir_id: Option<Uuid>,
}

/// Whether `request` registers `existing`'s broker with another log directory than before: its
/// replicas are gone. Unknown (a release before brokers reported it) is not another.
pub fn lost_log_dir(existing: &BrokerRegistration, request: &RegisterBroker) -> bool {
    existing.incarnation_id != request.incarnation_id
        && existing
            .log_dir_id
            .zip(request.log_dir_id)
            .is_some_and(|(before, now)| before != now)
}

/// The registration outcome: the epoch of an unchanged registration (a retry by the same incarnation),
/// or `None` when a new registration record is written (its offset becomes the epoch).
pub type RegisterReply = Option<i64>;

/// Registers a broker. `has_live_session` says whether the current registration of this id still
/// heartbeats in time.
pub fn register_broker(
    image: &MetadataImage,
    request: &RegisterBroker,
    has_live_session: bool,
) -> Result<ControllerResult<RegisterReply>, ApiError> {
    if request.broker_id < 0 {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("invalid broker id {}", request.broker_id),
        ));
    }
    if request.endpoints.is_empty() {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            "a broker must advertise at least one endpoint",
        ));
    }
    if let (Some(theirs), Some(ours)) = (&request.cluster_id, &image.cluster_id) {
        if theirs != ours {
            return Err(ApiError::new(
                ResponseError::InconsistentClusterId,
                format!("broker belongs to cluster {theirs}, this is cluster {ours}"),
            ));
        }
    }
    // Kafka's `ClusterControlManager.registerBroker`: a broker that cannot serve a finalized level
    // does not join (an upgrade finalized before this broker's release was rolled out everywhere).
    // One of a release before brokers reported their levels is let in, as it was before, so that a
    // rolling upgrade from it can proceed; UpdateFeatures raises no level while it is registered.
    for (name, &level) in &image.features {
        let Some(supported) = features::broker_supports(&request.supported_features, name) else {
            break;
        };
        if !supported.contains(level) {
            return Err(ApiError::new(
                ResponseError::UnsupportedVersion,
                format!(
                    "Unable to register because the broker does not support finalized version \
                     {level} of {name}. The broker supports versions {}-{}.",
                    supported.min_level, supported.max_level
                ),
            ));
        }
    }
    let mut records = Vec::new();
    if let Some(existing) = image.brokers.get(&request.broker_id) {
        if existing.incarnation_id == request.incarnation_id {
            return Ok(ControllerResult::new(records, Some(existing.broker_epoch)));
        }
        if has_live_session {
            return Err(ApiError::new(
                ResponseError::DuplicateBrokerRegistration,
                format!(
                    "broker {} is already registered by another live process (incarnation {})",
                    request.broker_id, existing.incarnation_id
                ),
            ));
        }
        // A new incarnation of a broker whose old one stopped without being fenced yet: take it out
        // of every ISR and leadership first, as fencing would have. If its replicas are gone (an
        // emptied or replaced disk), even as a last ISR member, which it stays after a crash, so
        // it is not elected with an empty log over replicas holding the acknowledged writes.
        let lost = lost_log_dir(existing, request);
        records.extend(leave_partitions(image, request.broker_id, lost));
    }
    records.push(Record::RegisterBroker(RegisterBrokerRecord {
        broker_id: request.broker_id,
        incarnation_id: request.incarnation_id,
        broker_epoch: -1,
        endpoints: request.endpoints.clone(),
        rack: request.rack.clone(),
        fenced: true,
        in_controlled_shutdown: false,
        supported_features: request.supported_features.clone(),
        log_dir_id: request.log_dir_id,
    }));
    Ok(ControllerResult::new(records, None))
}

#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub broker_id: BrokerId,
    pub broker_epoch: i64,
    pub metadata_offset: u64,
    pub want_fence: bool,
    pub want_shut_down: bool,
    /// Log directories the broker reports offline (KIP-858's `OfflineLogDirs`).
    pub offline_log_dirs: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
    pub in_controlled_shutdown: bool,
}

/// Checks that a call comes from the current registration of a broker.
pub fn check_broker_epoch(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: i64,
) -> Result<&BrokerRegistration, ApiError> {
    let broker = image.brokers.get(&broker_id).ok_or_else(|| {
        ApiError::new(
            ResponseError::BrokerIdNotRegistered,
            format!("broker {broker_id} is not registered"),
        )
    })?;
    if broker.broker_epoch != broker_epoch {
        return Err(ApiError::new(
            ResponseError::StaleBrokerEpoch,
            format!(
                "broker {broker_id} epoch {broker_epoch} is stale; the current one is {}",
                broker.broker_epoch
            ),
        ));
    }
    Ok(broker)
}

/// One heartbeat through the broker state machine (Kafka's
/// `BrokerHeartbeatManager.calculateNextBrokerState`). `others_caught_up` says whether every
/// other active broker has applied metadata past this broker's controlled-shutdown record.
pub fn process_heartbeat(
    image: &MetadataImage,
    request: &Heartbeat,
    others_caught_up: bool,
) -> Result<ControllerResult<HeartbeatReply>, ApiError> {
    let broker = check_broker_epoch(image, request.broker_id, request.broker_epoch)?;
    let is_caught_up = request.metadata_offset >= broker.broker_epoch as u64;
    let mut reply = HeartbeatReply {
        is_caught_up,
        is_fenced: broker.fenced,
        should_shut_down: false,
        in_controlled_shutdown: broker.in_controlled_shutdown,
    };
    if !request.offline_log_dirs.is_empty() && !broker.has_offline_log_dir {
        // Handled on its own: the next heartbeat goes through the state machine below on an image
        // where the broker already leads nothing.
        return Ok(ControllerResult::new(
            handle_offline_log_dir(image, broker.broker_id),
            reply,
        ));
    }
    let mut records = Vec::new();
    if broker.fenced {
        if request.want_shut_down {
            reply.should_shut_down = true;
        } else if !request.want_fence && is_caught_up {
            records = unfence_broker(image, broker.broker_id);
            reply.is_fenced = false;
        }
    } else if broker.in_controlled_shutdown {
        let leads_nothing = image.leader_count(broker.broker_id) == 0;
        if leads_nothing && others_caught_up {
            records.push(Record::BrokerChange {
                broker_id: broker.broker_id,
                broker_epoch: broker.broker_epoch,
                fenced: Some(true),
                in_controlled_shutdown: Some(false),
                has_offline_log_dir: None,
            });
            reply = HeartbeatReply {
                is_fenced: true,
                should_shut_down: true,
                in_controlled_shutdown: false,
                ..reply
            };
        }
    } else if request.want_fence {
        records = fence_broker(image, broker.broker_id);
        reply.is_fenced = true;
        reply.should_shut_down = request.want_shut_down;
    } else if request.want_shut_down {
        records = begin_controlled_shutdown(image, broker.broker_id);
        reply.in_controlled_shutdown = true;
    }
    Ok(ControllerResult::new(records, reply))
}

/// Partition changes that take `broker` out of every ISR (keeping a last member) and move its
/// leaderships to other in-sync, acceptable replicas.
fn remove_from_partitions(image: &MetadataImage, broker: BrokerId) -> Vec<Record> {
    leave_partitions(image, broker, false)
}

/// As `remove_from_partitions`, or, when its log directory was `lost`, out of the eligible leader
/// replicas too and out of an ISR even as its last member (`election::lose_replica`).
fn leave_partitions(image: &MetadataImage, broker: BrokerId, lost: bool) -> Vec<Record> {
    let acceptable = |b: BrokerId| b != broker && image.is_active_broker(b);
    image
        .partitions()
        .filter_map(|(topic, index, p)| {
            let unclean = effective_bool(image, &topic.configs, UNCLEAN_LEADER_ELECTION);
            let min_isr = min_isr(image, topic, p);
            if lost {
                return lose_replica(topic.id, index, p, broker, min_isr, acceptable, unclean);
            }
            if !p.isr.contains(&broker) && p.leader != broker {
                return None;
            }
            partition_change(
                topic.id,
                index,
                p,
                isr_without(&p.isr, broker),
                min_isr,
                acceptable,
                unclean,
                Election::KeepCurrent,
            )
        })
        .map(Record::PartitionChange)
        .collect()
}

/// The changes that take the first inactive (fenced, shutting down or unregistered) broker out of
/// the leaderships and ISRs it still holds, beyond the last member an ISR keeps. Fencing, controlled
/// shutdown and unregistering do that in the same command, so this finds something only if those
/// partition changes were skipped at replay as stale (computed on an image that missed a change
/// committed before them); the active controller checks for it periodically so such a partition is
/// not left with a fenced or unregistered leader.
///
/// Unregistered brokers are looked for only with `unregistered_too`: that scans every partition, and
/// leftovers of an unregistration can only have appeared if the registered brokers changed.
pub fn evict_inactive_broker(image: &MetadataImage, unregistered_too: bool) -> Vec<Record> {
    let unregistered: BTreeSet<BrokerId> = if unregistered_too {
        image
            .partitions()
            .flat_map(|(_, _, p)| std::iter::once(p.leader).chain(p.isr.iter().copied()))
            .filter(|&b| b != NO_LEADER && !image.brokers.contains_key(&b))
            .collect()
    } else {
        BTreeSet::new()
    };
    image
        .brokers
        .values()
        .filter(|b| !b.is_active())
        .map(|b| b.broker_id)
        .chain(unregistered)
        .map(|broker_id| remove_from_partitions(image, broker_id))
        .find(|records| !records.is_empty())
        .unwrap_or_default()
}

/// Fences a broker: it leaves every ISR (but never empties one), loses its leaderships, and is marked
/// fenced. Used for missed sessions and for brokers that ask to be fenced.
pub fn fence_broker(image: &MetadataImage, broker_id: BrokerId) -> Vec<Record> {
    let Some(broker) = image.brokers.get(&broker_id) else {
        return Vec::new();
    };
    let mut records = remove_from_partitions(image, broker_id);
    records.push(Record::BrokerChange {
        broker_id,
        broker_epoch: broker.broker_epoch,
        fenced: Some(true),
        in_controlled_shutdown: Some(false),
        has_offline_log_dir: None,
    });
    records
}

/// A broker reported an offline log directory (KIP-858; Kafka's
/// `ReplicationControlManager.handleDirectoriesOffline`). With one data directory per broker every
/// replica it holds is offline: it leaves every ISR (a last member is kept, so nothing acknowledged is
/// lost; the partition then waits leaderless for it), its leaderships move to other in-sync replicas,
/// and it is marked so it is not elected or added back, but it stays registered and unfenced: its
/// heartbeats go on and its registration ends only when a restart replaces it.
pub fn handle_offline_log_dir(image: &MetadataImage, broker_id: BrokerId) -> Vec<Record> {
    let Some(broker) = image.brokers.get(&broker_id) else {
        return Vec::new();
    };
    let mut records = remove_from_partitions(image, broker_id);
    records.push(Record::BrokerChange {
        broker_id,
        broker_epoch: broker.broker_epoch,
        fenced: None,
        in_controlled_shutdown: None,
        has_offline_log_dir: Some(true),
    });
    records
}

/// Marks a broker as shutting down and moves its leaderships and ISR memberships away first.
fn begin_controlled_shutdown(image: &MetadataImage, broker_id: BrokerId) -> Vec<Record> {
    let Some(broker) = image.brokers.get(&broker_id) else {
        return Vec::new();
    };
    let mut records = remove_from_partitions(image, broker_id);
    records.push(Record::BrokerChange {
        broker_id,
        broker_epoch: broker.broker_epoch,
        fenced: None,
        in_controlled_shutdown: Some(true),
        has_offline_log_dir: None,
    });
    records
}

/// Unfences a broker and gives it back every leaderless partition it can lead: those whose ISR kept it
/// as the last member, or (with unclean election on) any it replicates.
pub fn unfence_broker(image: &MetadataImage, broker_id: BrokerId) -> Vec<Record> {
    let Some(broker) = image.brokers.get(&broker_id) else {
        return Vec::new();
    };
    let mut records = vec![Record::BrokerChange {
        broker_id,
        broker_epoch: broker.broker_epoch,
        fenced: Some(false),
        in_controlled_shutdown: Some(false),
        has_offline_log_dir: None,
    }];
    let may_lead = !broker.has_offline_log_dir;
    let acceptable = |b: BrokerId| (b == broker_id && may_lead) || image.is_active_broker(b);
    records.extend(
        image
            .partitions()
            .filter(|(_, _, p)| p.leader == NO_LEADER && p.replicas.contains(&broker_id))
            .filter_map(|(topic, index, p)| {
                let unclean = effective_bool(image, &topic.configs, UNCLEAN_LEADER_ELECTION);
                partition_change(
                    topic.id,
                    index,
                    p,
                    p.isr.clone(),
                    min_isr(image, topic, p),
                    acceptable,
                    unclean,
                    Election::KeepCurrent,
                )
            })
            .map(Record::PartitionChange),
    );
    records
}

/// Unregisters a broker that is gone for good (KIP-631's UnregisterBroker, Kafka's
/// `ReplicationControlManager.unregisterBroker`): it leaves every ISR (a last member is kept, so
/// nothing acknowledged is lost; such a partition waits leaderless for the id to register again),
/// its leaderships move to other in-sync replicas, and its registration is removed, so it no longer
/// counts for placement, for the feature levels UpdateFeatures may finalize, or in DescribeCluster.
/// Partition assignments are not changed. The same id may register again later.
///
/// Unlike Kafka, a broker whose session is still live (`has_live_session`: it heartbeats, or its
/// session stream closed within the grace) is refused: it would only register again at once, and
/// unregistering it is far more likely a mistyped id than an intent. The reply is the epoch of the
/// registration removed.
pub fn unregister_broker(
    image: &MetadataImage,
    broker_id: BrokerId,
    has_live_session: bool,
) -> Result<ControllerResult<i64>, ApiError> {
    let broker = image.brokers.get(&broker_id).ok_or_else(|| {
        ApiError::new(
            ResponseError::BrokerIdNotRegistered,
            format!("Broker ID {broker_id} is not currently registered"),
        )
    })?;
    if has_live_session {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!(
                "broker {broker_id} is alive (its session with the controller is live): stop it \
                 before unregistering it"
            ),
        ));
    }
    let mut records = remove_from_partitions(image, broker_id);
    records.push(Record::UnregisterBroker {
        broker_id,
        broker_epoch: broker.broker_epoch,
    });
    Ok(ControllerResult::new(records, broker.broker_epoch))
}

/// Hands out the next block of producer ids; ids are never reused because the block is committed
/// before it is returned.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: i64,
) -> Result<ControllerResult<(i64, i64)>, ApiError> {
    check_broker_epoch(image, broker_id, broker_epoch)?;
    let first = image.next_producer_id;
    let records = vec![Record::ProducerIds {
        broker_id,
        broker_epoch,
        next_producer_id: first + PRODUCER_ID_BLOCK_SIZE,
    }];
    Ok(ControllerResult::new(
        records,
        (first, PRODUCER_ID_BLOCK_SIZE),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::records::{ConfigResource, PartitionChangeRecord};
    use crate::state::topics::{create_topics, CreateTopic};

    /// Replays a command's records at consecutive offsets after the image's.
    pub(crate) fn commit<T>(
        image: &mut MetadataImage,
        command: impl FnOnce(&MetadataImage) -> ControllerResult<T>,
    ) -> (u64, T) {
        let result = command(image);
        let offset = image.offset + 1;
        image.replay_all(offset, &result.records);
        (offset, result.reply)
    }

    pub(crate) fn register(image: &mut MetadataImage, id: BrokerId) -> i64 {
        register_from(image, id, Uuid::from_u128(id as u128))
    }

    /// Registers a new incarnation of broker `id` whose log directory has the id `log_dir`.
    pub(crate) fn register_from(image: &mut MetadataImage, id: BrokerId, log_dir: Uuid) -> i64 {
        let request = RegisterBroker {
            broker_id: id,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9000 + id as u16,
            }],
            rack: None,
            cluster_id: None,
            supported_features: features::supported_features(),
            log_dir_id: Some(log_dir),
        };
        let result = register_broker(image, &request, false).expect("registered");
        let (offset, _) = commit(image, |_| result);
        offset as i64
    }

    pub(crate) fn heartbeat(
        image: &mut MetadataImage,
        id: BrokerId,
        want_fence: bool,
        want_shut_down: bool,
    ) -> HeartbeatReply {
        let epoch = image.brokers[&id].broker_epoch;
        let request = Heartbeat {
            broker_id: id,
            broker_epoch: epoch,
            metadata_offset: image.offset,
            want_fence,
            want_shut_down,
            offline_log_dirs: Vec::new(),
        };
        let result = process_heartbeat(image, &request, true).expect("heartbeat");
        commit(image, |_| result).1
    }

    /// A cluster of unfenced brokers `ids` with one topic.
    pub(crate) fn cluster(ids: &[BrokerId], partitions: i32, rf: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        image.replay(
            1,
            &Record::Config {
                resource: ConfigResource::Cluster,
                key: "min.insync.replicas".into(),
                value: Some("1".into()),
            },
        );
        image.offset = 1;
        for &id in ids {
            register(&mut image, id);
            let reply = heartbeat(&mut image, id, false, false);
            assert!(!reply.is_fenced);
        }
        let topic = CreateTopic {
            name: "orders".into(),
            num_partitions: partitions,
            replication_factor: rf,
            configs: Default::default(),
            assignments: Vec::new(),
        };
        let mut ids_seq = 1u128;
        let result = create_topics(&image, &[topic], false, || {
            ids_seq += 1;
            Uuid::from_u128(ids_seq)
        });
        commit(&mut image, |_| result);
        image
    }

    #[test]
    fn every_record_of_an_image_round_trips_through_protobuf() {
        use chronik_metadata::convert;
        let image = cluster(&[1, 2, 3], 4, 3);
        let records = image.to_records();
        assert!(records.len() > 8);
        let decoded: Vec<Record> = records
            .iter()
            .map(|r| convert::record_from_proto(&convert::record_to_proto(r)).expect("decodes"))
            .collect();
        assert_eq!(decoded, records);
        let mut rebuilt = MetadataImage::default();
        rebuilt.replay_all(image.offset, &decoded);
        assert_eq!(rebuilt, image);
    }

    #[test]
    fn a_new_registration_is_fenced_until_caught_up_and_its_epoch_is_its_offset() {
        let mut image = MetadataImage::default();
        let epoch = register(&mut image, 7);
        assert_eq!(image.brokers[&7].broker_epoch, epoch);
        assert!(image.brokers[&7].fenced);
        let lagging = Heartbeat {
            broker_id: 7,
            broker_epoch: epoch,
            metadata_offset: epoch as u64 - 1,
            want_fence: false,
            want_shut_down: false,
            offline_log_dirs: Vec::new(),
        };
        let result = process_heartbeat(&image, &lagging, true).unwrap();
        assert!(result.records.is_empty() && result.reply.is_fenced && !result.reply.is_caught_up);
        assert!(!heartbeat(&mut image, 7, false, false).is_fenced);
        assert!(!image.brokers[&7].fenced);
    }

    /// KIP-584: a broker that cannot serve a level the cluster finalized does not join.
    #[test]
    fn a_broker_that_cannot_serve_a_finalized_level_is_refused() {
        let mut image = MetadataImage::default();
        image.replay(
            1,
            &Record::FeatureLevel {
                name: features::TRANSACTION_VERSION.to_string(),
                level: 2,
            },
        );
        let mut request = RegisterBroker {
            broker_id: 1,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9001,
            }],
            rack: None,
            cluster_id: None,
            supported_features: BTreeMap::from([(
                features::TRANSACTION_VERSION.to_string(),
                FeatureRange {
                    min_level: 0,
                    max_level: 1,
                },
            )]),
            log_dir_id: None,
        };
        let refused = register_broker(&image, &request, false).unwrap_err();
        assert_eq!(refused.code, ResponseError::UnsupportedVersion);
        assert!(
            refused
                .message
                .contains("does not support finalized version 2 of transaction.version"),
            "{refused}"
        );
        request.supported_features = BTreeMap::from([(
            "group.version".to_string(),
            FeatureRange {
                min_level: 0,
                max_level: 1,
            },
        )]);
        assert_eq!(
            register_broker(&image, &request, false).unwrap_err().code,
            ResponseError::UnsupportedVersion,
            "a feature the broker does not list is supported at level 0 only"
        );
        // A broker of a release before brokers reported their levels joins, as it did.
        for supported in [BTreeMap::new(), features::supported_features()] {
            request.supported_features = supported;
            let registered = register_broker(&image, &request, false).unwrap();
            assert!(matches!(
                registered.records.last(),
                Some(Record::RegisterBroker(r)) if r.supported_features == request.supported_features
            ));
        }
    }

    /// The ISR keeps its last member when it crashes (it fsynced every acknowledged write), and it
    /// leads again once back with its log directory. Back with another directory (emptied or
    /// replaced), its replicas are gone: it leaves the ISR all the same, and the replica that left
    /// the ISR last (KIP-966's eligible leader replica, with min.insync.replicas 2) leads instead.
    #[test]
    fn a_last_isr_member_back_with_another_log_directory_does_not_lead_its_empty_log() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let offset = image.offset + 1;
        image.replay(
            offset,
            &Record::Config {
                resource: ConfigResource::Cluster,
                key: "min.insync.replicas".into(),
                value: Some("2".into()),
            },
        );
        image.offset = offset;
        let partition =
            |image: &MetadataImage| image.topic_by_name("orders").unwrap().partitions[0].clone();
        let leader = partition(&image).leader;
        let others: Vec<BrokerId> = [1, 2, 3].into_iter().filter(|&b| b != leader).collect();
        for &b in &others {
            commit(&mut image, |image| {
                ControllerResult::new(fence_broker(image, b), ())
            });
        }
        commit(&mut image, |image| {
            ControllerResult::new(fence_broker(image, leader), ())
        });
        let p = partition(&image);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (NO_LEADER, vec![leader], vec![others[1]])
        );
        // The last to leave is back; it may not lead while the last member may come back whole.
        heartbeat(&mut image, others[1], false, false);
        assert_eq!(partition(&image).leader, NO_LEADER);

        let mut crashed = image.clone();
        register(&mut crashed, leader);
        heartbeat(&mut crashed, leader, false, false);
        assert_eq!(
            partition(&crashed).leader,
            leader,
            "back with its log, it leads"
        );

        register_from(&mut image, leader, Uuid::new_v4());
        let p = partition(&image);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (others[1], vec![others[1]], vec![])
        );
        heartbeat(&mut image, leader, false, false);
        assert_eq!(partition(&image).leader, others[1]);
    }

    #[test]
    fn a_second_live_incarnation_is_refused_and_a_retry_keeps_its_epoch() {
        let mut image = MetadataImage::default();
        register(&mut image, 1);
        let existing = image.brokers[&1].clone();
        let retry = RegisterBroker {
            broker_id: 1,
            incarnation_id: existing.incarnation_id,
            endpoints: existing.endpoints.clone(),
            rack: None,
            cluster_id: None,
            supported_features: features::supported_features(),
            log_dir_id: None,
        };
        let result = register_broker(&image, &retry, true).unwrap();
        assert!(result.records.is_empty());
        assert_eq!(result.reply, Some(existing.broker_epoch));
        let other = RegisterBroker {
            incarnation_id: Uuid::new_v4(),
            ..retry
        };
        let err = register_broker(&image, &other, true).unwrap_err();
        assert_eq!(err.code, ResponseError::DuplicateBrokerRegistration);
        // Once the old session is gone, the new incarnation gets a new, higher epoch.
        let (offset, reply) = commit(&mut image, |image| {
            register_broker(image, &other, false).unwrap()
        });
        assert_eq!(reply, None);
        assert_eq!(image.brokers[&1].broker_epoch, offset as i64);
        assert!(offset as i64 > existing.broker_epoch);
    }

    #[test]
    fn stale_epochs_and_other_clusters_are_refused() {
        let mut image = MetadataImage::default();
        image.replay(
            1,
            &Record::ClusterId {
                cluster_id: "abc".into(),
            },
        );
        image.offset = 1;
        let epoch = register(&mut image, 1);
        let stale = Heartbeat {
            broker_id: 1,
            broker_epoch: epoch - 1,
            metadata_offset: 100,
            want_fence: false,
            want_shut_down: false,
            offline_log_dirs: Vec::new(),
        };
        assert_eq!(
            process_heartbeat(&image, &stale, true).unwrap_err().code,
            ResponseError::StaleBrokerEpoch
        );
        let foreign = RegisterBroker {
            broker_id: 2,
            incarnation_id: Uuid::new_v4(),
            endpoints: image.brokers[&1].endpoints.clone(),
            rack: None,
            cluster_id: Some("xyz".into()),
            supported_features: features::supported_features(),
            log_dir_id: None,
        };
        assert_eq!(
            register_broker(&image, &foreign, false).unwrap_err().code,
            ResponseError::InconsistentClusterId
        );
        assert_eq!(
            allocate_producer_ids(&image, 1, epoch + 5)
                .unwrap_err()
                .code,
            ResponseError::StaleBrokerEpoch
        );
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_and_bumps_the_leader_epoch() {
        let mut image = cluster(&[1, 2, 3], 6, 3);
        let topic = image.topic_by_name("orders").unwrap().clone();
        let led_by_1: Vec<usize> = (0..6)
            .filter(|&i| topic.partitions[i].leader == 1)
            .collect();
        assert_eq!(led_by_1.len(), 2);
        commit(&mut image, |image| {
            ControllerResult::new(fence_broker(image, 1), ())
        });
        let after = image.topic_by_name("orders").unwrap();
        for i in 0..6 {
            let (before, now) = (&topic.partitions[i], &after.partitions[i]);
            assert!(!now.isr.contains(&1), "broker 1 left every ISR");
            assert_ne!(now.leader, 1);
            assert!(now.partition_epoch > before.partition_epoch);
            if led_by_1.contains(&i) {
                assert!(
                    before.isr.contains(&now.leader),
                    "new leader came from the ISR"
                );
                assert_eq!(now.leader_epoch, before.leader_epoch + 1);
            } else {
                assert_eq!(now.leader, before.leader);
                assert_eq!(now.leader_epoch, before.leader_epoch);
            }
        }
        assert!(image.brokers[&1].fenced);
    }

    /// KIP-631's UnregisterBroker on a stopped broker: it leaves every ISR but the last member one
    /// keeps, its leaderships move within the ISR, its registration is gone, and the same id may
    /// register again and lead what waited for it.
    #[test]
    fn an_unregistered_broker_leaves_every_isr_and_may_register_again() {
        let mut image = cluster(&[1, 2, 3], 6, 3);
        let before = image.topic_by_name("orders").unwrap().clone();
        assert_eq!(image.leader_count(1), 2);
        let epoch_1 = image.brokers[&1].broker_epoch;
        let (offset, removed) = commit(&mut image, |image| {
            unregister_broker(image, 1, false).expect("unregistered")
        });
        assert_eq!(removed, epoch_1);
        assert!(!image.brokers.contains_key(&1));
        let after = image.topic_by_name("orders").unwrap().clone();
        for (was, now) in before.partitions.iter().zip(&after.partitions) {
            assert_eq!(now.replicas, was.replicas, "assignments are not changed");
            assert!(!now.isr.contains(&1) && now.leader != 1);
            if was.leader == 1 {
                assert!(was.isr.contains(&now.leader));
                assert_eq!(now.leader_epoch, was.leader_epoch + 1);
            }
        }
        assert!(evict_inactive_broker(&image, true).is_empty());
        // Brokers 2 and 3 stop too: broker 3 is the last member of every ISR and keeps it, leaderless.
        commit(&mut image, |image| {
            ControllerResult::new(fence_broker(image, 2), ())
        });
        commit(&mut image, |image| {
            unregister_broker(image, 3, false).expect("unregistered")
        });
        for p in &image.topic_by_name("orders").unwrap().partitions {
            assert_eq!((p.leader, p.isr.as_slice()), (NO_LEADER, &[3][..]));
        }
        assert!(evict_inactive_broker(&image, true).is_empty());
        // Broker 3 comes back under a new epoch and leads again what it kept.
        let epoch = register(&mut image, 3);
        assert!(epoch > offset as i64);
        assert!(!heartbeat(&mut image, 3, false, false).is_fenced);
        for p in &image.topic_by_name("orders").unwrap().partitions {
            assert_eq!((p.leader, p.isr.as_slice()), (3, &[3][..]));
        }
    }

    /// A broker that is not registered, or whose session is live, is refused and nothing is written.
    #[test]
    fn unregistering_an_unknown_or_live_broker_is_refused() {
        let image = cluster(&[1, 2, 3], 3, 3);
        let unknown = unregister_broker(&image, 9, false).unwrap_err();
        assert_eq!(unknown.code, ResponseError::BrokerIdNotRegistered);
        assert_eq!(unknown.message, "Broker ID 9 is not currently registered");
        let live = unregister_broker(&image, 2, true).unwrap_err();
        assert_eq!(live.code, ResponseError::InvalidRequest);
        assert!(live.message.contains("stop it"), "{}", live.message);
    }

    /// An unregistration whose partition changes were skipped as stale left the broker leading and
    /// in ISRs; the periodic check moves them off it as it does for a fenced broker.
    #[test]
    fn partitions_a_stale_change_left_on_an_unregistered_broker_are_moved_off_it() {
        let mut image = cluster(&[1, 2, 3], 6, 3);
        let epoch = image.brokers[&1].broker_epoch;
        let offset = image.offset + 1;
        // Only the registration's removal lands.
        image.replay_all(
            offset,
            &[Record::UnregisterBroker {
                broker_id: 1,
                broker_epoch: epoch,
            }],
        );
        assert_eq!(image.leader_count(1), 2);
        assert!(
            evict_inactive_broker(&image, false).is_empty(),
            "unregistered brokers are looked for only when asked"
        );
        commit(&mut image, |image| {
            ControllerResult::new(evict_inactive_broker(image, true), ())
        });
        assert_eq!(image.leader_count(1), 0);
        for p in &image.topic_by_name("orders").unwrap().partitions {
            assert!(!p.isr.contains(&1) && p.leader != NO_LEADER);
        }
        assert!(evict_inactive_broker(&image, true).is_empty());
    }

    #[test]
    fn the_last_isr_member_goes_leaderless_and_leads_again_when_unfenced() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        for id in [1, 2] {
            commit(&mut image, |image| {
                ControllerResult::new(fence_broker(image, id), ())
            });
        }
        let p = image.topic_by_name("orders").unwrap().partitions[0].clone();
        assert_eq!(p.leader, 3);
        assert_eq!(p.isr, vec![3]);
        commit(&mut image, |image| {
            ControllerResult::new(fence_broker(image, 3), ())
        });
        let leaderless = image.topic_by_name("orders").unwrap().partitions[0].clone();
        assert_eq!(leaderless.leader, NO_LEADER);
        assert_eq!(leaderless.isr, vec![3], "the ISR never becomes empty");
        assert_eq!(leaderless.leader_epoch, p.leader_epoch + 1);
        // Brokers 1 and 2 coming back do not lead: they are not in the ISR.
        commit(&mut image, |image| {
            ControllerResult::new(unfence_broker(image, 1), ())
        });
        assert_eq!(
            image.topic_by_name("orders").unwrap().partitions[0].leader,
            NO_LEADER
        );
        commit(&mut image, |image| {
            ControllerResult::new(unfence_broker(image, 3), ())
        });
        let back = &image.topic_by_name("orders").unwrap().partitions[0];
        assert_eq!(back.leader, 3);
        assert_eq!(back.leader_epoch, leaderless.leader_epoch + 1);
    }

    #[test]
    fn controlled_shutdown_moves_leaders_away_before_saying_shut_down() {
        let mut image = cluster(&[1, 2, 3], 3, 3);
        let reply = heartbeat(&mut image, 2, false, true);
        assert!(reply.in_controlled_shutdown && !reply.should_shut_down);
        assert_eq!(image.leader_count(2), 0);
        assert!(image.partitions().all(|(_, _, p)| !p.isr.contains(&2)));
        // Not yet, while another broker still lags behind the shutdown record.
        let epoch = image.brokers[&2].broker_epoch;
        let request = Heartbeat {
            broker_id: 2,
            broker_epoch: epoch,
            metadata_offset: image.offset,
            want_fence: false,
            want_shut_down: true,
            offline_log_dirs: Vec::new(),
        };
        let waiting = process_heartbeat(&image, &request, false).unwrap();
        assert!(!waiting.reply.should_shut_down && waiting.records.is_empty());
        let reply = heartbeat(&mut image, 2, false, true);
        assert!(reply.should_shut_down);
        assert!(image.brokers[&2].fenced);
    }

    fn heartbeat_with_offline_dir(image: &mut MetadataImage, id: BrokerId) -> HeartbeatReply {
        let request = Heartbeat {
            broker_id: id,
            broker_epoch: image.brokers[&id].broker_epoch,
            metadata_offset: image.offset,
            want_fence: false,
            want_shut_down: false,
            offline_log_dirs: vec!["/data/broker-1".into()],
        };
        let result = process_heartbeat(image, &request, true).expect("heartbeat");
        commit(image, |_| result).1
    }

    /// Issue #11, defect 6 (KIP-858): a broker whose log directory went offline says so in its
    /// heartbeat; the controller moves its leaderships to other ISR members and takes it out of every
    /// ISR, but does not fence it: it stays registered and keeps heartbeating.
    #[test]
    fn a_heartbeat_with_an_offline_log_dir_moves_leaders_away_and_shrinks_isrs() {
        let mut image = cluster(&[1, 2, 3], 6, 3);
        let before = image.topic_by_name("orders").unwrap().clone();
        let led_by_1: Vec<usize> = (0..6)
            .filter(|&i| before.partitions[i].leader == 1)
            .collect();
        assert!(!led_by_1.is_empty());

        let reply = heartbeat_with_offline_dir(&mut image, 1);
        assert!(
            !reply.is_fenced,
            "an offline log dir does not fence the broker"
        );
        let broker = &image.brokers[&1];
        assert!(!broker.fenced && broker.has_offline_log_dir && !broker.is_active());
        let after = image.topic_by_name("orders").unwrap();
        for i in 0..6 {
            let (was, now) = (&before.partitions[i], &after.partitions[i]);
            assert!(
                !now.isr.contains(&1),
                "partition {i}: broker 1 left the ISR"
            );
            assert_ne!(now.leader, 1, "partition {i}: broker 1 leads nothing");
            assert!(
                was.isr.contains(&now.leader),
                "new leader came from the ISR"
            );
            if led_by_1.contains(&i) {
                assert_eq!(now.leader_epoch, was.leader_epoch + 1);
            } else {
                assert_eq!(now.leader, was.leader);
            }
        }

        // Reported again: nothing more to do. Not reported (a broker never brings a dir back
        // online by itself): it stays out.
        let epoch = image.brokers[&1].broker_epoch;
        let again = Heartbeat {
            broker_id: 1,
            broker_epoch: epoch,
            metadata_offset: image.offset,
            want_fence: false,
            want_shut_down: false,
            offline_log_dirs: vec!["/data/broker-1".into()],
        };
        assert!(process_heartbeat(&image, &again, true)
            .unwrap()
            .records
            .is_empty());
        heartbeat(&mut image, 1, false, false);
        assert!(image.brokers[&1].has_offline_log_dir);
        assert_eq!(image.leader_count(1), 0);

        // It survives a snapshot.
        let mut restored = MetadataImage::default();
        restored.replay_all(image.offset, &image.to_records());
        assert!(restored.brokers[&1].has_offline_log_dir);

        // Restarted (a new registration) with room on the disk again, it is active once unfenced.
        register(&mut image, 1);
        assert!(!heartbeat(&mut image, 1, false, false).is_fenced);
        assert!(image.is_active_broker(1));
    }

    /// Issue #11, defect 6: a partition whose only ISR member reports an offline log dir keeps it in
    /// its ISR (nothing acknowledged is lost) without a leader, and that broker leads it again once it
    /// restarts and is unfenced.
    #[test]
    fn the_last_isr_member_with_an_offline_log_dir_stays_in_the_isr_without_leading() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        for id in [2, 3] {
            commit(&mut image, |image| {
                ControllerResult::new(fence_broker(image, id), ())
            });
        }
        let p = image.topic_by_name("orders").unwrap().partitions[0].clone();
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));

        heartbeat_with_offline_dir(&mut image, 1);
        let offline = image.topic_by_name("orders").unwrap().partitions[0].clone();
        assert_eq!(offline.isr, vec![1], "the ISR never becomes empty");
        assert_eq!(offline.leader, NO_LEADER);
        // Brokers 2 and 3 coming back do not lead: they are not in the ISR.
        commit(&mut image, |image| {
            ControllerResult::new(unfence_broker(image, 2), ())
        });
        assert_eq!(
            image.topic_by_name("orders").unwrap().partitions[0].leader,
            NO_LEADER
        );

        register(&mut image, 1);
        heartbeat(&mut image, 1, false, false);
        let back = &image.topic_by_name("orders").unwrap().partitions[0];
        assert_eq!((back.leader, back.isr.clone()), (1, vec![1]));
    }

    /// Issue #11, defect 3: should a fence's partition changes ever be skipped at replay as stale,
    /// the fenced broker would keep leading; the controller's periodic check takes that away.
    #[test]
    fn a_fenced_broker_left_leading_by_a_skipped_change_is_evicted() {
        let mut image = cluster(&[1, 2, 3], 1, 3);
        let topic_id = image.topic_by_name("orders").unwrap().id;
        let p = image.topic_by_name("orders").unwrap().partitions[0].clone();
        let stale = image.clone();
        let in_between = Record::PartitionChange(PartitionChangeRecord {
            topic_id,
            partition: 0,
            isr: Some(p.isr.clone()),
            expected_partition_epoch: Some(p.partition_epoch),
            ..Default::default()
        });
        commit(&mut image, |_| ControllerResult::new(vec![in_between], ()));
        commit(&mut image, |_| {
            ControllerResult::new(fence_broker(&stale, p.leader), ())
        });
        let skipped = image.topic_by_name("orders").unwrap().partitions[0].clone();
        assert!(image.brokers[&p.leader].fenced);
        assert_eq!(
            skipped.leader, p.leader,
            "the stale partition change was skipped"
        );

        commit(&mut image, |image| {
            ControllerResult::new(evict_inactive_broker(image, true), ())
        });
        let after = &image.topic_by_name("orders").unwrap().partitions[0];
        assert_ne!(after.leader, p.leader);
        assert!(!after.isr.contains(&p.leader));
        assert!(
            evict_inactive_broker(&image, true).is_empty(),
            "nothing left to do"
        );
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut image = MetadataImage::default();
        let epoch = register(&mut image, 1);
        let (_, (first, count)) = commit(&mut image, |image| {
            allocate_producer_ids(image, 1, epoch).unwrap()
        });
        let (_, (second, _)) = commit(&mut image, |image| {
            allocate_producer_ids(image, 1, epoch).unwrap()
        });
        assert_eq!(second, first + count);
        // Survives a snapshot round trip.
        let mut restored = MetadataImage::default();
        restored.replay_all(image.offset, &image.to_records());
        assert_eq!(restored.next_producer_id, image.next_producer_id);
    }
}
