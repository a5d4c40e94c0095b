// PyTorch as a peer for the training-step figure: the same network (bench/torch_step.py,
// He et al.'s option-A CIFAR ResNet, SGD momentum) on the CPU beside lavapipe (what a
// user without a GPU would pick), or on the GPU beside a real adapter. Run as a child
// process; absent Python or torch, the figure is skipped with the reason.
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./torch_step.py', import.meta.url));

export interface TorchStep {
  peer: string;
  device: string;
  depth: number;
  batch: number;
  images_per_s: number;
  images_per_s_pipelined: number;
  ms_per_step_median: number;
}

export interface TorchPeer {
  python: string;
  version: string;
  device: 'cpu' | 'cuda';
  threads: number;
}

/** The first Python that imports torch (PATH's python3, then Debian's), or why there is none. */
export function findTorch(device: 'cpu' | 'cuda'): { peer: TorchPeer } | { why: string } {
  const tried: string[] = [];
  for (const python of ['python3', '/usr/bin/python3']) {
    try {
      const version = execFileSync(python, ['-c', `import torch; print(torch.__version__, torch.cuda.is_available())`], {
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 60_000,
      })
        .toString()
        .trim();
      const [v, cuda] = version.split(' ');
      if (device === 'cuda' && cuda !== 'True') {
        tried.push(`${python}: torch ${v} without CUDA`);
        continue;
      }
      return { peer: { python, version: v!, device, threads: os.availableParallelism() } };
    } catch {
      tried.push(`${python}: no torch`);
    }
  }
  return { why: `PyTorch not found (${tried.join('; ')}); Debian: apt-get install python3-torch` };
}

/** One step figure from PyTorch: `steps` timed steps after `warmup`, threads = cores on the CPU. */
export function torchStep(p: TorchPeer, depth: number, batch: number, o: { warmup: number; steps: number }): TorchStep {
  const args = [SCRIPT, '--device', p.device, '--depth', String(depth), '--batch', String(batch), '--warmup', String(o.warmup), '--steps', String(o.steps)];
  if (p.device === 'cpu') args.push('--threads', String(p.threads));
  const r = spawnSync(p.python, args, { encoding: 'utf8', timeout: 600_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || !line) throw new Error(`PyTorch step failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
  const out = JSON.parse(line) as TorchStep & { error?: string };
  if (out.error) throw new Error(`PyTorch step failed: ${out.error}`);
  return out;
}
