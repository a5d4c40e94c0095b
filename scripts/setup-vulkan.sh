#!/usr/bin/env bash
# Makes sure Dawn (npm `webgpu`) finds a Vulkan adapter on this machine.
# Where no usable adapter is found on Debian/Ubuntu, installs Mesa's software
# Vulkan driver (lavapipe). Dawn needs Mesa >= 24: Debian 12's stock 22.3 fails
# adapter creation (`shaderUniform*ArrayDynamicIndexing required`), so on
# bookworm it comes from bookworm-backports. Idempotent; as non-root it prints
# the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

probe() { node scripts/probe-adapter.mjs >/dev/null 2>&1; }

if [ ! -d node_modules/webgpu ]; then
  echo "setup-vulkan: node_modules/webgpu missing; run 'npm install' first" >&2
  exit 1
fi

if probe; then
  echo "setup-vulkan: a WebGPU adapter is available: $(node scripts/probe-adapter.mjs 2>/dev/null)"
  exit 0
fi

. /etc/os-release 2>/dev/null || true
codename="${VERSION_CODENAME:-}"
cmds=()
case "${ID:-}" in
  debian)
    if [ "$codename" = "bookworm" ]; then
      cmds+=("echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list")
      cmds+=("apt-get update -qq")
      cmds+=("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1")
    else
      cmds+=("apt-get update -qq")
      cmds+=("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1")
    fi ;;
  ubuntu)
    cmds+=("apt-get update -qq")
    cmds+=("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1") ;;
  *)
    echo "setup-vulkan: no WebGPU adapter found and this is not Debian/Ubuntu (${ID:-unknown})." >&2
    echo "Install your GPU's Vulkan driver, or Mesa's lavapipe (>= 24) for a CPU-only machine." >&2
    exit 1 ;;
esac

if [ "$(id -u)" != "0" ]; then
  echo "setup-vulkan: no WebGPU adapter found. As root, run:" >&2
  for c in "${cmds[@]}"; do echo "  $c" >&2; done
  exit 1
fi

echo "setup-vulkan: no WebGPU adapter found; installing Mesa's software Vulkan driver (lavapipe)"
for c in "${cmds[@]}"; do echo "+ $c"; bash -c "$c"; done

if probe; then
  echo "setup-vulkan: installed; adapter: $(node scripts/probe-adapter.mjs 2>/dev/null)"
else
  echo "setup-vulkan: installed Mesa, but Dawn still finds no adapter:" >&2
  node scripts/probe-adapter.mjs >&2 || true
  exit 1
fi
