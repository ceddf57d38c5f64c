#!/usr/bin/env bash
# Installs everything the test suite needs into ./.venv (idempotent), plus Debian's chromium for the
# report's browser test, its Fashion-MNIST files and Slurm (slurm-wlm, munge) for tests/slurm when we are root on
# a Debian-like machine. Called by the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the HTML report test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: chromium could not be installed; the browser test will skip"
  else
    echo "note: chromium is not installed and we are not root; the browser test will skip"
  fi
fi
# Fashion-MNIST, the second built-in dataset (root = "fashion-mnist"): Debian ships its four IDX files.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's dataset-fashion-mnist for the built-in Fashion-MNIST dataset"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "warning: dataset-fashion-mnist could not be installed; the tests that need it will skip"
  else
    echo "note: dataset-fashion-mnist is not installed and we are not root; the tests that need it will skip"
  fi
fi
# Slurm and munge for the real single-node cluster of tests/slurm (started by its fixture, as root only).
missing_slurm=""
for exe in munged slurmctld slurmd sbatch srun scontrol; do
  PATH="$PATH:/usr/sbin" command -v "$exe" >/dev/null 2>&1 || missing_slurm="$missing_slurm $exe"
done
if [ -n "$missing_slurm" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's slurm-wlm and munge for the Slurm tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null) \
      || echo "warning: slurm-wlm/munge could not be installed; the Slurm tests will skip"
  else
    echo "note: slurm-wlm/munge are not installed and we are not root; the Slurm tests will skip"
  fi
fi
