"""The reference consumer's design, re-created for a side-by-side benchmark:
confluent-kafka, a poll loop, micro-batches per partition, JSON decoded,
the batch written, then a synchronous commit per batch.

    python3 python_consumer.py BOOTSTRAP TOPIC GROUP EXPECTED BATCH_SIZE [DATABASE_URL TABLE]

Without DATABASE_URL the sink does nothing; with it, each batch is
inserted into TABLE (created if missing, the columns trade-consumer
writes) with psycopg's executemany, idempotent on trade_id, and committed
before its offsets are.

Prints "first processed" after the first batch, "all processed" once
EXPECTED messages are, then exits.
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, group, expected, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
database_url, table = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else (None, None)


def no_op_sink(partition, batch):
    pass


def postgres_sink():
    import psycopg

    db = psycopg.connect(database_url)
    db.execute(f"""CREATE TABLE IF NOT EXISTS {table} (
        trade_id text PRIMARY KEY, account_id text NOT NULL, symbol text NOT NULL,
        side text NOT NULL, quantity integer NOT NULL, price double precision NOT NULL,
        trade_time timestamptz NOT NULL, account_seq bigint NOT NULL,
        kafka_partition integer NOT NULL, kafka_offset bigint NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT clock_timestamp())""")
    db.commit()
    insert = (
        f"INSERT INTO {table} (trade_id, account_id, symbol, side, quantity, price,"
        " trade_time, account_seq, kafka_partition, kafka_offset)"
        " VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s)"
        " ON CONFLICT (trade_id) DO NOTHING"
    )

    def write(partition, batch):
        with db.cursor() as cursor:
            cursor.executemany(insert, [
                (t["trade_id"], t["account_id"], t["symbol"], t["side"], t["quantity"],
                 t["price"], t["timestamp_ms"], t["account_seq"], partition, offset)
                for offset, t in batch
            ])
        db.commit()

    return write


sink = postgres_sink() if database_url else no_op_sink
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


def done(partition, batch):
    global processed, first
    sink(partition, batch)
    consumer.commit(offsets=[TopicPartition(topic, partition, batch[-1][0] + 1)], asynchronous=False)
    processed += len(batch)
    if first:
        print("first processed", flush=True)
        first = False


while processed < expected:
    msg = consumer.poll(0.1)
    if msg is None:
        # flush partial batches on idle, as BATCH_TIMEOUT would
        for partition, batch in list(batches.items()):
            if batch:
                done(partition, batch)
                batches[partition] = []
        continue
    if msg.error():
        continue
    trade = json.loads(msg.value())
    batch = batches.setdefault(msg.partition(), [])
    batch.append((msg.offset(), trade))
    if len(batch) >= batch_size:
        done(msg.partition(), batch)
        batches[msg.partition()] = []
print("all processed", processed, flush=True)
consumer.close()
