#!/usr/bin/env bash
# Every method on the same real data, network, epochs and batch: Fashion-MNIST (first
# $TRAIN_N training / $TEST_N test images) -> shards -> `silt train --method M` with the small CNN
# on 28-pixel crops, evaluated after every epoch (kNN k 200 T 0.07; k-means NMI on the test
# features) and once before training (the random network, epoch -1). Writes
# $OUT/methods.json and prints a Markdown table: kNN / NMI of the random network and after the
# last epoch, seconds per epoch (training only, this machine, one run).
#
#   benches/methods_compare.sh [RUN...]     (default: all; a RUN is METHOD or METHOD@VARIANT)
#   env: OUT (default /tmp/silt-methods), EPOCHS (5), TRAIN_N (5000), TEST_N (1000), BATCH (128)
set -euo pipefail
cd "$(dirname "$0")/.."
source "${SILT_HOME:-$HOME/.cache/silt}/env"
OUT="${OUT:-/tmp/silt-methods}" EPOCHS="${EPOCHS:-5}" TRAIN_N="${TRAIN_N:-5000}" TEST_N="${TEST_N:-1000}" BATCH="${BATCH:-128}"
FM="${SILT_DATA:-$SILT_HOME/data}/fashion-mnist"
mkdir -p "$OUT"
for split in train t10k; do
  n=$TRAIN_N; [ $split = t10k ] && n=$TEST_N
  [ -f "$OUT/fashion-$split/manifest.json" ] || ops/silt ingest idx --images "$FM/$split-images-idx3-ubyte" \
    --labels "$FM/$split-labels-idx1-ubyte" --classes "$FM/classes.txt" --limit "$n" --dedup none --out "$OUT/fashion-$split" >/dev/null
done

# Per-method settings for a 5k-image CPU run (upstream defaults are for ImageNet on 8 GPUs):
# learning rates a small network tolerates at batch 128, queues/banks/windows sized to the data.
# Variants for comparison: simclr@sgd (plain momentum SGD instead of SimCLR's LARS);
# instdisc@upstream, pic@upstream (random bank / classifier rows, as upstream starts them).
declare -A EXTRA=(
  [deepcluster]="--k 100 --dim-pca 64 --lr 0.05"
  [rotnet]="--lr 0.05 --schedule constant"
  [deepercluster]="--k 100 --super-classes 4 --dim-pca 64 --lr 0.05 --reassignment 1"
  [sela]="--lr 0.05 --hc 2 --ncl 100 --nopts 20"
  [moco-v2]="--moco-k 4096 --moco-m 0.99 --bn-splits 1 --lr 0.06"
  [simclr]="--temperature 0.5 --lars --lr 1.0"
  [simclr@sgd]="--temperature 0.5 --lr 0.3"
  [instdisc]="--nce-k 0 --temperature 0.1 --lr 0.03 --bank-init features"
  [instdisc@upstream]="--nce-k 0 --temperature 0.1 --lr 0.03"
  [pic]="--lr 0.03 --schedule constant --mlp-hidden 512 --bank-init features"
  [pic@upstream]="--lr 0.03 --schedule constant --mlp-hidden 512"
)
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(deepcluster rotnet deepercluster sela moco-v2 simclr simclr@sgd instdisc instdisc@upstream pic pic@upstream)
for r in "${RUNS[@]}"; do
  m="${r%%@*}"
  if ! ops/silt train --help | grep -q "$m"; then echo "skipping $r: this build has no such method"; continue; fi
  rm -rf "$OUT/runs/$r"
  echo "== $r: ${EXTRA[$r]:-}"
  # shellcheck disable=SC2086
  ops/silt train "$OUT/fashion-train" --method "$m" --run-dir "$OUT/runs/$r" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --arch small --crop 28 --min-scale 0.3 --eval-data "$OUT/fashion-t10k" --checkpoint-every 0 --log-every 10 \
    --workers 2 --seed 31 ${EXTRA[$r]:-} >/dev/null
done
"$SILT_PYTHON" - "$OUT" "${RUNS[@]}" <<'PY'
import json, os, sys
out, methods = sys.argv[1], sys.argv[2:]
rows = []
for m in methods:
    path = os.path.join(out, "runs", m, "metrics.jsonl")
    if not os.path.exists(path):
        continue
    lines = [json.loads(l) for l in open(path) if l.strip()]
    ev = [l for l in lines if l.get("kind") == "eval"]
    ep = [l for l in lines if l.get("kind") == "epoch"]
    first, last = ev[0], ev[-1]
    rows.append(dict(method=m, epochs=len(ep), knn_random=first["knn_top1"], knn=last["knn_top1"],
                     nmi_random=first["nmi_kmeans"], nmi=last["nmi_kmeans"],
                     seconds_per_epoch=sum(e["seconds"] for e in ep) / max(len(ep), 1)))
json.dump(rows, open(os.path.join(out, "methods.json"), "w"), indent=1)
print("| method | epochs | kNN random → trained | NMI random → trained | s/epoch |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['method']} | {r['epochs']} | {r['knn_random']:.3f} → {r['knn']:.3f} ({r['knn']-r['knn_random']:+.3f}) | "
          f"{r['nmi_random']:.3f} → {r['nmi']:.3f} ({r['nmi']-r['nmi_random']:+.3f}) | {r['seconds_per_epoch']:.1f} |")
PY
