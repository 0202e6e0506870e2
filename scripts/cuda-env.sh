#!/usr/bin/env bash
# A CUDA toolkit from PyPI, for `cargo build --release --features cuda` on a machine with no
# system CUDA install (and no GPU: the build needs none).
#
#   eval "$(bash scripts/cuda-env.sh)"          # installs once, then prints the environment
#   cargo build --release --features cuda
#
# What it does:
# - installs NVIDIA's CUDA 13.0 wheels (nvcc with its cicc, crt and headers, CCCL's headers, the
#   runtime, NVRTC, cuBLAS, cuRAND) with pip, in one call (pip --target replaces a folder, it
#   does not merge), into $SPECTRAL_STUDIO_CUDA_DIR (default ~/.cache/spectral-studio/cuda-13.0);
#   the wheels lay out one CUDA tree under nvidia/cu13 (bin, include, lib, nvvm). Why 13.0, the
#   oldest CUDA 13: candle compiles its kernels to PTX, which the driver JIT-compiles only if it
#   is at least as new as the nvcc that wrote it, so PTX from 13.0 runs on every CUDA 13 driver
#   (580 and later);
# - adds what a link needs and the wheels lack: `lib64` (candle's kernel builder looks there),
#   unversioned `lib*.so` names, and a stub `lib/stubs/libcuda.so` (soname libcuda.so.1) built
#   from cuda.h's declarations, as the toolkit's own stubs are: the real driver library replaces
#   it at run time. candle links CUDA's libraries at build time (cudarc's dynamic-linking), so a
#   CUDA build starts only where the NVIDIA driver and these libraries are installed;
# - prints `export` lines: PATH (nvcc), CUDA_HOME/CUDA_PATH/CUDA_ROOT (cudarc and candle's kernel
#   builder find the toolkit there), LD_LIBRARY_PATH (the runtime libraries, for running the
#   binary), CUDA_COMPUTE_CAP (nvidia-smi's answer, else $CUDA_COMPUTE_CAP, else 80: PTX for
#   sm_80 runs on every later GPU, the H100 included) and CUDARC_CUDA_VERSION.
# Needs python3 with venv (Debian: python3-venv) and a C compiler; nothing else. Diagnostics go to
# stderr, the environment to stdout.
set -euo pipefail

CUDA_VERSION_PIN="13.0"
dir="${SPECTRAL_STUDIO_CUDA_DIR:-$HOME/.cache/spectral-studio/cuda-$CUDA_VERSION_PIN}"
root="$dir/pip/nvidia/cu13"

log() { echo "cuda-env: $*" >&2; }

if [ ! -x "$root/bin/nvcc" ] || [ ! -d "$root/include/cccl" ] || [ ! -f "$root/lib/stubs/libcuda.so" ]; then
  command -v python3 >/dev/null || { log "python3 is missing (Debian: apt-get install python3 python3-venv)"; exit 1; }
  command -v cc >/dev/null || { log "a C compiler is missing (Debian: apt-get install build-essential)"; exit 1; }
  mkdir -p "$dir"
  if [ ! -x "$dir/venv/bin/pip" ]; then
    python3 -m venv "$dir/venv" >&2 || { log "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
  fi
  log "installing the CUDA $CUDA_VERSION_PIN wheels into $dir/pip (about 1.2 GB)"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check --upgrade --target "$dir/pip" \
    "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88" \
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-nvrtc==13.0.88" "nvidia-cuda-cccl==13.0.85" \
    "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35" >&2
  [ -x "$root/bin/nvcc" ] || { log "the wheels installed no $root/bin/nvcc"; exit 1; }

  ln -sfn lib "$root/lib64"
  for versioned in "$root"/lib/lib*.so.*; do
    name="$(basename "$versioned")"
    ln -sfn "$name" "$root/lib/${name%%.so.*}.so"
  done

  # The driver API stub: every cu* function cuda.h declares (after its _v2 macros), as a symbol.
  mkdir -p "$root/lib/stubs"
  stub="$(mktemp -d)"
  cc -E -P -I"$root/include" -x c "$root/include/cuda.h" \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | sed -E 's/[[:space:]]*\($//' | sort -u \
    | awk '{print "void " $1 "(void) {}"}' > "$stub/libcuda_stub.c"
  count=$(wc -l < "$stub/libcuda_stub.c")
  [ "$count" -gt 100 ] || { log "found only $count driver functions in cuda.h"; exit 1; }
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$stub/libcuda_stub.c"
  rm -rf "$stub"
  log "stub libcuda.so with $count driver functions"
fi

cap="${CUDA_COMPUTE_CAP:-}"
if [ -z "$cap" ] && command -v nvidia-smi >/dev/null; then
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ' || true)"
fi
cap="${cap:-80}"

version="$("$root/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\),.*/\1 \2/p')"
read -r major minor <<< "$version"
log "nvcc $major.$minor at $root/bin; compute capability $cap"

cat <<EOF
export CUDA_HOME="$root"
export CUDA_PATH="$root"
export CUDA_ROOT="$root"
export PATH="$root/bin:\$PATH"
export LD_LIBRARY_PATH="$root/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="$cap"
export CUDARC_CUDA_VERSION="${major}0${minor}0"
EOF
