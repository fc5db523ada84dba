//! `topic trim-prefix`: one line saying what was asked, then one row per partition with its new low
//! watermark (`-` when it failed) and the error.

use std::io::Write;

use super::table;
use crate::cmd::PrefixTrim;

/// The request on one line, then one row per partition.
pub(super) fn trimmed(out: &mut impl Write, trim: &PrefixTrim) -> std::io::Result<()> {
    let below = if trim.offset < 0 {
        "each partition's high watermark".to_owned()
    } else {
        format!("offset {}", trim.offset)
    };
    writeln!(
        out,
        "Deleted the records of topic '{}' below {below}.",
        trim.topic
    )?;
    writeln!(out)?;
    let rows = trim
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.low_watermark
                    .map_or_else(|| "-".to_owned(), |w| w.to_string()),
                p.error.clone().unwrap_or_default(),
            ]
        })
        .collect::<Vec<_>>();
    table(out, &["PARTITION", "LOW WATERMARK", "ERROR"], &rows)
}

#[cfg(test)]
mod tests {
    use crate::cmd::{PartitionTrim, PrefixTrim, Report};
    use crate::output::testing::{json, table_text};

    #[test]
    fn each_partition_shows_its_low_watermark_or_its_error() {
        let trim = PrefixTrim {
            topic: "orders".to_owned(),
            offset: -1,
            partitions: vec![
                PartitionTrim {
                    partition: 0,
                    low_watermark: Some(42),
                    error: None,
                },
                PartitionTrim {
                    partition: 1,
                    low_watermark: None,
                    error: Some("OFFSET_OUT_OF_RANGE".to_owned()),
                },
            ],
        };
        let text = table_text(&Report::PrefixTrim(trim.clone()));
        assert_eq!(
            text,
            "Deleted the records of topic 'orders' below each partition's high watermark.\n\n\
             PARTITION  LOW WATERMARK  ERROR\n\
             0          42\n\
             1          -              OFFSET_OUT_OF_RANGE\n"
        );
        let value = json(&Report::PrefixTrim(trim));
        assert_eq!(value["topic"], "orders");
        assert_eq!(value["offset"], -1);
        assert_eq!(value["partitions"][0]["low_watermark"], 42);
        assert!(value["partitions"][0]["error"].is_null());
        assert!(value["partitions"][1]["low_watermark"].is_null());
        assert_eq!(value["partitions"][1]["error"], "OFFSET_OUT_OF_RANGE");
    }
}
