use super::*;

/// Topics by name, and those a heartbeat's principal may not DESCRIBE.
struct Topics(BTreeMap<String, (Uuid, i32)>, BTreeSet<String>);

impl TopicSource for Topics {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.get(name).copied()
    }
    fn topic_names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
    fn describable(&self, name: &str) -> bool {
        !self.1.contains(name)
    }
    fn version(&self) -> u64 {
        // Changes with the topics and ACLs, as the metadata image's offset does.
        self.0
            .values()
            .map(|(id, n)| id.as_u128() as u64 * 31 + *n as u64)
            .sum::<u64>()
            + 1_000_000 * self.1.len() as u64
    }
}

const T: Uuid = Uuid::from_u128(1);

fn topics(partitions: i32) -> Topics {
    Topics(
        [
            ("orders".to_string(), (T, partitions)),
            ("audit".to_string(), (Uuid::from_u128(2), 1)),
        ]
        .into_iter()
        .collect(),
        BTreeSet::new(),
    )
}

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        session_timeout: Duration::from_secs(10),
        heartbeat_interval_ms: 500,
        max_size: 3,
    }
}

fn join(member: &str) -> Heartbeat {
    Heartbeat {
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 5_000,
        subscribed_topic_names: Some(vec!["orders".into()]),
        owned: Some(TopicPartitions::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Heartbeat::default()
    }
}

fn beat(member: &str, epoch: i32, owned: Option<&[i32]>) -> Heartbeat {
    Heartbeat {
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.map(parts),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Heartbeat::default()
    }
}

fn parts(ps: &[i32]) -> TopicPartitions {
    if ps.is_empty() {
        return TopicPartitions::new();
    }
    [(T, ps.iter().copied().collect())].into_iter().collect()
}

fn owned_by(group: &ConsumerGroup, member: &str) -> Vec<i32> {
    let m = &group.members[member].current;
    m.assigned
        .get(&T)
        .into_iter()
        .chain(m.pending_revocation.get(&T))
        .flatten()
        .copied()
        .collect()
}

/// No partition is held by two members at once.
fn assert_exclusive(group: &ConsumerGroup) {
    let mut seen = BTreeSet::new();
    for id in group.members.keys() {
        for p in owned_by(group, id) {
            assert!(seen.insert(p), "partition {p} held twice: {group:#?}");
        }
    }
}

fn heartbeat(group: &mut ConsumerGroup, request: Heartbeat, topics: &Topics) -> HeartbeatReply {
    let (reply, _) = group
        .heartbeat(request, topics, &config(), Instant::now())
        .expect("heartbeat accepted");
    assert_exclusive(group);
    reply
}

fn assigned(reply: &HeartbeatReply) -> Vec<i32> {
    reply
        .assignment
        .as_ref()
        .expect("an assignment")
        .get(&T)
        .into_iter()
        .flatten()
        .copied()
        .collect()
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let topics = topics(4);
    let mut g = ConsumerGroup::new("g".into());
    let a = heartbeat(&mut g, join("a"), &topics);
    assert_eq!((a.member_epoch, assigned(&a)), (1, vec![0, 1, 2, 3]));
    assert_eq!(g.state(), ConsumerGroupState::Stable);

    // b joins: a new target gives b two partitions, which a still holds.
    let b = heartbeat(&mut g, join("b"), &topics);
    assert_eq!((g.epoch(), g.assignment_epoch()), (2, 2));
    assert_eq!((b.member_epoch, assigned(&b)), (2, vec![]));
    assert_eq!(
        g.members["b"].current.state,
        MemberState::UnreleasedPartitions
    );
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);

    // a is asked to revoke them, and keeps its epoch until it has.
    let a = heartbeat(&mut g, beat("a", 1, None), &topics);
    let kept = assigned(&a);
    assert_eq!((a.member_epoch, kept.len()), (1, 2));
    assert_eq!(
        g.members["a"].current.state,
        MemberState::UnrevokedPartitions
    );
    // A heartbeat that still lists them changes nothing; b still waits.
    let a = heartbeat(&mut g, beat("a", 1, Some(&[0, 1, 2, 3])), &topics);
    assert_eq!((a.member_epoch, a.assignment), (1, None));
    let b = heartbeat(&mut g, beat("b", 2, Some(&[])), &topics);
    assert_eq!((b.member_epoch, b.assignment), (2, None));

    // a revokes: it moves to epoch 2, and b gets the two on its next heartbeat.
    let a = heartbeat(&mut g, beat("a", 1, Some(&kept)), &topics);
    assert_eq!(a.member_epoch, 2);
    let b = heartbeat(&mut g, beat("b", 2, Some(&[])), &topics);
    let mut both = kept.clone();
    both.extend(assigned(&b));
    both.sort();
    assert_eq!(both, vec![0, 1, 2, 3]);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn a_member_leaving_or_timing_out_frees_its_partitions() {
    let topics = topics(2);
    let mut g = ConsumerGroup::new("g".into());
    heartbeat(&mut g, join("a"), &topics);
    heartbeat(&mut g, join("b"), &topics);
    let a = heartbeat(&mut g, beat("a", 1, None), &topics);
    let kept = assigned(&a);
    heartbeat(&mut g, beat("a", 1, Some(&kept)), &topics);
    heartbeat(&mut g, beat("b", 2, Some(&[])), &topics);
    assert_eq!(g.state(), ConsumerGroupState::Stable);

    // b leaves: a new group epoch, and a takes everything without waiting.
    let (reply, records) = g
        .leave(
            "b",
            None,
            LEAVE_EPOCH,
            Instant::now(),
            config().session_timeout,
        )
        .unwrap();
    assert_eq!(reply.member_epoch, LEAVE_EPOCH);
    assert_eq!(
        records.len(),
        4,
        "three tombstones and the epoch: {records:?}"
    );
    let a = heartbeat(&mut g, beat("a", 2, Some(&kept)), &topics);
    assert_eq!((a.member_epoch, assigned(&a)), (3, vec![0, 1]));

    // Its session ends without a heartbeat: it is removed, and its partitions are free.
    let later = Instant::now() + config().session_timeout + Duration::from_millis(1);
    let (records, expired) = g.expire(later, config().session_timeout);
    assert_eq!(expired, vec!["a".to_string()]);
    assert!(!records.is_empty());
    assert_eq!(g.state(), ConsumerGroupState::Empty);
    assert!(g.owners.is_empty());
    // And it is told so when it comes back with its old epoch.
    let err = g
        .heartbeat(beat("a", 3, None), &topics, &config(), later)
        .unwrap_err();
    assert_eq!(err.0, ResponseError::UnknownMemberId);
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
    let topics = topics(2);
    let mut g = ConsumerGroup::new("g".into());
    heartbeat(&mut g, join("a"), &topics);
    heartbeat(&mut g, join("b"), &topics);
    heartbeat(&mut g, beat("a", 1, None), &topics);
    assert_eq!(
        g.members["a"].current.state,
        MemberState::UnrevokedPartitions
    );
    // Still heartbeating (its session lives on), but never revoking.
    let soon = Instant::now() + Duration::from_millis(5_001);
    let (_, expired) = g.expire(soon, Duration::from_secs(3_600));
    assert_eq!(expired, vec!["a".to_string()]);
    let b = heartbeat(&mut g, beat("b", 2, Some(&[])), &topics);
    assert_eq!(assigned(&b), vec![0, 1]);
}

#[test]
fn epochs_ahead_are_fenced_and_a_lost_reply_is_forgiven() {
    let topics = topics(2);
    let mut g = ConsumerGroup::new("g".into());
    heartbeat(&mut g, join("a"), &topics);
    let ahead = g
        .heartbeat(beat("a", 7, None), &topics, &config(), Instant::now())
        .unwrap_err();
    assert_eq!(ahead.0, ResponseError::FencedMemberEpoch);
    // The join's reply (epoch 1) was lost: the member sends epoch 0 again with nothing owned.
    let again = heartbeat(&mut g, join("a"), &topics);
    assert_eq!(again.member_epoch, 1);
    // An older epoch claiming partitions it does not have is fenced.
    let stale = g
        .heartbeat(
            beat("a", 0, Some(&[0, 1, 5])),
            &topics,
            &config(),
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(stale.0, ResponseError::FencedMemberEpoch);
}

#[test]
fn the_records_rebuild_the_group() {
    let topics = topics(3);
    let mut g = ConsumerGroup::new("g".into());
    let mut log = Vec::new();
    let now = Instant::now();
    for request in [join("a"), join("b"), beat("a", 1, None)] {
        let (_, records) = g.heartbeat(request, &topics, &config(), now).unwrap();
        log.extend(records);
    }
    let mut replayed = ConsumerGroup::new("g".into());
    for record in &log {
        replayed.replay(record, now, config().session_timeout);
    }
    assert_eq!(replayed.epoch, g.epoch);
    assert_eq!(replayed.assignment_epoch, g.assignment_epoch);
    assert_eq!(replayed.targets, g.targets);
    assert_eq!(replayed.owners, g.owners);
    for (id, m) in &g.members {
        assert_eq!(replayed.members[id].metadata, m.metadata);
        assert_eq!(replayed.members[id].current, m.current);
    }
    // So do all_records, and tombstones remove everything.
    let mut again = ConsumerGroup::new("g".into());
    for record in g.all_records() {
        again.replay(&record, now, config().session_timeout);
    }
    assert_eq!(again.owners, g.owners);
    for record in g.tombstones() {
        again.replay(&record, now, config().session_timeout);
    }
    assert!(again.members.is_empty() && again.targets.is_empty());
    assert_eq!(again.assignment_epoch, -1);
}

#[test]
fn a_static_member_keeps_its_partitions_across_a_restart() {
    let topics = topics(2);
    let mut g = ConsumerGroup::new("g".into());
    let mut a = join("a");
    a.instance_id = Some("host-1".into());
    heartbeat(&mut g, a.clone(), &topics);
    heartbeat(&mut g, join("b"), &topics);
    let kept = assigned(&heartbeat(&mut g, beat("a", 1, None), &topics));
    let mut ack = beat("a", 1, Some(&kept));
    ack.instance_id = Some("host-1".into());
    heartbeat(&mut g, ack, &topics);
    let epoch = g.epoch();

    // A second process with the same instance id while the first is in the group.
    let mut twin = join("a2");
    twin.instance_id = Some("host-1".into());
    let err = g
        .heartbeat(twin.clone(), &topics, &config(), Instant::now())
        .unwrap_err();
    assert_eq!(err.0, ResponseError::UnreleasedInstanceId);

    // The first leaves for now (epoch -2): it keeps its partitions and the group its epoch.
    let (reply, _) = g
        .leave(
            "a",
            Some("host-1"),
            STATIC_LEAVE_EPOCH,
            Instant::now(),
            config().session_timeout,
        )
        .unwrap();
    assert_eq!(reply.member_epoch, STATIC_LEAVE_EPOCH);
    assert_eq!(g.epoch(), epoch);
    // Back under a new member id: the same partitions, no rebalance.
    let back = heartbeat(&mut g, twin, &topics);
    assert_eq!(assigned(&back), kept);
    assert_eq!(g.epoch(), epoch);
    assert!(!g.members.contains_key("a"));
}

#[test]
fn commits_are_checked_against_the_member_epoch() {
    let topics = topics(1);
    let mut g = ConsumerGroup::new("g".into());
    heartbeat(&mut g, join("a"), &topics);
    assert_eq!(g.validate_commit("a", 1, 9), None);
    assert_eq!(
        g.validate_commit("a", 0, 9),
        Some(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.validate_commit("a", 1, 8),
        Some(ResponseError::UnsupportedVersion)
    );
    assert_eq!(
        g.validate_commit("x", 1, 9),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_commit("", -1, 9),
        Some(ResponseError::UnknownMemberId),
        "an admin commit only while the group is empty"
    );
    assert_eq!(
        g.validate_txn_commit("a", 0),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(g.validate_fetch(None, -1), None);
    assert_eq!(
        g.validate_fetch(Some("a"), 0),
        Some(ResponseError::StaleMemberEpoch)
    );
}

#[test]
fn regular_expressions_subscribe_to_matching_topics_and_new_ones() {
    let mut topics = topics(2);
    let mut g = ConsumerGroup::new("g".into());
    let mut request = join("a");
    request.subscribed_topic_names = Some(vec![]);
    request.subscribed_topic_regex = Some("ord.*".into());
    let a = heartbeat(&mut g, request, &topics);
    assert_eq!(assigned(&a), vec![0, 1]);
    assert!(g.is_subscribed_to("orders") && !g.is_subscribed_to("audit"));
    // A partition added to a subscribed topic is picked up on the next heartbeat.
    topics.0.insert("orders".into(), (T, 3));
    let a = heartbeat(&mut g, beat("a", 1, Some(&[0, 1])), &topics);
    assert_eq!((a.member_epoch, assigned(&a)), (2, vec![0, 1, 2]));

    let mut bad = join("b");
    bad.subscribed_topic_regex = Some("(".into());
    let err = g
        .heartbeat(bad, &topics, &config(), Instant::now())
        .unwrap_err();
    assert_eq!(err.0, ResponseError::InvalidRegularExpression);
}

#[test]
fn a_regular_expression_matches_only_topics_the_member_may_describe() {
    let mut topics = topics(2);
    topics.1.insert("audit".into());
    let mut g = ConsumerGroup::new("g".into());
    let mut request = join("a");
    request.subscribed_topic_names = Some(vec![]);
    request.subscribed_topic_regex = Some("ord.*|aud.*".into());
    let a = heartbeat(&mut g, request, &topics);
    assert_eq!(a.assignment.unwrap().keys().collect::<Vec<_>>(), vec![&T]);
    // An ACL now allows it (the metadata changes): the next heartbeat resolves the regex again.
    topics.1.clear();
    let a = heartbeat(&mut g, beat("a", 1, Some(&[0, 1])), &topics);
    assert_eq!(a.member_epoch, 2);
    assert_eq!(
        a.assignment.unwrap().keys().copied().collect::<Vec<_>>(),
        vec![T, Uuid::from_u128(2)]
    );
}

#[test]
fn a_full_group_refuses_new_members() {
    let topics = topics(1);
    let mut g = ConsumerGroup::new("g".into());
    for m in ["a", "b", "c"] {
        heartbeat(&mut g, join(m), &topics);
    }
    let err = g
        .heartbeat(join("d"), &topics, &config(), Instant::now())
        .unwrap_err();
    assert_eq!(err.0, ResponseError::GroupMaxSizeReached);
}

#[test]
fn replay_does_not_depend_on_the_order_compaction_leaves() {
    // Compaction keeps each key's latest record: a member's assignment may come before its
    // metadata, and before the group's own record.
    let topics = topics(2);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into());
    heartbeat(&mut g, join("a"), &topics);
    let mut records = g.all_records();
    records.reverse();
    let mut replayed = ConsumerGroup::new("g".into());
    for record in &records {
        replayed.replay(record, now, config().session_timeout);
    }
    assert_eq!(replayed.members["a"].current, g.members["a"].current);
    assert_eq!(replayed.members["a"].metadata, g.members["a"].metadata);
    assert_eq!(replayed.owners, g.owners);
    assert_eq!((replayed.epoch, replayed.assignment_epoch), (1, 1));
}

#[test]
fn only_its_owner_frees_a_partition() {
    // A log with two members claiming the same partition (a bug, or another coordinator's log):
    // the first keeps it, and removing the second does not free it for a third.
    let now = Instant::now();
    let session = config().session_timeout;
    let mut g = ConsumerGroup::new("g".into());
    let claim = |member: &str| {
        [
            ConsumerRecord::Member {
                group: "g".into(),
                member: member.into(),
                value: Some(MemberMetadata::default()),
            },
            ConsumerRecord::CurrentAssignment {
                group: "g".into(),
                member: member.into(),
                value: Some(CurrentAssignment {
                    member_epoch: 1,
                    assigned: parts(&[0]),
                    ..CurrentAssignment::default()
                }),
            },
        ]
    };
    for record in claim("a").iter().chain(&claim("b")) {
        g.replay(record, now, session);
    }
    assert_eq!(g.owners[&(T, 0)].0, "a");
    g.remove_member("b", now, session).unwrap();
    assert!(g.held_by_another("c", T, 0), "still a's");
}

#[test]
fn a_static_member_away_is_not_fenced_for_revoking_and_others_wait_for_it() {
    let topics = topics(2);
    let mut g = ConsumerGroup::new("g".into());
    let mut a = join("a");
    a.instance_id = Some("host-1".into());
    heartbeat(&mut g, a, &topics);
    heartbeat(&mut g, join("b"), &topics);
    // a must revoke one partition, and leaves for now instead.
    let mut asked = beat("a", 1, None);
    asked.instance_id = Some("host-1".into());
    heartbeat(&mut g, asked, &topics);
    assert_eq!(
        g.members["a"].current.state,
        MemberState::UnrevokedPartitions
    );
    g.leave(
        "a",
        Some("host-1"),
        STATIC_LEAVE_EPOCH,
        Instant::now(),
        config().session_timeout,
    )
    .unwrap();
    // Past its rebalance timeout but within its session: still a member.
    let (_, expired) = g.expire(
        Instant::now() + Duration::from_millis(5_001),
        config().session_timeout,
    );
    assert!(expired.is_empty(), "{expired:?}");
    // A wrong member id under its instance id is fenced, whatever the member id says.
    let mut impostor = beat("zz", 1, None);
    impostor.instance_id = Some("host-1".into());
    let err = g
        .heartbeat(impostor, &topics, &config(), Instant::now())
        .unwrap_err();
    assert_eq!(err.0, ResponseError::FencedInstanceId);
}

#[test]
fn a_member_in_an_unknown_state_must_rejoin_and_nothing_changes() {
    let topics = topics(2);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into());
    heartbeat(&mut g, join("a"), &topics);
    let mut current = g.members["a"].current.clone();
    current.state = MemberState::Unknown;
    g.replay(
        &ConsumerRecord::CurrentAssignment {
            group: "g".into(),
            member: "a".into(),
            value: Some(current),
        },
        now,
        config().session_timeout,
    );
    let before = (g.epoch, g.members["a"].metadata.clone());
    let mut renamed = beat("a", 1, None);
    renamed.subscribed_topic_names = Some(vec!["audit".into()]);
    let err = g.heartbeat(renamed, &topics, &config(), now).unwrap_err();
    assert_eq!(err.0, ResponseError::FencedMemberEpoch);
    assert_eq!((g.epoch, g.members["a"].metadata.clone()), before);
    // A fetch naming no member but an epoch is checked, as Kafka does.
    assert_eq!(
        g.validate_fetch(None, 1),
        Some(ResponseError::UnknownMemberId)
    );
}
