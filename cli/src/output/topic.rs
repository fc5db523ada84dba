//! The `topic` commands: what was created, deleted or reconfigured, the topic list, and a topic's
//! description (its configs on one line, then one row per partition with `none` for a missing leader
//! and, when the leaders were asked, their log start offset, high watermark and size, `-` where
//! unknown; then the notes saying why).

use std::collections::BTreeMap;
use std::io::Write;

use super::{broker_or_none, bytes, dash_if_empty, fields, number_or_dash, table};
use crate::cmd::{
    AddedPartitions, CreatedTopic, DeletedTopic, TopicConfigs, TopicDetails, TopicSummary,
};

/// One line with the new topic's shape, then its id.
pub(super) fn created(out: &mut impl Write, topic: &CreatedTopic) -> std::io::Result<()> {
    writeln!(
        out,
        "Created topic '{}' with {} partition(s) and replication factor {}.",
        topic.name, topic.partitions, topic.replication_factor
    )?;
    fields(out, &[("Topic ID", topic.topic_id.clone())])
}

/// One line with the new partition count.
pub(super) fn partitions_added(
    out: &mut impl Write,
    topic: &AddedPartitions,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Topic '{}' now has {} partition(s).",
        topic.name, topic.partitions
    )
}

/// One row per topic.
pub(super) fn list(out: &mut impl Write, topics: &[TopicSummary]) -> std::io::Result<()> {
    let rows = topics
        .iter()
        .map(|topic| {
            vec![
                topic.name.clone(),
                topic.topic_id.clone(),
                topic.partitions.to_string(),
                topic.replication_factor.to_string(),
                if topic.internal { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "NAME",
            "TOPIC ID",
            "PARTITIONS",
            "REPLICATION FACTOR",
            "INTERNAL",
        ],
        &rows,
    )
}

/// The topic's id and configs, then one row per partition.
pub(super) fn details(out: &mut impl Write, topic: &TopicDetails) -> std::io::Result<()> {
    fields(
        out,
        &[
            ("Topic", topic.name.clone()),
            ("Topic ID", topic.topic_id.clone()),
            ("Configs", config_line(&topic.configs)),
        ],
    )?;
    writeln!(out)?;
    // The leaders' figures get columns once anything was asked of them.
    let figures = !topic.notes.is_empty()
        || topic.partitions.iter().any(|p| {
            p.log_start_offset.is_some() || p.high_watermark.is_some() || p.size_bytes.is_some()
        });
    let rows = topic
        .partitions
        .iter()
        .map(|partition| {
            let mut row = vec![
                partition.partition.to_string(),
                broker_or_none(partition.leader),
                partition.leader_epoch.to_string(),
                broker_list(&partition.replicas),
                broker_list(&partition.isr),
            ];
            if figures {
                row.extend([
                    number_or_dash(partition.log_start_offset),
                    number_or_dash(partition.high_watermark),
                    partition.size_bytes.map_or_else(|| "-".to_owned(), bytes),
                ]);
            }
            row
        })
        .collect::<Vec<_>>();
    let mut headers = vec!["PARTITION", "LEADER", "LEADER EPOCH", "REPLICAS", "ISR"];
    if figures {
        headers.extend(["LOG START", "HIGH WATERMARK", "SIZE"]);
    }
    table(out, &headers, &rows)?;
    for note in &topic.notes {
        writeln!(out, "Note: {note}")?;
    }
    Ok(())
}

/// One line naming the deleted topic.
pub(super) fn deleted(out: &mut impl Write, topic: &DeletedTopic) -> std::io::Result<()> {
    writeln!(out, "Deleted topic '{}'.", topic.name)
}

/// The explicit configs the topic keeps after `alter-config`.
pub(super) fn configs_updated(out: &mut impl Write, topic: &TopicConfigs) -> std::io::Result<()> {
    writeln!(out, "Updated configs of topic '{}'.", topic.name)?;
    if topic.configs.is_empty() {
        return writeln!(
            out,
            "No explicit configs remain; every config is the cluster default."
        );
    }
    writeln!(out)?;
    let rows = topic
        .configs
        .iter()
        .map(|(key, value)| vec![key.clone(), value.clone()])
        .collect::<Vec<_>>();
    table(out, &["KEY", "VALUE"], &rows)
}

fn broker_list(brokers: &[i32]) -> String {
    dash_if_empty(
        brokers
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn config_line(configs: &BTreeMap<String, String>) -> String {
    super::key_values(configs, "(none)")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use crate::cmd::{PartitionStatus, Report, TopicDetails, TopicSummary};
    use crate::output::testing::{json, table_text};

    fn orders_details() -> TopicDetails {
        TopicDetails {
            name: "orders".to_owned(),
            topic_id: "AAECAwQFBgcICQoLDA0ODw".to_owned(),
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
            partitions: vec![
                PartitionStatus {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 2,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2],
                    log_start_offset: None,
                    high_watermark: None,
                    size_bytes: None,
                },
                PartitionStatus {
                    partition: 1,
                    leader: -1,
                    leader_epoch: 5,
                    replicas: vec![2, 3, 1],
                    isr: vec![],
                    log_start_offset: None,
                    high_watermark: None,
                    size_bytes: None,
                },
            ],
            notes: Vec::new(),
        }
    }

    #[test]
    fn topic_description_shows_no_leader_as_none() {
        let text = table_text(&Report::TopicDetails(orders_details()));
        assert!(text.contains("AAECAwQFBgcICQoLDA0ODw"), "{text}");
        assert!(text.contains("retention.ms=1000"), "{text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|line| !line.starts_with("PARTITION"))
            .skip(1)
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["0", "1", "2", "1,2,3", "1,2"],
                vec!["1", "none", "5", "2,3,1", "-"]
            ]
        );

        let value = json(&Report::TopicDetails(orders_details()));
        assert_eq!(value["name"], "orders");
        assert_eq!(value["configs"]["retention.ms"], "1000");
        assert_eq!(value["partitions"][1]["leader"], -1);
        assert_eq!(
            value["partitions"][0]["replicas"],
            serde_json::json!([1, 2, 3])
        );
        assert_eq!(value["partitions"][0]["isr"], serde_json::json!([1, 2]));
        assert_eq!(value["partitions"][0]["leader_epoch"], 2);
    }

    #[test]
    fn leader_figures_get_columns_and_notes() {
        let mut details = orders_details();
        details.partitions[0].log_start_offset = Some(10);
        details.partitions[0].high_watermark = Some(250);
        details.partitions[0].size_bytes = Some(3 * 1024 * 1024);
        details
            .notes
            .push("partition(s) 1 are led by broker 9, which is not live".to_owned());
        let text = table_text(&Report::TopicDetails(details.clone()));
        let header = text
            .lines()
            .find(|line| line.starts_with("PARTITION"))
            .unwrap_or_default();
        assert!(
            header.ends_with("LOG START  HIGH WATERMARK  SIZE"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>()
                    == ["0", "1", "2", "1,2,3", "1,2", "10", "250", "3.0", "MiB"]),
            "{text}"
        );
        assert!(
            text.contains("Note: partition(s) 1 are led by broker 9"),
            "{text}"
        );
        let value = json(&Report::TopicDetails(details));
        assert_eq!(value["partitions"][0]["high_watermark"], 250);
        assert_eq!(value["partitions"][0]["size_bytes"], 3 * 1024 * 1024);
        assert_eq!(value["partitions"][1]["log_start_offset"], Value::Null);
        assert_eq!(value["notes"].as_array().map(Vec::len), Some(1));

        // Metadata only: no figure columns at all.
        let text = table_text(&Report::TopicDetails(orders_details()));
        assert!(!text.contains("HIGH WATERMARK"), "{text}");
    }

    #[test]
    fn topic_list_json_is_an_array() {
        let topics = vec![TopicSummary {
            name: "orders".to_owned(),
            topic_id: "AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            partitions: 3,
            replication_factor: 1,
            internal: false,
        }];
        let value = json(&Report::Topics(topics.clone()));
        assert_eq!(
            value,
            serde_json::json!([{
                "name": "orders",
                "topic_id": "AAAAAAAAAAAAAAAAAAAAAA",
                "partitions": 3,
                "replication_factor": 1,
                "internal": false
            }])
        );
        let text = table_text(&Report::Topics(topics));
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|line| line.starts_with("orders")),
            "{text}"
        );
        assert_eq!(table_text(&Report::Topics(Vec::new())).lines().count(), 1);
    }
}
