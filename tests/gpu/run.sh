#!/usr/bin/env bash
# The GPU checks and full-scale benchmarks of randsmooth (issue 17), as one command on a bare GPU
# machine without internet; writes a Markdown report and the raw figures under $OUT.
#
#   bash tests/gpu/prepare_wheels.sh    # beforehand, where pip reaches the index: fills .whl/
#   bash tests/gpu/run.sh               # on the GPU machine (with .whl/ beside the checkout)
#   bash tests/gpu/run.sh --dry-run     # the same steps at tiny sizes on the CPU (CI runs this)
# The GPU machine needs only the checkout and .whl/ (with this project's device tool: carry .whl).
#
# Steps, in this order (each under its own time limit, all within $BUDGET seconds, default 450):
#   1. the notebooks' `#| cuda` tests (nbdev_test --flags cuda on the notebooks that have any;
#      the dry run only compiles those cells);
#   2. certify throughput at n0 = 100, n = 100,000: cifar_resnet110 on 3x32x32 and resnet50 on
#      3x224x224 (random weights), fp32 NCHW, channels_last, bf16 autocast and torch.compile, each
#      next to the model's forward floor measured in the same run (tests/bench/bench_certify_gpu.py);
#   3. training-step images/s, fp32 NCHW vs bf16 + channels_last (tests/bench/bench_train.py);
#   4. rs_train (AMP on) + rs_certify end to end on digits, rs_train under
#      `torchrun --nproc_per_node 1`, and the library's all-reduce through an nccl group under
#      torchrun (gloo on the CPU);
#   5. peak memory of certify at batch 1,000 and the largest batch that fits.
# Files under $OUT (a new temporary folder when OUT is unset): report.md, run.log (everything the
# steps printed), certify.jsonl and memory.jsonl (one JSON object per row), e2e_certify.tsv.
# Exits 0 when every step passed; the report's last line reads `N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/../.."
DRY=0
for a in "$@"; do
  case $a in
    --dry-run) DRY=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $a (allowed: --dry-run, --help)" >&2; exit 2 ;;
  esac
done
export OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export WORK=$(mktemp -d) REPORT=$OUT/report.md LOG=$OUT/run.log DRY
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_DISABLE_PIP_VERSION_CHECK=1
SCALE=$([[ $DRY == 1 ]] && echo 3 || echo 1)          # a shared CPU starts Python and torch slowly
BUDGET=${BUDGET:-$((450 * SCALE))}
T0=$SECONDS; passed=0; failed=0
: >"$REPORT"; : >"$LOG"
rm -f "$OUT"/{certify,memory}.jsonl "$OUT"/e2e_certify.tsv*        # a rerun starts afresh
say() { echo "$*" | tee -a "$LOG"; }

# --- Setup: a Python with randsmooth, its console scripts and nbdev on PATH -------------------
if [[ $DRY == 1 ]]; then
  export PY=${PYTHON:-.venv/bin/python}
  [[ -x $PY ]] || PY=python3
  export DEV=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  PATH=$(cd "$(dirname "$PY")" && pwd):$PATH
