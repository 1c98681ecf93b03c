#!/usr/bin/env bash
# GPU smoke run: the package on a CUDA device, in under 10 minutes, with nothing downloaded.
#   1. the tiny preset's main job on CUDA in fp32 and in bf16 (training, then a 128-prompt evaluation);
#   2. PPO throughput of a random GPT-2-124M-shaped policy at batch 64 and 8 (benchmarks/ppo_throughput.py);
#   3. the test suite's GPU tests (pytest -m gpu).
# Sharding (--fsdp) needs 2 or more processes, one GPU each (NCCL takes one process per GPU): on a machine with N >= 2
# GPUs, also run `torchrun --nproc_per_node N -m rlhf_demo.cli train --preset tiny --fsdp --output_dir OUT`.
# It writes RESULTS (default benchmarks/results/gpu-smoke-DEVICE.md; $OUT/gpu-smoke.md when $OUT is set) with the
# device's name, each part's wall time and what it printed.
#
# The machine needs Python with a CUDA build of torch, transformers, accelerate, peft, tokenizers and safetensors.
# Whatever else the package needs and the machine lacks (datasets, evaluate, vaderSentiment, alt-profanity-check, trl,
# gradio are not all on every GPU image) can travel as wheels in .whl/: on a machine with PyPI run
#   benchmarks/gpu_smoke.sh --download-wheels
# and carry .whl/ to the GPU machine with the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${1:-}" = "--download-wheels" ]; then
  mkdir -p .whl
  $PY -m pip download --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
    datasets dill multiprocess evaluate vaderSentiment alt-profanity-check trl pytest
  exit $?
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false GRADIO_ANALYTICS_ENABLED=False
if [ -d .whl ]; then $PY -m pip install -q --no-deps --no-index .whl/*.whl; fi
$PY -m pip install -q --no-deps --no-build-isolation -e . >/dev/null || { echo "cannot install the package"; exit 1; }
DEVICE=$($PY -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')")
if [ -n "${OUT:-}" ]; then RESULTS=$OUT/gpu-smoke.md; else
  RESULTS=benchmarks/results/gpu-smoke-$(echo "$DEVICE" | tr -c 'A-Za-z0-9\n' '-').md; fi
WORK=$(mktemp -d)
{
  echo "# GPU smoke run: $DEVICE"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $($PY -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
} > "$RESULTS"

part() {  # part TITLE COMMAND...: run it, append its wall time and the end of its output to RESULTS
  local title=$1; shift
  local t0=$SECONDS
  local log
  log=$("$@" 2>&1); local rc=$?
  { echo; echo "## $title"; echo; echo "exit $rc, $((SECONDS - t0)) s"; echo; echo '```'; echo "$log" | tail -n 15; echo '```'; } >> "$RESULTS"
  echo "$title: exit $rc, $((SECONDS - t0)) s"
}
for precision in no bf16; do
  part "tiny preset, main job, mixed_precision $precision" rlhf-demo train --preset tiny --output_dir "$WORK/tiny-$precision" \
    --mixed_precision "$precision" --eval_num_prompts 128 --progress_bar false
done
part "PPO throughput, random GPT-2-124M shape, fp32" $PY benchmarks/ppo_throughput.py "$WORK/throughput" --batch_sizes 64 8
part "PPO throughput, random GPT-2-124M shape, bf16" $PY benchmarks/ppo_throughput.py "$WORK/throughput-bf16" --batch_sizes 64 8 \
  --mixed_precision bf16
part "GPU tests" $PY -m pytest -q -m gpu tests/test_gpu.py
echo "results: $RESULTS"
cat "$RESULTS"
