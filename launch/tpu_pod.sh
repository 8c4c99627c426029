#!/usr/bin/env bash
# One fajax run on a Cloud TPU VM pod slice: the same command on every worker.
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config=imagenet2_fa_usf_sn --workdir=gs://bucket/runs/imagenet2_fa_usf_sn
#
# Installs fajax from this checkout's remote on every worker (FAJAX_REPO, default the origin
# URL) once, then starts training everywhere; JAX finds the pod's workers itself. The workdir
# and $TFDS_DATA_DIR should be a GCS bucket, which Orbax and TFDS read and write directly.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,9p' "$0"; exit 2
fi
tpu=$1 zone=$2; shift 2
repo=${FAJAX_REPO:-$(git config --get remote.origin.url)}
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e
  [ -d fajax ] || git clone '$repo' fajax
  cd fajax && pip install -q -e . 'jax[tpu]'
  FAJAX_DISTRIBUTED=1 python -m fajax.main $args"
