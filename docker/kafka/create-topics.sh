#!/bin/sh
# One-shot of the Compose stack (service `topics`, apache/kafka image): creates
# the pipeline's topics before the services start. Idempotent (--if-not-exists).
#   BOOTSTRAP    broker address (kafka:19092)
#   PREFIX       KAFKA_TOPIC_PREFIX, prepended to every name
#   PARTITIONS   partitions of each topic (KAFKA_TOPIC_PARTITIONS)
#   TOPICS       names, space-separated
set -eu
: "${BOOTSTRAP:=kafka:19092}" "${PREFIX:=}" "${PARTITIONS:=3}"
: "${TOPICS:=batch extract transform load errors extract-live transform-live}"
: "${KAFKA_TOPICS:=/opt/kafka/bin/kafka-topics.sh}"
for name in $TOPICS; do
    "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$PREFIX$name" --partitions "$PARTITIONS" --replication-factor 1
done
echo "topics ready on $BOOTSTRAP:"
"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --list