else
  export PY=${PYTHON:-python3} DEV=cuda
  SITE=${SITE:-/tmp/randsmooth-site}
  ls .whl/*.whl >/dev/null 2>&1 || { echo "run.sh: no wheels in .whl/: run tests/gpu/prepare_wheels.sh \
first and carry .whl" >&2; exit 2; }
  say "installing $(ls .whl/*.whl | wc -l) wheels and the project into $SITE (no index, no deps)"
  # One pip call: a second --target install would replace the first one's bin/ folder.
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .whl/*.whl . >>"$LOG" 2>&1 \
    || { tail -20 "$LOG"; echo "run.sh: install failed" >&2; exit 1; }
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
  PATH=$SITE/bin:$PATH
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "run.sh: torch sees no GPU (use --dry-run on a CPU)" >&2; exit 1; }
fi
export PATH
[[ $DEV == cuda ]] && gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  2>/dev/null | head -1) || gpu="none (dry run on the CPU)"
{
  echo "# randsmooth GPU checks$([[ $DRY == 1 ]] && echo ' (dry run: tiny sizes, CPU)')"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC');" \
       "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- GPU: ${gpu}"
  echo "- CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) cores"
  echo "- $("$PY" -c 'import platform as p, torch; print("Python", p.python_version(), "torch", torch.__version__)')"
  echo
} >>"$REPORT"

# step TITLE LIMIT FUNCTION [RESERVE]: run FUNCTION under `timeout`, its limit cut to what is left
# of the budget less RESERVE seconds (kept for the later steps); its stdout (Markdown) goes into
# the report and the log, its stderr into the log.
step() {
  local title=$1 limit=$(($2 * SCALE)) fn=$3 t=$SECONDS rc
  local left=$((BUDGET - (SECONDS - T0) - ${4:-0} * SCALE))
  (( limit > left )) && limit=$left
  echo "## $title" >>"$REPORT"; echo >>"$REPORT"
  say "=== $title (limit ${limit}s)"
  if (( limit < 5 )); then
    echo "**skipped**: the time budget (${BUDGET}s) is spent." >>"$REPORT"; echo >>"$REPORT"
    failed=$((failed + 1)); say "skipped: out of time"; return
  fi
  timeout -k 10 "$limit" bash -c "set -o pipefail; $fn" >"$WORK/step.md" 2>>"$LOG"
  rc=$?
  cat "$WORK/step.md" >>"$REPORT"; cat "$WORK/step.md" >>"$LOG"
  local took=$((SECONDS - t))
  if [[ $rc == 0 ]]; then passed=$((passed + 1)); echo -e "\n*passed in ${took}s*\n" >>"$REPORT"
  elif [[ $rc == 124 || $rc == 137 ]]; then failed=$((failed + 1))
    echo -e "\n**timed out after ${took}s** (figures above are those finished)\n" >>"$REPORT"
  else failed=$((failed + 1))
    echo -e "\n**FAILED (exit $rc) after ${took}s**: see run.log\n" >>"$REPORT"; fi
  say "=== $title: exit $rc after ${took}s"
}

# 1. The notebooks' cuda tests.
cuda_tests() {
  local nbs
  nbs=$(grep -l '"#| cuda' nbs/*.ipynb | xargs -n1 basename | sed 's/\.ipynb$//' | paste -sd'|')
  [[ -n $nbs ]] || { echo "No notebook has a \`#| cuda\` cell."; return 0; }
  echo "Notebooks with \`#| cuda\` cells: ${nbs//|/, }."; echo
  if [[ $DRY == 1 ]]; then
    "$PY" tests/gpu/cuda_cells.py nbs
  else
    nbdev_test --flags cuda --file_re "^($nbs)\.ipynb$" --n_workers 5 --timing >&2 \
      && echo "\`nbdev_test --flags cuda\` passed on these notebooks."
  fi
}
export -f cuda_tests

# 2. Certify throughput next to the forward floor; compiled modes last (they compile for a while).
BENCH=tests/bench/bench_certify_gpu.py
certify_plain() {
  if [[ $DRY == 1 ]]; then
    "$PY" $BENCH --device cpu --models resnet20 --n 200 --batch 100 --modes fp32 channels_last bf16 \
      --jsonl "$OUT/certify.jsonl"
  else
    "$PY" $BENCH --models resnet110 resnet50 --modes fp32 channels_last bf16 --jsonl "$OUT/certify.jsonl"
  fi
}
certify_compiled() {
  if [[ $DRY == 1 ]]; then echo "Skipped in the dry run: compiling takes a minute on a CPU."
  else "$PY" $BENCH --models resnet50 resnet110 --modes compile_bf16 --jsonl "$OUT/certify.jsonl"; fi
}
export -f certify_plain certify_compiled; export BENCH

# 3. Training-step throughput.
train_steps() {
  if [[ $DRY == 1 ]]; then
    "$PY" tests/bench/bench_train.py --device cpu --archs small_cnn --steps 2 --warmup 1 --repeats 1
  else
    "$PY" tests/bench/bench_train.py --device cuda --archs cifar_resnet110,resnet50 --steps 10 \
      --warmup 3 --repeats 2
  fi
}
export -f train_steps

# 4. The commands end to end, then one torchrun process (nccl on a GPU).
end_to_end() {
  local n=100000 max=50 epochs=3
  [[ $DRY == 1 ]] && { n=1000; max=5; epochs=1; }
  echo "\`rs_train digits small_cnn --sigma 0.25 --epochs $epochs --device $DEV --amp bf16\`, then"
  echo "\`rs_certify --N $n --max $max --skip 7 --device $DEV\`:"; echo
  rs_train digits small_cnn "$WORK/train" --sigma 0.25 --epochs $epochs --device $DEV --amp bf16 \
    --quiet >&2 || return 1
  tail -n 3 "$WORK/train/log.tsv" | sed 's/^/    /'; echo
  rs_certify digits "$WORK/train/checkpoint.pth.tar" 0.25 "$OUT/e2e_certify.tsv" --N $n --max $max \
    --skip 7 --device $DEV --quiet >&2 || return 1
  "$PY" - "$OUT/e2e_certify.tsv" <<'EOF' || return 1
import sys, pandas as pd
d = pd.read_csv(sys.argv[1], sep='\t')
assert len(d) > 0, 'rs_certify wrote no rows'
print(f"{len(d)} examples certified: {d['correct'].mean():.0%} certified correct, median radius "
      f"{d['radius'].median():.3f}, {pd.to_numeric(d['time'], errors='coerce').mean():.2f} s each\n")
EOF
  local backend=gloo; [[ $DEV == cuda ]] && backend=nccl
  echo "\`torchrun --nproc_per_node 1 rs_train ... --device $DEV\` ($backend):"; echo
  NCCL_DEBUG=INFO "$PY" -m torch.distributed.run --nproc_per_node 1 --no-python \
    rs_train digits small_cnn "$WORK/ddp" --sigma 0.25 --epochs 1 --device $DEV --amp bf16 --quiet \
    >"$WORK/ddp.out" 2>&1; local rc=$?
  cat "$WORK/ddp.out" >&2
  [[ $rc == 0 && -f $WORK/ddp/checkpoint.pth.tar ]] || { echo "torchrun run failed (exit $rc)"; return 1; }
  echo "finished with a checkpoint (with one process rs_train makes no process group)."; echo
  echo "The library's \`all_reduce_sum\` through a $backend group under the same launcher:"; echo
  NCCL_DEBUG=INFO "$PY" -m torch.distributed.run --nproc_per_node 1 tests/gpu/nccl_check.py \
    --device $DEV >"$WORK/nccl.out" 2>&1; rc=$?
  cat "$WORK/nccl.out" >&2
  grep -E '^(nccl|gloo) process group' "$WORK/nccl.out" | sed 's/^/    /'
  [[ $rc == 0 ]] || { echo "process-group check failed (exit $rc)"; return 1; }
  if [[ $backend == nccl ]]; then
    echo; echo "NCCL: $(grep -m1 -o 'NCCL version [^ ]*' "$WORK/nccl.out" || echo 'no version line seen')"
  fi
}
export -f end_to_end

# 5. Peak memory of certify at batch 1,000 and the largest batch that fits.
memory() {
  if [[ $DRY == 1 ]]; then
    "$PY" $BENCH --memory --device cpu --models resnet20 --modes bf16 --max_batch 2000 \
      --jsonl "$OUT/memory.jsonl"
  else
    "$PY" $BENCH --memory --models resnet110 resnet50 --modes fp32 bf16 --jsonl "$OUT/memory.jsonl"
  fi
}
export -f memory

# Limits sized for one H200 (total BUDGET = 450 s): steps 3-5 keep 140 s whatever 1-2 take.
step "1. CUDA tests of the notebooks" 100 cuda_tests 290
step "2a. Certify throughput next to the forward floor" 160 certify_plain 170
step "2b. Certify throughput with torch.compile (bf16, channels_last)" 90 certify_compiled 140
step "3. Training-step throughput" 45 train_steps 95
step "4. rs_train + rs_certify end to end, torchrun" 60 end_to_end 45
step "5. Peak memory of certify" 45 memory

echo "$passed passed, $failed failed (in $((SECONDS - T0))s)" | tee -a "$REPORT" "$LOG"
echo "report: $REPORT"
rm -rf "$WORK"
[[ $failed == 0 ]]
