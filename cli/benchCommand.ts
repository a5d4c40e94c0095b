// `bench`: the benchmark suite (bench/main.ts) or the per-kernel profile of a
// training step (bench/profile.ts), run as a child process so the bench owns its
// device and Dawn flags. Figures and how to read them: BENCHMARKS.md.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const USAGE = `usage: npm start -- bench [flags]
       npm start -- bench --profile [--depth 20] [--batch 128] [--top 25]
       npm start -- bench --plan [--batch 128]

Kernel microbenchmarks and the ResNet training step, ours and TensorFlow.js's WebGPU
backend side by side on the same adapter, each figure also a fraction of the adapter's
measured FMA and copy peaks (see BENCHMARKS.md).

flags:
  --quick              fewer shapes and rounds (about 30 s on lavapipe)
  --json FILE          also write the results as JSON
  --compare OLD [NEW]  compare with an earlier JSON (and, given NEW, compare two files without running)
  --threshold F        regression threshold for --compare (default 0.25)
  --only TEXT          only the cases and steps whose id or label contains TEXT (e.g. 'conv dX', 'step/resnet20')
  --no-peer            skip TensorFlow.js
  --no-step            skip the training steps
  --rounds N           timed rounds per case
  --tune               time the matmul kernels first and keep the fastest per shape class (.cache/kernel-tuning.json)
  --dawn-flag FLAG     extra dawn.node flag (repeatable)
  --steps LIST         the ResNet depths × batches to time instead of the defaults (e.g. 20x128,56x1000; no TF.js step)
  --pipeline N         also time N steps back to back with one sync (what a training loop gets)
  --torch MODE         PyTorch running the same network just before and after our step: auto (CPU beside a
                       software adapter, CUDA beside a GPU), cpu, cuda or off; skipped where no Python imports torch
  --profile            instead: GPU time per kernel of one ResNet training step
  --plan               instead: which kernel runs each ResNet layer on this adapter (the planners' choice)
  --help               this text`;

export async function benchCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const profile = argv.includes('--profile');
  const plan = argv.includes('--plan');
  const script = fileURLToPath(new URL(plan ? '../bench/plan.ts' : profile ? '../bench/profile.ts' : '../bench/main.ts', import.meta.url));
  const args = argv.filter((a) => a !== '--profile' && a !== '--plan');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 130 : 1)));
  });
}
