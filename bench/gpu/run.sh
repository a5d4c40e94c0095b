#!/usr/bin/env bash
# The GPU run, in one script (device tool: carry '.gpukit' and '.gl'; see
# BENCHMARKS.md "On a GPU"). From the repository root:
#   bash .gpukit/run.sh            on the GPU machine: bench suite, step profile and the
#                                  PyTorch peer; results in $OUT (default /tmp/gpu-out)
#   bash bench/gpu/run.sh --fetch-gl   here, once: download the Vulkan loader into .gl/
# Each part has its own timeout so one failure does not cost the others.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -d .gpukit ] || cd ..   # also works when started as bench/gpu/run.sh

if [ "${1:-}" = "--fetch-gl" ]; then
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  ls .gl
  exit
fi

OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/run.log"; }
log "gpu: $(nvidia-smi -L 2>&1 | head -1)"

# Vulkan loader and the NVIDIA ICD
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
log "vulkan loader: $(ldconfig -p | grep -c libvulkan.so.1) entries; ICD ${VK_DRIVER_FILES:-default}"

# Node 20 and dawn.node from the kit (compressed; python3 unpacks them)
if ! node --version 2>/dev/null | grep -q '^v2[0-9]'; then
  mkdir -p /tmp/node/bin
  python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.gpukit/node.xz'), open('/tmp/node/bin/node','wb'))"
  chmod +x /tmp/node/bin/node
  export PATH=/tmp/node/bin:$PATH
fi
dawn=.gpukit/node_modules/webgpu/dist/linux-x64/dawn.node
[ -f "$dawn" ] || python3 -c "import gzip,shutil; shutil.copyfileobj(gzip.open('$dawn.gz'), open('$dawn','wb'))"
log "node: $(node --version 2>&1)"

# the adapter Dawn finds (fails fast when Vulkan is not working)
(cd .gpukit && timeout 60 node --input-type=module -e "
  const { create, globals } = await import('webgpu'); Object.assign(globalThis, globals);
  const a = await create([]).requestAdapter({ powerPreference: 'high-performance' });
  console.log(a ? [a.info.vendor, a.info.architecture, a.info.description].join(' ') : 'NO ADAPTER'); process.exit(0);
") 2>&1 | tee "$OUT/adapter.txt"

log "bench suite"
timeout "${BENCH_TIMEOUT:-300}" node .gpukit/bench.mjs --json "$OUT/bench.json" >"$OUT/bench.txt" 2>&1; log "bench exit $?"
log "step profile"
timeout 90 node .gpukit/profile.mjs --depth 56 >"$OUT/profile56.txt" 2>&1; log "profile exit $?"
log "PyTorch peer"
for d in 20 56; do
  timeout 90 python3 .gpukit/torch_step.py --depth "$d" --batch 128 >"$OUT/torch-resnet$d.json" 2>"$OUT/torch-resnet$d.err"; log "torch resnet$d exit $?"
done
log "done"
