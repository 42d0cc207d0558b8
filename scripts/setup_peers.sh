#!/usr/bin/env bash
# The peers' environment for scripts/bench_atari.py: CleanRL's own ppo_atari_envpool.py, run from
# CleanRL's released wheel (never copied into this repository), in a venv of its own (.venv-peers),
# because what it imports cannot live beside rlrun's pins:
#   - gym 0.23.1 (CleanRL's pin): the old step API, obs, reward, done, info = envs.step(a);
#   - envpool 0.8.4, the newest envpool with a Python 3.11 wheel whose env_type="gym" still speaks that
#     API when gym < 0.26 (envpool 1.x answers env_type="gym" with its gymnasium class, 5-tuple steps);
#   - numpy < 2: gym 0.23.1 and envpool 0.8.4 were built and written for numpy 1.x;
#   - torch==2.13.0, the same build as rlrun's venv, so both sides run the same kernels.
# cleanrl 1.2.0's wheel says Python < 3.11, so it is fetched for 3.10 without its dependencies and only
# unpacked; the script itself runs on 3.11 (distutils is still in 3.11's standard library).
# Usage: bash scripts/setup_peers.sh   (or `make peers`); ~1 minute, 1.3 GB (measured here).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${PEERS_VENV:-.venv-peers}
BIN=$VENV/bin

if [ ! -x "$BIN/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$BIN/python" -m pip install --quiet --upgrade pip
# torch first and exactly: any other spelling can pull a multi-GB CUDA build.
"$BIN/python" -m pip install --quiet torch==2.13.0
# gym 0.23.1 is a source release: build it with this venv's setuptools.
"$BIN/python" -m pip install --quiet "numpy==1.26.4" "setuptools<81" wheel
"$BIN/python" -m pip install --quiet --no-build-isolation "gym==0.23.1"
"$BIN/python" -m pip install --quiet "numpy==1.26.4" "envpool==0.8.4" "gymnasium==0.29.1" "tensorboard==2.21.0"

# CleanRL's release, unpacked (not installed: its metadata refuses Python 3.11 and pins old packages).
if [ ! -f "$VENV/cleanrl/cleanrl/ppo_atari_envpool.py" ]; then
    tmp=$(mktemp -d)
    "$BIN/python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.10 \
        -d "$tmp" cleanrl==1.2.0
    "$BIN/python" -m zipfile -e "$tmp"/cleanrl-1.2.0-*.whl "$VENV/cleanrl"
    rm -r "$tmp"
fi

# The check: CleanRL's script trains two updates of PPO on Pong (8 envs x 128 steps each) and prints SPS.
out=$(mktemp -d)
(cd "$out" && OMP_NUM_THREADS=1 "$OLDPWD/$BIN/python" "$OLDPWD/$VENV/cleanrl/cleanrl/ppo_atari_envpool.py" \
    --cuda False --track False --total-timesteps 2048 --seed 1) | tee "$out/log.txt" | tail -n 2
grep -q "^SPS:" "$out/log.txt" || { echo "setup_peers: CleanRL's ppo_atari_envpool.py did not run" >&2; exit 1; }
rm -r "$out"
echo "setup_peers: $VENV ready; CleanRL's script is $VENV/cleanrl/cleanrl/ppo_atari_envpool.py"
