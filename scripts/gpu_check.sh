#!/usr/bin/env bash
# The GPU profile, proven (issue 11, item 6): PPO, SAC, A3C and PPO on Pong from pixels with
# hardware=gpu against hardware=cpu on the same machine, SAC with algo.compile=true, and the sampler
# (issue 17: PPO on Pong and PPO with 64 MuJoCo envs, worker processes + algo.overlap=true), each for a
# short budget; a table of steps/s; finite results; the GPU runs' checkpoints kept in $OUT for
# scripts/gpu_check_load.py on a CPU-only machine. Under 6 minutes on a 16-core H100 (the per-run
# timeouts and --budget-seconds in scripts/gpu_check.py make sure of it).
#
#   scripts/gpu_check.sh                 # on a machine with CUDA; results in $OUT (or a temp dir)
#   scripts/gpu_check.sh --cpu-only      # rehearsal anywhere: hardware=cpu in both slots
#   scripts/gpu_check.sh --scale 0.1     # budgets x0.1 (any option of gpu_check.py passes through)
#
# A lent GPU machine has torch but no gymnasium, MuJoCo or Hydra and no network: those travel as
# wheels in .whl/ (ignored by git, carried by the device tool), installed here with --no-deps into
# /tmp/site when they do not import. GPU_CHECK_WHEELS names another wheel folder, PYTHON another
# interpreter (default python3, the one that holds torch there). The wheels for the lent machines'
# Python 3.12 (echo /.whl/ >> .git/info/exclude first), as the device README describes:
#   P="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64"
#   pip download --no-deps --only-binary=:all: $P -d .whl gymnasium==1.4.0 farama-notifications==0.0.6 \
#       mujoco==4.0.0 mujoco-core==4.0.0 glfw==2.11.0 pyopengl==3.1.10 hydra-core==1.3.8 omegaconf==2.3.1 \
#       ale-py==0.12.1
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # sdist only on PyPI; pure Python
# (mujoco-studio, the viewer, is left out: training never imports it, and it would need websockets.)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
OUT="${OUT:-$(mktemp -d /tmp/gpu_check_out.XXXXXX)}"
mkdir -p "$OUT"

if ! "$PY" -c "import gymnasium, mujoco, hydra, omegaconf" 2>/dev/null; then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "gpu_check: gymnasium/mujoco/hydra do not import with $PY and there are no wheels in $WHEELS" >&2
        exit 3
    fi
    SITE="${GPU_CHECK_SITE:-/tmp/site}"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || { echo "gpu_check: installing the wheels of $WHEELS failed" >&2; exit 3; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# The repository's src first: rlrun runs from this checkout, installed or not (its conf/ is found
# beside src/).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

"$PY" scripts/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
