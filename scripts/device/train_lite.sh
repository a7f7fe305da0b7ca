#!/usr/bin/env bash
# Train the lite model on a lent accelerator, in two back-to-back calls of the device tool
# (the kit is too big for one carry; see scripts/device/make_kit.py and docs/training.md):
#
#   run(command="bash scripts/device/train_lite.sh unpack-a", carry=[".device/a"], timeout_s=240)
#   run(command="bash scripts/device/train_lite.sh train",    carry=[".device/b"], timeout_s=590)
#
# `train` runs bank → gie → payload → e2e, each up to a wall-clock budget (minutes, overridable:
# BANK_MIN GIE_MIN PAYLOAD_MIN E2E_MIN), then returns through $OUT: the EMA model in fp16 shards of
# ≤ 15 MiB, and logs.tar.gz (configs, metrics.jsonl, last image grids). INIT_FROM=<model file in the
# repo> makes the payload and e2e stages start from an earlier session's model instead.
set -euo pipefail

KIT=${KIT:-/tmp/g2face-kit}          # stays on the machine while it is warm (between the two calls)
RUN=${RUN:-/tmp/g2face-run}
OUT=${OUT:-/tmp/g2face-out}
CONFIG=${CONFIG:-configs/lite-gpu.yaml}
DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 G2FACE_HOME="$KIT/home" PYTHONPATH="$PWD/src:$KIT/site"

log() { echo "[$(date +%T)] $*"; }

case "${1:-}" in
unpack-a)
  mkdir -p "$KIT"
  cp -r .device/a/home "$KIT/"
  mkdir -p "$KIT/site"
  [ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$KIT/site" .device/a/wheels/*.whl
  python3 - "$DEVICE" <<'EOF'
import sys, torch, g2face.payload, g2face.priors.mobilestylegan as m
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
g = m.load_mobilestylegan(256).to(sys.argv[1])
print("generator ok on", sys.argv[1], tuple(g.sample(2, 0).shape))
EOF
  log "kit unpacked in $KIT"
  ;;
train)
  [ -d "$KIT/site" ] || { echo "no kit on this machine: run 'unpack-a' first (the machine went cold?)"; exit 2; }
  cp -r .device/b/home "$KIT/"
  data=()
  [ -f .device/b/data/manifest.jsonl ] && data=(--data .device/b/data)
  init=()
  [ -n "${INIT_FROM:-}" ] && init=(--init-from "$INIT_FROM")
  mkdir -p "$OUT"
  train() { python3 -m g2face.cli.train --config "$CONFIG" --run-dir "$RUN" --device "$DEVICE" --quiet "$@"; }
  status=0
  {
    log "bank";    train --stage bank    --max-minutes "${BANK_MIN:-1.5}"
    log "gie";     train --stage gie     --max-minutes "${GIE_MIN:-1}"
    log "payload"; train --stage payload --max-minutes "${PAYLOAD_MIN:-2.5}" "${data[@]}" "${init[@]}"
    log "e2e";     train --stage e2e     --max-minutes "${E2E_MIN:-3.5}" "${data[@]}"
  } 2>&1 | tee "$OUT/train.log" || status=$?
  # Whatever finished comes back, also after a failure.
  if [ -f "$RUN/model.safetensors" ]; then
    python3 scripts/device/shards.py split "$RUN/model.safetensors" "$OUT" --dtype float16
  fi
  for grids in "$RUN"/*/samples; do  # the last two grids of each stage
    [ -d "$grids" ] && ls -1t "$grids"/*.png 2>/dev/null | tail -n +3 | xargs -r rm -f
  done
  tar -czf "$OUT/logs.tar.gz" -C "$RUN" --exclude='checkpoints' --exclude='bank' --exclude='*.safetensors' . || true
  log "done (status $status)"
  exit "$status"
  ;;
*)
  echo "usage: $0 unpack-a | train" >&2
  exit 2
  ;;
esac
