#!/usr/bin/env bash
# Installs the peers of bench/backbone.bench.mjs under bench/.peers/ (gitignored):
#  - onnxruntime-node (its CPU binary ships in the npm package; no download at install);
#  - the ONNX models it runs: torchvision resnet18@224 and wide_resnet50_2@256 up to layer3,
#    batch 1 and 8, exported by bench/peers/torch_backbone.py with Debian's python3-torch.
#  - bench/.peers/fma-peak, a probe of one core's measured fp32 FMA peak (for GFLOP/s shares).
# PyTorch itself is Debian's python3-torch (apt), used in place by the bench.
#
#   bash bench/setup-peers-backbone.sh        # idempotent: skips what is already there
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=bench/.peers
PY=/usr/bin/python3
ORT_VERSION=1.30.0

mkdir -p "$PEERS/models"
if [ ! -f "$PEERS/node_modules/onnxruntime-node/package.json" ] ||
   [ "$(node -p "require('./$PEERS/node_modules/onnxruntime-node/package.json').version")" != "$ORT_VERSION" ]; then
  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --prefix "$PEERS" "onnxruntime-node@$ORT_VERSION"
fi

$PY -c 'import torch, torchvision' || {
  echo "Debian's python3-torch and python3-torchvision are needed: apt-get install python3-torch python3-torchvision" >&2
  exit 1
}
for spec in resnet18:224 wide_resnet50_2:256; do
  arch=${spec%%:*} size=${spec##*:}
  for batch in 1 8; do
    out="$PEERS/models/${arch}-${size}-b${batch}-layer3.onnx"
    [ -s "$out" ] || $PY bench/peers/torch_backbone.py export-onnx "$arch" "$size" "$batch" layer3 "$out" 17
  done
done
if [ ! -x "$PEERS/fma-peak" ] || [ bench/peers/fma_peak.c -nt "$PEERS/fma-peak" ]; then
  cc -O2 -march=native -o "$PEERS/fma-peak" bench/peers/fma_peak.c
fi
echo "backbone bench peers ready in $PEERS"
