#!/usr/bin/env bash
# Build the CUDA binary on this machine (no GPU needed) and pack it for a GPU machine:
#
#   bash scripts/gpu-pack.sh          # → .gpu/spectral-studio.xz (git-ignored)
#
# Then, on a machine with an NVIDIA GPU and driver (and CUDA 13's cuBLAS, cuRAND, NVRTC and
# runtime libraries: PyTorch's CUDA 13 wheels ship them), from the repository root with .gpu/
# beside it: `bash scripts/gpu-check.sh` (what it runs is written there).
#
# Why a packed binary: the GPU machines this project borrows have a driver and PyTorch but no Rust
# toolchain and no network, and what travels to them is limited to 64 MiB. The build is the
# README's (`scripts/cuda-env.sh`, then `cargo build --release --features cuda`), in its own
# target folder (target/cuda) so the CPU build is untouched; the binary is stripped and xz'd.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/cuda-env.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
start=$(date +%s)
cargo build --locked --release --features cuda --bin spectral-studio
echo "gpu-pack: built in $(( $(date +%s) - start )) s" >&2

mkdir -p .gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
strip -o .gpu/spectral-studio "$CARGO_TARGET_DIR/release/spectral-studio"
xz -T0 -6 -f .gpu/spectral-studio
git rev-parse HEAD > .gpu/commit
ls -l .gpu >&2
echo "gpu-pack: carry .gpu to the GPU machine and run: bash scripts/gpu-check.sh" >&2
