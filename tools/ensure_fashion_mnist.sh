#!/usr/bin/env bash
# Make sure Fashion-MNIST (the Debian package dataset-fashion-mnist) is installed.
# As root it installs the package; otherwise it prints the command to run.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
else
  echo "Fashion-MNIST is missing. Install it with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" >&2
  exit 2
fi
