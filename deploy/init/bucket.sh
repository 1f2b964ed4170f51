#!/bin/sh
# One-shot: create the recordings bucket (versioning on) with lifecycle rules as a
# SAFETY NET, and the landing bucket. Runs in the minio/mc image. Idempotent.
#
# callvault's retention sweep deletes every recording on time (all object versions);
# these rules only catch what it missed, so each expiry is LONGER than the longest
# period its class can have in policies/data/policy.yaml (checked by
# tests/deploy/test_compose.py):
#   standard-90d     90 days after the call            -> expire after 120 days
#   end-of-contract  30 days after contract end, at
#                    most 1825 days after the call      -> expire after 1900 days
# Objects carry the tag retention-class=<class> (set at ingest). Old versions are
# kept for 7 days (they are unreadable anyway once a subject key is destroyed).
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
VAULT_BUCKET="${VAULT_BUCKET:-callvault-recordings}"
LANDING_BUCKET="${LANDING_BUCKET:-callvault-landing}"

mc alias set local "${MINIO_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$VAULT_BUCKET"
mc version enable "local/$VAULT_BUCKET"
mc mb --ignore-existing "local/$LANDING_BUCKET"

# Re-running replaces the rules instead of stacking duplicates.
mc ilm rule rm --all --force "local/$VAULT_BUCKET" 2>/dev/null || true
mc ilm rule add --tags "retention-class=standard-90d" --expire-days 120 \
  --noncurrent-expire-days 7 "local/$VAULT_BUCKET"
mc ilm rule add --tags "retention-class=end-of-contract" --expire-days 1900 \
  --noncurrent-expire-days 7 "local/$VAULT_BUCKET"
mc ilm rule ls "local/$VAULT_BUCKET"
