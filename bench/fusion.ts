// The fusions of issue 20 (policy.fusion) timed: a CIFAR ResNet's training step with
// every fusion off (unfusedPolicy: the kernels as they were) and with production's (the default),
// measured alternately on one device in one run, so a change in the machine's load
// hits both alike; PyTorch on the CPU (bench/torchPeer.ts) just before and after, and
// the load average before and after. Images/s from each round's wall time (one step,
// synced); the median of the rounds. Beside it images per CPU-second of the process: on
// lavapipe the kernels run on the process's own threads, so that figure is the work and
// moves far less than wall time when other jobs share the machine.
// --variants picks the sides: `unfused`; `fused`, production's fusions (defaultKernelPolicy;
// bnBackward off since 2026-12-06); `all`, every fusion (allFusionsPolicy); or either of the
// last two followed by -NAME-NAME, those fusions off (all-bnBackward is today's `fused`);
// default unfused,fused. A variant may end in :KEY=N+KEY=N, numeric fields of policy.conv set (0 = false)
// (fused:wgradSliceBytes=262144: the texture weight gradients' split-K slices sized as before 2026-12-07).
//
// PyTorch runs --torch-runs times (default 2: before and after our rounds; more are spread evenly
// between them, since its rate moves 2x on this shared machine); the ratio is to their median.
//
//   node --import tsx bench/fusion.ts [--steps 20x128,56x128] [--rounds 4] [--torch off] [--torch-runs 2] [--variants all,fused,unfused]
import { loadavg } from 'node:os';
import { createDevice } from '../gpu/device.ts';
import { type FusionPolicy, type KernelPolicy, allFusionsPolicy, defaultKernelPolicy, unfusedPolicy } from '../gpu/policy.ts';
import { resnetStep } from './resnetStep.ts';
import { findTorch, torchStep } from './torchPeer.ts';

const args = process.argv.slice(2);
const opt = (name: string, d: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : d);
const configs = opt('--steps', '20x128,56x128').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const rounds = Number(opt('--rounds', '4'));
const torchWanted = opt('--torch', 'cpu') !== 'off';
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const variants = opt('--variants', 'unfused,fused').split(',');
// at most one PyTorch run between two rounds (more would fall on the same gap)
const torchRunsWanted = Math.min(rounds + 1, Math.max(2, Number(opt('--torch-runs', '2'))));
function policyOf(name: string): KernelPolicy {
  const [fusions, convFields, ...rest] = name.split(':') as [string, string | undefined, ...string[]];
  if (rest.length) throw new Error(`--variants: '${name}' has more than one ':'`);
  const p = fusionsOf(fusions);
  for (const kv of convFields ? convFields.split('+') : []) {
    const [k, v] = kv.split('=') as [string, string | undefined];
    const current: unknown = Object.hasOwn(p.conv, k) ? (p.conv as unknown as Record<string, unknown>)[k] : undefined;
    if (typeof current !== 'number' && typeof current !== 'boolean') throw new Error(`--variants: policy.conv has no numeric or boolean field '${k}'`);
    if (v === undefined || !Number.isFinite(Number(v))) throw new Error(`--variants: '${kv}' is not KEY=NUMBER`);
    Object.assign(p.conv, { [k]: typeof current === 'boolean' ? Number(v) !== 0 : Number(v) });
  }
  return p;
}
function fusionsOf(name: string): KernelPolicy {
  if (name === 'unfused') return unfusedPolicy();
  const [head, ...off] = name.split('-');
  if (head !== 'fused' && head !== 'all') throw new Error(`--variants: '${name}' is not unfused, fused[-NAME-...] or all[-NAME-...]`);
  const p = head === 'all' ? allFusionsPolicy() : defaultKernelPolicy();
  for (const f of off) {
    if (!(f in p.fusion)) throw new Error(`--variants: no fusion '${f}' (${Object.keys(p.fusion).join(', ')})`);
    p.fusion = { ...p.fusion, [f as keyof FusionPolicy]: false };
  }
  return p;
}

const device = await createDevice();
console.log(`${device.label}\nload average before: ${load()}`);
const found = torchWanted ? findTorch('cpu') : { why: '--torch off' };
const torch = 'peer' in found ? found.peer : null;
console.log(torch ? `PyTorch ${torch.version} on the CPU, ${torch.threads} threads` : `PyTorch: skipped (${'why' in found ? found.why : ''})`);

for (const [depth, batch] of configs) {
  const sides: { name: string; policy: KernelPolicy; step: () => void; ips: number[]; cpu: number[] }[] = [];
  for (const name of variants) {
    const policy = policyOf(name);
    device.policy = policy;
    const { step } = resnetStep(device, depth, batch, { seed: 1 });
    sides.push({ name, policy, step, ips: [], cpu: [] });
  }
  const torchRuns: number[] = [];
  const runTorch = (): void => {
    if (torch) torchRuns.push(torchStep(torch, depth, batch, { warmup: 2, steps: 5 }).images_per_s_pipelined);
  };
  // PyTorch's runs spread over ours: before the rounds, after them, and evenly between (--torch-runs)
  const torchAfter = new Set(Array.from({ length: Math.max(0, torchRunsWanted - 2) }, (_, i) => Math.round(((i + 1) * rounds) / (torchRunsWanted - 1)) - 1));
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
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      s.step();
      await device.sync();
      s.ips.push(batch / ((performance.now() - t0) / 1000));
      const c = process.cpuUsage(c0);
      s.cpu.push(batch / ((c.user + c.system) / 1e6));
    }
    if (torchAfter.has(r) && r < rounds - 1) runTorch();
  }
  runTorch();
  const t = torchRuns.length ? median(torchRuns) : null;
  console.log(`\nResNet-${depth}, batch ${batch}, ${rounds} alternating rounds (images/s per round; images per CPU-second, median):`);
  const width = Math.max(8, ...sides.map((s) => s.name.length));
  for (const s of sides) {
    console.log(`  ${s.name.padEnd(width)} ${median(s.ips).toFixed(1).padStart(7)} images/s  [${s.ips.map((v) => v.toFixed(1)).join(', ')}]  ${median(s.cpu).toFixed(1)} images/CPU-s`);
  }
  const first = sides[0]!;
  for (const s of sides.slice(1)) {
    console.log(`  ${s.name} / ${first.name}: ${(median(s.ips) / median(first.ips)).toFixed(3)}× wall, ${(median(s.cpu) / median(first.cpu)).toFixed(3)}× CPU`);
  }
  if (t !== null) {
    console.log(`  PyTorch ${t.toFixed(1).padStart(7)} images/s  [${torchRuns.map((v) => v.toFixed(1)).join(', ')}] (${torchRuns.length} runs spread over ours; the median)`);
    console.log(`  vs PyTorch: ${sides.map((s) => `${s.name} ${(median(s.ips) / t).toFixed(3)}×`).join(', ')}`);
  }
  console.log(`  load average now: ${load()}`);
}
await device.close();
