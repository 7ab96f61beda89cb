#!/usr/bin/env bash
# Distributed figures for the README, one run each, on this machine:
#  1. all-reduce of MB megabytes (float32, sum) over 2 ranks on 127.0.0.1: `silt dist bench`
#     (torch's c10d/Gloo driven from Rust) beside PyTorch's own torch.distributed (gloo) from
#     Python (benches/dist_allreduce.py), alternated ROUNDS times;
#  2. training throughput from 1 to 2 ranks: RotNet, small CNN, $TRAIN_N Fashion-MNIST images,
#     one epoch, global batch 128: 1 process with 2 torch threads and 2 loader workers vs 2
#     processes with 1 thread and 1 worker each (the same 2 cores).
#
#   benches/dist_compare.sh        env: OUT (/tmp/silt-dist), MB (100), ITERS (10), ROUNDS (3), TRAIN_N (5000)
set -euo pipefail
cd "$(dirname "$0")/.."
source "${SILT_HOME:-$HOME/.cache/silt}/env"
OUT="${OUT:-/tmp/silt-dist}" MB="${MB:-100}" ITERS="${ITERS:-10}" ROUNDS="${ROUNDS:-3}" TRAIN_N="${TRAIN_N:-5000}"
FM="${SILT_DATA:-$SILT_HOME/data}/fashion-mnist"
mkdir -p "$OUT"
SILT="${SILT_BIN:-}"
if [ -z "$SILT" ]; then cargo build --release --quiet --bin silt; SILT="$CARGO_TARGET_DIR/release/silt"; fi

launch() { # launch WORLD PORT CMD... : CMD under RANK/WORLD_SIZE/MASTER_* for every rank
  local world=$1 port=$2; shift 2
  for r in $(seq 0 $((world - 1))); do
    RANK=$r WORLD_SIZE=$world LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" &
  done
  wait
}

echo "== all-reduce, 2 ranks, $MB MB x $ITERS"
: > "$OUT/allreduce.jsonl"
for round in $(seq "$ROUNDS"); do
  launch 2 $((29800 + round)) "$SILT" dist bench --megabytes "$MB" --iterations "$ITERS" 2>/dev/null | sed 's/^{/{"tool":"silt",/' | tee -a "$OUT/allreduce.jsonl"
  launch 2 $((29900 + round)) "$SILT_PYTHON" benches/dist_allreduce.py --megabytes "$MB" --iterations "$ITERS" | sed 's/^{/{"tool":"torch",/' | tee -a "$OUT/allreduce.jsonl"
done

echo "== training throughput, 1 vs 2 ranks"
[ -f "$OUT/fashion-train/manifest.json" ] || "$SILT" ingest idx --images "$FM/train-images-idx3-ubyte" \
  --labels "$FM/train-labels-idx1-ubyte" --classes "$FM/classes.txt" --limit "$TRAIN_N" --dedup none --out "$OUT/fashion-train" >/dev/null
COMMON=(train "$OUT/fashion-train" --method rotnet --arch small --crop 28 --epochs 1 --seed 3 --lr 0.05 --checkpoint-every 0 --log-every 10)
rm -rf "$OUT/run1" "$OUT/run2"
"$SILT" "${COMMON[@]}" --batch-size 128 --threads 2 --workers 2 --run-dir "$OUT/run1" > "$OUT/run1.txt" 2>/dev/null
launch 2 29999 "$SILT" "${COMMON[@]}" --batch-size 64 --threads 1 --workers 1 --run-dir "$OUT/run2" > "$OUT/run2.txt" 2>/dev/null
"$SILT_PYTHON" - "$OUT" <<'PY'
import json, sys, statistics
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/allreduce.jsonl")]
for tool in ("silt", "torch"):
    r = [x for x in rows if x["tool"] == tool]
    print(f"{tool:6s} all-reduce mean of means {statistics.mean(x['mean_ms'] for x in r):7.1f} ms, best {min(x['best_ms'] for x in r):7.1f} ms, "
          f"{statistics.mean(x['gb_per_s'] for x in r):.2f} GB/s")
s = statistics.mean(x['mean_ms'] for x in rows if x['tool'] == 'silt'); t = statistics.mean(x['mean_ms'] for x in rows if x['tool'] == 'torch')
print(f"silt / torch time ratio: {s / t:.2f}")
def ips(run):
    steps = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if '"kind":"epoch"' in l]
    return steps[-1]["images"], steps[-1]["seconds"]
(n1, s1), (n2, s2) = ips("run1"), ips("run2")
print(f"rotnet 1 rank: {n1} images in {s1:.1f} s = {n1 / s1:.0f} img/s; 2 ranks: {n2}x2 images in {s2:.1f} s = {2 * n2 / s2:.0f} img/s; speed-up {(2 * n2 / s2) / (n1 / s1):.2f}x")
json.dump({"allreduce": rows, "train": {"one_rank_img_s": n1 / s1, "two_ranks_img_s": 2 * n2 / s2}}, open(f"{out}/dist.json", "w"), indent=1)
PY
