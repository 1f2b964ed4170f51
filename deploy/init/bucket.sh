#!/bin/sh
# One-shot: create the recordings bucket (versioning on) with lifecycle rules as a
# SAFETY NET, and the landing bucket. Runs in the minio/mc image. Idempotent.
#
# callvault's retention sweep deletes every recording on time (all object versions);
# these rules only catch what it missed, so each one selects the objects of one
# retention class that no legal hold keeps -- tags retention-class=<class> AND
# legal-hold=off, which callvault's vault mirror rewrites whenever a reschedule or a
# hold changes them (storage/mirror.py) -- and expires them LONGER after they were
# written than the longest period their class can have in policies/data/policy.yaml
# (checked by tests/deploy/test_compose.py; tests/deploy/test_lifecycle_safety_net.py
# proves no rule ends a recording before the catalog would):
#   standard-90d     90 days after the call            -> expire after 120 days
#   end-of-contract  30 days after contract end, at
#                    most 1825 days after the call      -> expire after 1900 days
# A noncurrent version is kept as long: callvault never overwrites a recording's
# version, so one made noncurrent (by an outside write) may still be the one the
# catalog reads. Objects written before the legal-hold tag existed match no rule
# until `callvault vault sync --all` re-tags them.
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
mc ilm rule add --tags "retention-class=standard-90d&legal-hold=off" --expire-days 120 \
  --noncurrent-expire-days 120 "local/$VAULT_BUCKET"
mc ilm rule add --tags "retention-class=end-of-contract&legal-hold=off" --expire-days 1900 \
  --noncurrent-expire-days 1900 "local/$VAULT_BUCKET"
mc ilm rule ls "local/$VAULT_BUCKET"
