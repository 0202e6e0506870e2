#!/usr/bin/env bash
# The GPU check of issue 18, as one script that finishes inside 8 minutes on one NVIDIA GPU.
# Run from the repository root on the GPU machine, with .gpu/ from scripts/gpu-pack.sh beside it:
#
#   bash scripts/gpu-check.sh [OUTDIR]        # OUTDIR: $OUT, else /tmp/gpu-check
#
# It needs the NVIDIA driver, PyTorch with CUDA (python3; the machine's own), and CUDA 13's
# libraries (found in PyTorch's nvidia wheels, or on LD_LIBRARY_PATH). Steps, each with its own
# time limit so one hang cannot eat the rest, each writing into OUTDIR:
#   1. gpu.txt: the GPU, driver and libraries the binary resolves;
#   2. check-device.json: every network (the architecture table's and the trainers'), inference
#      and training, and the ops, on CUDA against the CPU kernels (the test suite's question of
#      a GPU: the binary cannot bring cargo's test harness, so `check-device` is it);
#   3. parity-<method>.json: `bench recon --suite parity` on CUDA (forward 1×3×482×512, one
#      training step on 8×3×64×64) for mscnn, basisnet and mstpp; and for mscnn
#      bench/pytorch_parity.py --device cuda, which also checks the CUDA output against PyTorch
#      and times PyTorch on the same GPU, alternating rounds;
#   4. train-cuda.json / train-cpu.json: basisnet trained on world scenes on the GPU, then briefly
#      on the machine's CPU cores, for samples/s on each.
# A step that fails is reported and the script goes on; the exit status is that of check-device.
# The limits add up to 470 s, so the whole script ends inside 8 minutes even if every step hangs.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$out"
log() { echo "gpu-check: $*" | tee -a "$out/gpu.txt" >&2; }

[ -f .gpu/spectral-studio.xz ] || { echo "gpu-check: .gpu/spectral-studio.xz missing: run scripts/gpu-pack.sh first (and carry .gpu)" >&2; exit 2; }
bin=/tmp/spectral-studio-cuda
xz -dc .gpu/spectral-studio.xz > "$bin" && chmod +x "$bin"

# CUDA 13's libraries: PyTorch's nvidia wheels (nvidia/cu13/lib), the driver's folder.
libs="$(python3 - <<'EOF' 2>/dev/null
import glob, os, sys
dirs = set()
for p in sys.path:
    for lib in glob.glob(os.path.join(p, "nvidia", "**", "libcublas.so.13"), recursive=True):
        dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
EOF
)"
for d in /usr/local/nvidia/lib64 /usr/local/cuda/lib64; do [ -d "$d" ] && libs="$libs:$d"; done
export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  echo "date: $(date -u +%FT%TZ); commit: $(cat .gpu/commit 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv 2>&1
  echo "cpu cores: $(nproc)"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$bin" | grep -E "cuda|cublas|curand|nvrtc|not found"
} >> "$out/gpu.txt" 2>&1
cat "$out/gpu.txt" >&2

step() { # name, seconds, command...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@"
  local rc=$?
  log "$name: exit $rc in $(( $(date +%s) - t0 )) s"
  return $rc
}

step "check-device" 90 "$bin" check-device --device cuda --json > "$out/check-device.json"
check=$?
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
for c in r["cases"]:
    print("ok " if c["ok"] else "BAD", c["name"], c["pass"], c["output_gap"], c["gradient_gap"], c["worst"], c["error"] or "")
print("failed:", r["failed"])' "$out/check-device.json" >&2 || true

for m in mscnn basisnet mstpp; do
  step "bench recon parity $m" 45 "$bin" bench recon --suite parity --model "models/$m.safetensors" --device cuda --repeats 10 --json > "$out/parity-$m.json"
done
step "pytorch parity mscnn (cuda)" 120 python3 bench/pytorch_parity.py --bin "$bin" --device cuda --rounds 3 --repeats 5 > "$out/pytorch-parity.json"

step "train basisnet on cuda" 80 "$bin" train --method basisnet --world 64 --size 64 --steps 300 --batch 16 --device cuda --out /tmp/gpu-train-cuda --json > "$out/train-cuda.json"
step "train basisnet on cpu" 45 "$bin" train --method basisnet --world 64 --size 64 --steps 20 --batch 16 --device cpu --out /tmp/gpu-train-cpu --json > "$out/train-cpu.json"
grep -h '"samples_per_s"' "$out"/train-*.json | tail -2 >&2 || true
exit $check
