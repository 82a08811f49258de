"""The reference consumer's design, re-created for a side-by-side benchmark:
confluent-kafka, a poll loop, micro-batches per partition, JSON decoded,
a synchronous commit per batch, a no-op sink.

    python3 python_consumer.py BOOTSTRAP TOPIC GROUP EXPECTED BATCH_SIZE

Prints "first processed" after the first batch, "all processed" once
EXPECTED messages are, then exits.
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, group, expected, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
})
consumer.subscribe([topic])
batches = {}
processed = 0
first = True


def done(count):
    global processed, first
    processed += count
    if first:
        print("first processed", flush=True)
        first = False


while processed < expected:
    msg = consumer.poll(0.1)
    if msg is None:
        # flush partial batches on idle, as BATCH_TIMEOUT would
        for partition, batch in list(batches.items()):
            if batch:
                done(len(batch))
                consumer.commit(offsets=[TopicPartition(topic, partition, batch[-1][0] + 1)], asynchronous=False)
                batches[partition] = []
        continue
    if msg.error():
        continue
    trade = json.loads(msg.value())
    batch = batches.setdefault(msg.partition(), [])
    batch.append((msg.offset(), trade))
    if len(batch) >= batch_size:
        done(len(batch))
        consumer.commit(offsets=[TopicPartition(topic, msg.partition(), msg.offset() + 1)], asynchronous=False)
        batches[msg.partition()] = []
print("all processed", processed, flush=True)
consumer.close()
