#!/usr/bin/env bash
# Distributed figures for the README, one run each, on this machine:
#  1. all-reduce of MB megabytes (float32, sum) over 2 ranks on 127.0.0.1: `silt dist bench`
#     (torch's c10d/Gloo driven from Rust) beside PyTorch's own torch.distributed (gloo) from
#     Python (benches/dist_allreduce.py), alternated ROUNDS times;
#  2. training throughput from 1 to 2 ranks: RotNet, small CNN, $TRAIN_N Fashion-MNIST images,
#     one epoch, global batch 128: 1 process with 2 torch threads and 2 loader workers vs 2
#     processes with 1 thread and 1 worker each (the same 2 cores);
#  3. the trunk's gradients all-reduced during backward (the default) vs after it
#     (SILT_GRAD_OVERLAP=0): RotNet, ResNet-18 at 32 px (45 MB of gradients, 2 buckets), 2 ranks x
#     batch 32, $STEPS steps, alternated ROUNDS times.
#
#   benches/dist_compare.sh        env: OUT (/tmp/silt-dist), MB (100), ITERS (10), ROUNDS (3), TRAIN_N (5000),
#                                       STEPS (20), PARTS ("1 2 3")
set -euo pipefail
cd "$(dirname "$0")/.."
source "${SILT_HOME:-$HOME/.cache/silt}/env"
OUT="${OUT:-/tmp/silt-dist}" MB="${MB:-100}" ITERS="${ITERS:-10}" ROUNDS="${ROUNDS:-3}" TRAIN_N="${TRAIN_N:-5000}"
STEPS="${STEPS:-20}" PARTS="${PARTS:-1 2 3}"
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

part() { [[ " $PARTS " == *" $1 "* ]]; }
: > "$OUT/allreduce.jsonl"
if part 1; then
echo "== all-reduce, 2 ranks, $MB MB x $ITERS"
for round in $(seq "$ROUNDS"); do
  launch 2 $((29800 + round)) "$SILT" dist bench --megabytes "$MB" --iterations "$ITERS" 2>/dev/null | sed 's/^{/{"tool":"silt",/' | tee -a "$OUT/allreduce.jsonl"
  launch 2 $((29900 + round)) "$SILT_PYTHON" benches/dist_allreduce.py --megabytes "$MB" --iterations "$ITERS" | sed 's/^{/{"tool":"torch",/' | tee -a "$OUT/allreduce.jsonl"
done
fi

[ -f "$OUT/fashion-train/manifest.json" ] || "$SILT" ingest idx --images "$FM/train-images-idx3-ubyte" \
  --labels "$FM/train-labels-idx1-ubyte" --classes "$FM/classes.txt" --limit "$TRAIN_N" --dedup none --out "$OUT/fashion-train" >/dev/null
COMMON=(train "$OUT/fashion-train" --method rotnet --arch small --crop 28 --epochs 1 --seed 3 --lr 0.05 --checkpoint-every 0 --log-every 10)
if part 2; then
echo "== training throughput, 1 vs 2 ranks"
rm -rf "$OUT/run1" "$OUT/run2"
"$SILT" "${COMMON[@]}" --batch-size 128 --threads 2 --workers 2 --run-dir "$OUT/run1" > "$OUT/run1.txt" 2>/dev/null
launch 2 29999 "$SILT" "${COMMON[@]}" --batch-size 64 --threads 1 --workers 1 --run-dir "$OUT/run2" > "$OUT/run2.txt" 2>/dev/null
fi
: > "$OUT/overlap.jsonl"
if part 3; then
echo "== gradient all-reduce during vs after backward, ResNet-18, 2 ranks"
OVERLAP=(train "$OUT/fashion-train" --method rotnet --arch resnet18 --crop 32 --epochs 1 --max-steps "$STEPS" --seed 3 --lr 0.05
  --checkpoint-every 0 --log-every 1 --batch-size 32 --threads 1 --workers 1)
for round in $(seq "$ROUNDS"); do
  for overlap in 1 0; do
    rm -rf "$OUT/overlap-run"
    SILT_GRAD_OVERLAP=$overlap launch 2 $((29700 + round * 2 + overlap)) "$SILT" "${OVERLAP[@]}" --run-dir "$OUT/overlap-run" >/dev/null 2>&1
    "$SILT_PYTHON" -c 'import json, sys
t = [json.loads(l)["time_s"] for l in open(sys.argv[1]) if "\"kind\":\"step\"" in l]
print(json.dumps({"overlap": int(sys.argv[2]), "steps": len(t), "s_per_step": (t[-1] - t[0]) / (len(t) - 1)}))' \
      "$OUT/overlap-run/metrics.jsonl" "$overlap" | tee -a "$OUT/overlap.jsonl"
  done
done
fi
"$SILT_PYTHON" - "$OUT" <<'PY'
import json, os, sys, statistics
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/allreduce.jsonl")]
for tool in ("silt", "torch") if rows else ():
    r = [x for x in rows if x["tool"] == tool]
    print(f"{tool:6s} all-reduce mean of means {statistics.mean(x['mean_ms'] for x in r):7.1f} ms, best {min(x['best_ms'] for x in r):7.1f} ms, "
          f"{statistics.mean(x['gb_per_s'] for x in r):.2f} GB/s")
if rows:
    s = statistics.mean(x['mean_ms'] for x in rows if x['tool'] == 'silt'); t = statistics.mean(x['mean_ms'] for x in rows if x['tool'] == 'torch')
    print(f"silt / torch time ratio: {s / t:.2f}")
result = {"allreduce": rows}
def ips(run):
    steps = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if '"kind":"epoch"' in l]
    return steps[-1]["images"], steps[-1]["seconds"]
if os.path.exists(f"{out}/run1/metrics.jsonl") and os.path.exists(f"{out}/run2/metrics.jsonl"):
    (n1, s1), (n2, s2) = ips("run1"), ips("run2")
    print(f"rotnet 1 rank: {n1} images in {s1:.1f} s = {n1 / s1:.0f} img/s; 2 ranks: {n2}x2 images in {s2:.1f} s = {2 * n2 / s2:.0f} img/s; speed-up {(2 * n2 / s2) / (n1 / s1):.2f}x")
    result["train"] = {"one_rank_img_s": n1 / s1, "two_ranks_img_s": 2 * n2 / s2}
ov = [json.loads(l) for l in open(f"{out}/overlap.jsonl") if l.strip()]
if ov:
    # rank 0's seconds per step after the first (the steps are global: both ranks take each)
    t = {o: [r["s_per_step"] for r in ov if r["overlap"] == o] for o in (0, 1)}
    print(f"resnet18 2 ranks: gradients during backward {statistics.mean(t[1]):.3f} s/step (runs {[round(x, 3) for x in t[1]]}), "
          f"after backward {statistics.mean(t[0]):.3f} s/step (runs {[round(x, 3) for x in t[0]]}); time ratio {statistics.mean(t[1]) / statistics.mean(t[0]):.3f}")
    result["overlap"] = ov
json.dump(result, open(f"{out}/dist.json", "w"), indent=1)
PY
