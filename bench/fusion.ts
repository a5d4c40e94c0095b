// The fusions of issue 20 (policy.fusion) timed: a CIFAR ResNet's training step with
// every fusion off (unfusedPolicy: the kernels as they were) and on (the default),
// measured alternately on one device in one run, so a change in the machine's load
// hits both alike; PyTorch on the CPU (bench/torchPeer.ts) just before and after, and
// the load average before and after. Images/s from each round's wall time (one step,
// synced); the median of the rounds.
//
//   node --import tsx bench/fusion.ts [--steps 20x128,56x128] [--rounds 4] [--torch off]
import { loadavg } from 'node:os';
import { createDevice } from '../gpu/device.ts';
import { type KernelPolicy, defaultKernelPolicy, unfusedPolicy } from '../gpu/policy.ts';
import { resnetStep } from './resnetStep.ts';
import { findTorch, torchStep } from './torchPeer.ts';

const args = process.argv.slice(2);
const opt = (name: string, d: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : d);
const configs = opt('--steps', '20x128,56x128').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const rounds = Number(opt('--rounds', '4'));
const torchWanted = opt('--torch', 'cpu') !== 'off';
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const device = await createDevice();
console.log(`${device.label}\nload average before: ${load()}`);
const found = torchWanted ? findTorch('cpu') : { why: '--torch off' };
const torch = 'peer' in found ? found.peer : null;
console.log(torch ? `PyTorch ${torch.version} on the CPU, ${torch.threads} threads` : `PyTorch: skipped (${'why' in found ? found.why : ''})`);

for (const [depth, batch] of configs) {
  const sides: { name: string; policy: KernelPolicy; step: () => void; ips: number[] }[] = [];
  for (const [name, policy] of [['unfused', unfusedPolicy()], ['fused', defaultKernelPolicy()]] as const) {
    device.policy = policy;
    const { step } = resnetStep(device, depth, batch, { seed: 1 });
    sides.push({ name, policy, step, ips: [] });
  }
  const torchRuns: number[] = [];
  const runTorch = (): void => {
    if (torch) torchRuns.push(torchStep(torch, depth, batch, { warmup: 2, steps: 5 }).images_per_s_pipelined);
  };
  runTorch();
  // warm-up: pipelines compiled, pools filled (two steps each)
  for (const s of sides) {
    device.policy = s.policy;
    for (let i = 0; i < 2; i++) s.step();
    await device.sync();
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      device.policy = s.policy;
      const t0 = performance.now();
      s.step();
      await device.sync();
      s.ips.push(batch / ((performance.now() - t0) / 1000));
    }
  }
  runTorch();
  const [u, f] = sides.map((s) => median(s.ips)) as [number, number];
  const t = torchRuns.length ? torchRuns.reduce((a, b) => a + b) / torchRuns.length : null;
  console.log(`\nResNet-${depth}, batch ${batch}, ${rounds} alternating rounds (images/s per round):`);
  for (const s of sides) console.log(`  ${s.name.padEnd(8)} ${median(s.ips).toFixed(1).padStart(7)} images/s  [${s.ips.map((v) => v.toFixed(1)).join(', ')}]`);
  console.log(`  fused / unfused: ${(f / u).toFixed(3)}×`);
  if (t !== null) {
    console.log(`  PyTorch ${t.toFixed(1).padStart(7)} images/s  [${torchRuns.map((v) => v.toFixed(1)).join(', ')}] (before and after)`);
    console.log(`  vs PyTorch: unfused ${(u / t).toFixed(3)}×, fused ${(f / t).toFixed(3)}×`);
  }
  console.log(`  load average now: ${load()}`);
}
await device.close();
