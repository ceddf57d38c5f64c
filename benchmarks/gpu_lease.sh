#!/usr/bin/env bash
# One lease of a lent GPU (the library's `device` tool), as one prepared command: the trainer's GPU throughput
# (ResNet-50, bf16, 64 and 224 px), then a plan of proxy runs (benchmarks/device_runs.py) until RUN_SECONDS.
# The machine has its own torch and none of our pins or study tooling: only trainer/ and search_space/ run there.
# Usage, from the repo root there: bash benchmarks/gpu_lease.sh PLAN.jsonl IDX_DIR RUN_SECONDS
# Results land in $OUT (the device tool brings that folder back): gpu.txt, throughput-*.txt, runs.log, runs/*.jsonl.
set -u
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-lease}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ATTNAS_CACHE=/tmp/attnas-cache
PY=${PY:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.get_num_threads())"
  nproc; } > "$OUT/gpu.txt"
for res in 64 224; do
  timeout "${THROUGHPUT_S:-100}" $PY benchmarks/trainer_throughput.py --device "$DEVICE" --backbone resnet50 \
    --width-mult 1 --resolution "$res" --batch-size 256 --epochs 4 --data-dir /tmp/attnas-bench-tree-gpu \
    > "$OUT/throughput-$res.txt" 2>&1 || echo "throughput $res px: exit $?" >> "$OUT/throughput-$res.txt"
done
$PY benchmarks/device_runs.py "$1" --out "$OUT/runs" --device "$DEVICE" --data "$2" --deadline "$3" \
  --procs "${PROCS:-14}" > "$OUT/runs.log" 2>&1
cat "$OUT/gpu.txt"; tail -n 9 "$OUT"/throughput-*.txt; grep -c "" "$OUT"/runs/*.jsonl; grep -v "^ *[0-9]* s " "$OUT/runs.log" | tail -n 20
