//! The `group` commands: the merged group list (with a note per broker that did not answer), a group's
//! members and per-partition lag, an offset reset (or its dry-run plan), a deleted group, and deleted
//! offsets per partition.

use std::io::Write;

use super::{dash_if_empty, fields, table};
use crate::cmd::{DeletedGroup, GroupDetails, GroupList, OffsetDeletion, OffsetReset};

/// One row per group, then a note per broker that did not answer ListGroups.
pub(super) fn list(out: &mut impl Write, list: &GroupList) -> std::io::Result<()> {
    let rows = list
        .groups
        .iter()
        .map(|group| {
            vec![
                group.group_id.clone(),
                dash_if_empty(group.state.clone()),
                dash_if_empty(group.group_type.clone()),
                dash_if_empty(group.protocol_type.clone()),
                group.coordinator.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &["GROUP", "STATE", "TYPE", "PROTOCOL TYPE", "COORDINATOR"],
        &rows,
    )?;
    for failure in &list.failed_brokers {
        writeln!(
            out,
            "Note: broker {} did not answer ListGroups: {}",
            failure.broker_id, failure.error
        )?;
    }
    Ok(())
}

/// The group's state, its members and their assignments, then per partition the committed offset,
/// log end offset, lag and owning member.
pub(super) fn details(out: &mut impl Write, group: &GroupDetails) -> std::io::Result<()> {
    let protocol = match (group.protocol_type.is_empty(), group.protocol.is_empty()) {
        (true, _) => "-".to_owned(),
        (false, true) => group.protocol_type.clone(),
        (false, false) => format!("{} ({})", group.protocol_type, group.protocol),
    };
    fields(
        out,
        &[
            ("Group", group.group_id.clone()),
            ("State", group.state.clone()),
            ("Protocol", protocol),
            (
                "Coordinator",
                format!("{} ({})", group.coordinator, group.coordinator_address),
            ),
            ("Members", group.members.len().to_string()),
        ],
    )?;
    if !group.members.is_empty() {
        writeln!(out)?;
        let rows = group
            .members
            .iter()
            .map(|member| {
                let assignment = if member.assignment_error.is_some() {
                    "(undecodable, see note)".to_owned()
                } else {
                    dash_if_empty(
                        member
                            .assignment
                            .iter()
                            .map(|topic| {
                                let partitions: Vec<String> =
                                    topic.partitions.iter().map(i32::to_string).collect();
                                format!("{}:{}", topic.topic, partitions.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                };
                vec![
                    member.member_id.clone(),
                    member
                        .group_instance_id
                        .clone()
                        .unwrap_or_else(|| "-".to_owned()),
                    dash_if_empty(member.client_id.clone()),
                    dash_if_empty(member.host.clone()),
                    assignment,
                ]
            })
            .collect::<Vec<_>>();
        table(
            out,
            &[
                "MEMBER ID",
                "INSTANCE ID",
                "CLIENT ID",
                "HOST",
                "ASSIGNMENT",
            ],
            &rows,
        )?;
    }
    writeln!(out)?;
    let rows = group
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                offset_or_dash(p.committed_offset),
                offset_or_dash(p.log_end_offset),
                offset_or_dash(p.lag),
                p.member_id.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED OFFSET",
            "LOG END OFFSET",
            "LAG",
            "MEMBER ID",
        ],
        &rows,
    )?;
    for note in &group.notes {
        writeln!(out, "Note: {note}")?;
    }
    Ok(())
}

/// What was (or, in a dry run, would be) reset, then old and new offsets per partition.
pub(super) fn offset_reset(out: &mut impl Write, reset: &OffsetReset) -> std::io::Result<()> {
    let (lead, tail) = if reset.dry_run {
        ("Dry run: would reset", " Nothing was committed.")
    } else {
        ("Reset", "")
    };
    writeln!(
        out,
        "{lead} the offsets of group '{}' on topic '{}' to {}.{tail}",
        reset.group_id,
        reset.topic,
        reset.target.describe()
    )?;
    writeln!(out)?;
    let rows = reset
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                offset_or_dash(p.previous_offset),
                p.new_offset.to_string(),
                p.log_start_offset.to_string(),
                p.log_end_offset.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "PARTITION",
            "PREVIOUS OFFSET",
            "NEW OFFSET",
            "LOG START OFFSET",
            "LOG END OFFSET",
        ],
        &rows,
    )
}

/// One line naming the deleted group.
pub(super) fn deleted(out: &mut impl Write, group: &DeletedGroup) -> std::io::Result<()> {
    writeln!(out, "Deleted group '{}'.", group.group_id)
}

/// One row per partition: deleted, or the error that refused it.
pub(super) fn offsets_deleted(
    out: &mut impl Write,
    deletion: &OffsetDeletion,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Group '{}', topic '{}':",
        deletion.group_id, deletion.topic
    )?;
    let rows: Vec<Vec<String>> = deletion
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                if p.deleted { "deleted" } else { "refused" }.to_owned(),
                p.error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(out, &["PARTITION", "RESULT", "ERROR"], &rows)
}

fn offset_or_dash(offset: Option<i64>) -> String {
    offset.map_or_else(|| "-".to_owned(), |offset| offset.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::cmd::{GroupDetails, GroupList, OffsetReset, Report};
    use crate::output::testing::{json, table_text};

    fn group_details_report() -> GroupDetails {
        use crate::cmd::group::{MemberDetails, PartitionLag};
        use crate::kafka::consumer_protocol::TopicPartitions;
        GroupDetails {
            group_id: "billing".to_owned(),
            state: "Stable".to_owned(),
            protocol_type: "consumer".to_owned(),
            protocol: "range".to_owned(),
            coordinator: 2,
            coordinator_address: "127.0.0.1:9092".to_owned(),
            members: vec![
                MemberDetails {
                    member_id: "m-1".to_owned(),
                    group_instance_id: None,
                    client_id: "rdkafka".to_owned(),
                    host: "/127.0.0.1".to_owned(),
                    assignment: vec![TopicPartitions {
                        topic: "orders".to_owned(),
                        partitions: vec![0, 1],
                    }],
                    assignment_error: None,
                },
                MemberDetails {
                    member_id: "m-2".to_owned(),
                    group_instance_id: Some("static-2".to_owned()),
                    client_id: "rdkafka".to_owned(),
                    host: "/127.0.0.1".to_owned(),
                    assignment: vec![],
                    assignment_error: Some("not a consumer assignment".to_owned()),
                },
            ],
            partitions: vec![
                PartitionLag {
                    topic: "orders".to_owned(),
                    partition: 0,
                    committed_offset: Some(7),
                    log_end_offset: Some(10),
                    lag: Some(3),
                    member_id: Some("m-1".to_owned()),
                },
                PartitionLag {
                    topic: "orders".to_owned(),
                    partition: 1,
                    committed_offset: None,
                    log_end_offset: Some(4),
                    lag: None,
                    member_id: Some("m-1".to_owned()),
                },
            ],
            notes: vec!["the assignment of member 'm-2' (3 bytes) is undecodable".to_owned()],
        }
    }

    #[test]
    fn group_description_shows_members_and_lag() {
        let text = table_text(&Report::GroupDetails(group_details_report()));
        assert!(text.contains("State:        Stable"), "{text}");
        assert!(text.contains("Protocol:     consumer (range)"), "{text}");
        assert!(text.contains("Coordinator:  2 (127.0.0.1:9092)"), "{text}");
        let row = |first: &str| -> Vec<String> {
            text.lines()
                .find(|line| line.starts_with(first))
                .map(|line| line.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            row("m-1"),
            ["m-1", "-", "rdkafka", "/127.0.0.1", "orders:0,1"]
        );
        assert_eq!(
            row("m-2"),
            [
                "m-2",
                "static-2",
                "rdkafka",
                "/127.0.0.1",
                "(undecodable,",
                "see",
                "note)"
            ]
        );
        assert_eq!(row("orders  0"), ["orders", "0", "7", "10", "3", "m-1"]);
        assert_eq!(row("orders  1"), ["orders", "1", "-", "4", "-", "m-1"]);
        assert!(
            text.contains("Note: the assignment of member 'm-2'"),
            "{text}"
        );

        let value = json(&Report::GroupDetails(group_details_report()));
        assert_eq!(value["state"], "Stable");
        assert_eq!(value["coordinator"], 2);
        assert_eq!(value["members"][0]["assignment"][0]["topic"], "orders");
        assert_eq!(
            value["members"][0]["assignment"][0]["partitions"],
            serde_json::json!([0, 1])
        );
        assert_eq!(value["members"][0]["group_instance_id"], Value::Null);
        assert_eq!(value["members"][1]["group_instance_id"], "static-2");
        assert_eq!(value["partitions"][0]["lag"], 3);
        assert_eq!(value["partitions"][1]["committed_offset"], Value::Null);
        assert_eq!(value["partitions"][1]["log_end_offset"], 4);
    }

    #[test]
    fn group_list_notes_brokers_that_did_not_answer() {
        use crate::cmd::group::{BrokerFailure, GroupSummary};
        let list = GroupList {
            groups: vec![GroupSummary {
                group_id: "billing".to_owned(),
                state: "Empty".to_owned(),
                protocol_type: String::new(),
                group_type: "classic".to_owned(),
                coordinator: 1,
            }],
            failed_brokers: vec![BrokerFailure {
                broker_id: 3,
                error: "cannot connect".to_owned(),
            }],
        };
        let text = table_text(&Report::Groups(list.clone()));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[1], ["billing", "Empty", "classic", "-", "1"]);
        assert!(
            text.contains("Note: broker 3 did not answer ListGroups"),
            "{text}"
        );
        let value = json(&Report::Groups(list));
        assert_eq!(value["groups"][0]["group_id"], "billing");
        assert_eq!(value["groups"][0]["group_type"], "classic");
        assert_eq!(value["failed_brokers"][0]["broker_id"], 3);
    }

    #[test]
    fn offset_resets_show_old_and_new_offsets() {
        use crate::cmd::group::{PartitionReset, ResetTarget};
        let reset = OffsetReset {
            group_id: "billing".to_owned(),
            topic: "orders".to_owned(),
            target: ResetTarget::Offset(5),
            dry_run: true,
            partitions: vec![PartitionReset {
                partition: 0,
                previous_offset: None,
                new_offset: 5,
                log_start_offset: 0,
                log_end_offset: 9,
            }],
        };
        let text = table_text(&Report::OffsetReset(reset.clone()));
        assert!(
            text.starts_with(
                "Dry run: would reset the offsets of group 'billing' on topic 'orders' to offset 5. \
                 Nothing was committed."
            ),
            "{text}"
        );
        let last: Vec<&str> = text
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(last, ["0", "-", "5", "0", "9"]);
        let value = json(&Report::OffsetReset(reset));
        assert_eq!(value["dry_run"], true);
        assert_eq!(
            value["target"],
            serde_json::json!({"to": "offset", "value": 5})
        );
        assert_eq!(value["partitions"][0]["previous_offset"], Value::Null);
        assert_eq!(value["partitions"][0]["new_offset"], 5);
    }
}
