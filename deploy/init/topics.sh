#!/bin/bash
# One-shot: create callvault's topics (idempotent). Runs in the apache/kafka image.
# RECORDINGS_PARTITIONS bounds how many workers share ingest: a worker beyond the
# partition count of callvault.recordings gets no partition and idles.
set -euo pipefail
BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
RECORDINGS_PARTITIONS="${RECORDINGS_PARTITIONS:-12}"
PRIVACY_PARTITIONS="${PRIVACY_PARTITIONS:-4}"
REPLICATION="${REPLICATION_FACTOR:-1}"
TOPICS=/opt/kafka/bin/kafka-topics.sh

create() {  # name partitions [config...]
  local name=$1 partitions=$2
  shift 2
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$partitions" --replication-factor "$REPLICATION" "$@"
}

create callvault.recordings "$RECORDINGS_PARTITIONS" --config retention.ms=604800000
create callvault.privacy-requests "$PRIVACY_PARTITIONS" --config retention.ms=2592000000
# One partition: the audit stream keeps the hash chain's order for consumers.
create callvault.audit 1 --config retention.ms=-1
create callvault.dlq 1 --config retention.ms=2592000000
# Telephony sources (streams/sources): S3 notifications and Amazon Connect CTRs.
create callvault.s3-events "$PRIVACY_PARTITIONS" --config retention.ms=604800000
create callvault.connect-ctr "$PRIVACY_PARTITIONS" --config retention.ms=604800000
"$TOPICS" --bootstrap-server "$BOOTSTRAP" --describe --topic 'callvault\..*'
