#!/usr/bin/env python3
"""The part of Apache Kafka's `kafka-topics.sh` that librdkafka's regression suite runs
(`test_kafka_topics()` in its tests/test.c, e.g. 0052's `--create --topic T --replication-factor 1
--partitions 1 --config message.timestamp.type=LogAppendTime`), done as the real tool does it: a
CreateTopics request over the Kafka protocol to `--bootstrap-server`, here through confluent-kafka's
AdminClient. Kafka's own tool is not on any registry CI reaches; this keeps its command line.

Exit status 0 on success; otherwise 1 with the broker's error on stderr, as kafka-topics.sh does."""

import argparse
import sys

from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    parser = argparse.ArgumentParser(prog="kafka-topics.sh")
    parser.add_argument("--bootstrap-server", required=True)
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=-1)
    parser.add_argument("--replication-factor", type=int, default=-1)
    parser.add_argument("--config", action="append", default=[])
    args = parser.parse_args()
    if not args.create:
        parser.error("only --create is supported")
    configs = {}
    for entry in args.config:
        key, sep, value = entry.partition("=")
        if not sep:
            parser.error(f"--config {entry!r} is not key=value")
        configs[key] = value
    admin = AdminClient({"bootstrap.servers": args.bootstrap_server})
    topic = NewTopic(args.topic, num_partitions=args.partitions,
                     replication_factor=args.replication_factor, config=configs)
    future = admin.create_topics([topic], request_timeout=30)[args.topic]
    try:
        future.result(timeout=60)
    except Exception as error:  # noqa: BLE001 - the tool prints whatever the broker said
        print(f"Error while executing topic command : {error}", file=sys.stderr)
        return 1
    print(f"Created topic {args.topic}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
