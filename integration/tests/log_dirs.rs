//! A broker's data directory across stops and crashes: its clean-shutdown marker (Kafka's
//! `.kafka_cleanshutdown`, issue #18) exists only between a clean stop and the next start, so a
//! kill -9 is never taken for a clean shutdown and every log is recovered after it.

use std::time::Duration;

use crate::harness::{create_topic, start, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_marked_clean_only_between_a_clean_stop_and_the_next_start() {
    let mut cluster = start(1, 1, &[]).await;
    create_topic(&cluster, "marked", 3, 1).await;
    let broker = cluster.broker(1).unwrap();
    let marker = broker.data_dir.join(".clean-shutdown");
    // The topic's logs are created once the broker applied the metadata naming them.
    wait_for(
        "the logs to be created",
        Duration::from_secs(10),
        || async {
            (0..3)
                .all(|p| {
                    broker
                        .data_dir
                        .join(format!("marked-{p}"))
                        .join("partition.metadata")
                        .exists()
                })
                .then_some(())
        },
    )
    .await;
    assert!(!marker.exists());

    let exited = broker.terminate(Duration::from_secs(40)).unwrap();
    assert_eq!(exited, Some(true), "{}", broker.log_tail(20));
    assert!(marker.exists(), "a clean stop marks the data dir");

    cluster.start_stopped().unwrap();
    cluster.wait_ready(Duration::from_secs(30)).await.unwrap();
    let broker = cluster.broker(1).unwrap();
    assert!(!marker.exists(), "the start removed it");
    assert!(
        broker.log_tail(400).contains("clean_shutdown=true"),
        "{}",
        broker.log_tail(40)
    );

    broker.kill().unwrap();
    assert!(!marker.exists(), "a kill -9 leaves none");
    cluster.start_stopped().unwrap();
    cluster.wait_ready(Duration::from_secs(30)).await.unwrap();
    let tail = cluster.broker(1).unwrap().log_tail(400);
    let opened: Vec<&str> = tail
        .lines()
        .filter(|l| l.contains("opened partition logs") && l.contains("clean_shutdown="))
        .collect();
    assert!(
        opened
            .last()
            .is_some_and(|l| l.contains("clean_shutdown=false")),
        "the start after the kill recovers: {opened:?}"
    );
}
