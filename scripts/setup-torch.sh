#!/usr/bin/env bash
# Makes sure a Python with PyTorch is present, for the PyTorch interop test
# (test/interop-torch.test.ts, which skips without one). Where neither
# /usr/bin/python3 nor python3 imports torch on Debian/Ubuntu, installs the
# distribution's python3-torch (CPU; on Debian 12 torch 1.13, about 250 MB of
# packages and 1 GB on disk on a minimal system; recommends such as
# build-essential are only for building C++ extensions, so they are left out).
# Idempotent; as non-root it prints the command instead of running it, and a
# system it cannot install on only gets a message: the test then skips.
set -euo pipefail

probe() {
  for py in /usr/bin/python3 python3; do
    if "$py" -c 'import torch' >/dev/null 2>&1; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

if py=$(probe); then
  echo "setup-torch: PyTorch is available: $py, torch $("$py" -c 'import torch; print(torch.__version__)')"
  exit 0
fi

. /etc/os-release 2>/dev/null || true
case "${ID:-}" in
  debian | ubuntu) ;;
  *)
    echo "setup-torch: no Python with torch, and this is not Debian/Ubuntu (${ID:-unknown}): the PyTorch interop test will skip." >&2
    exit 0 ;;
esac
cmds=("apt-get update -qq" "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch")

if [ "$(id -u)" != "0" ]; then
  echo "setup-torch: no Python with torch; the PyTorch interop test will skip. As root, run:" >&2
  for c in "${cmds[@]}"; do echo "  $c" >&2; done
  exit 0
fi

echo "setup-torch: no Python with torch; installing the distribution's python3-torch"
start=$SECONDS
for c in "${cmds[@]}"; do echo "+ $c"; bash -c "$c"; done
if py=$(probe); then
  echo "setup-torch: installed in $((SECONDS - start)) s: $py, torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  echo "setup-torch: installed python3-torch, but neither /usr/bin/python3 nor python3 imports torch" >&2
  exit 1
fi
