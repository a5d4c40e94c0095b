// Where a training step's GPU time goes, kernel by kernel: one warm-up step of a
// CIFAR ResNet, then one step with every dispatch timed in its own compute pass
// (Device.profile). Totals per kernel label, largest first.
//
//   node --import tsx bench/profile.ts [--depth 20] [--batch 128] [--top 25]
//          [--conv tm,tn] [--wgrad tm,cq,kr] [--wgrad-slots n]   (texture-path blocks, kernels/conv2dTexture.ts)
//          [--unfused]   (every fusion of the policy off: gpu/policy.ts unfusedPolicy)
//          [--winograd]  (the 3×3 stride-1 row kernels by Winograd's F(4,3): policy.conv.winograd)
//          [--without bnPrologue,...]  (production with these fusions off: gpu/policy.ts FusionPolicy)
//   node --import tsx bench/profile.ts --traffic [--depth 20,56] [--batch 128] [--unfused | --both]
//
// --traffic counts instead of timing: the bytes every kernel of one training step
// reads and writes (Device.countTraffic: each dispatch's bindings as its WGSL declares
// them, plus what the dispatch declares beyond that), per kernel family, for each
// depth; --both prints the unfused step, the production one (its fusions) and the one with
// every fusion on (allFusionsPolicy) side by side.
//
// Passes of their own add a little per dispatch, so the sum is a bit above the
// step's time in bench/main.ts; the shares are what this is for.
import { createDevice } from '../gpu/device.ts';
import { resnetStep } from './resnetStep.ts';
import { type KernelPolicy, allFusionsPolicy, defaultKernelPolicy, unfusedPolicy } from '../gpu/policy.ts';
import type { TrafficRow } from '../gpu/device.ts';


const args = process.argv.slice(2);
const arg = (name: string, d: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const depths = (args.includes('--depth') ? args[args.indexOf('--depth') + 1]! : args.includes('--traffic') ? '20,56' : '20').split(',').map(Number);
const depth = depths[0]!;
const batch = arg('--batch', 128);
const top = arg('--top', 25);
const list = (name: string): number[] | null => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]!.split(',').map(Number) : null;
};
// the texture path's blocks for experiments, as the device's kernel policy (gpu/policy.ts)
const unfused = args.includes('--unfused');
const policy = unfused ? unfusedPolicy() : defaultKernelPolicy();
const conv = list('--conv');
if (conv) [policy.conv.tm, policy.conv.tn] = conv as [number, number];
const wgrad = list('--wgrad');
if (wgrad) policy.conv.wgrad = { tm: wgrad[0]!, cq: wgrad[1]!, kr: wgrad[2]! };
policy.conv.wgradSlots = arg('--wgrad-slots', policy.conv.wgradSlots);
if (args.includes('--winograd')) policy.conv.winograd = true;
// --without a,b: production with these fusions off (policy.fusion's names)
for (const f of args.includes('--without') ? args[args.indexOf('--without') + 1]!.split(',') : []) {
  if (!(f in policy.fusion)) throw new Error(`--without: no fusion '${f}' (${Object.keys(policy.fusion).join(', ')})`);
  policy.fusion[f as keyof typeof policy.fusion] = false;
}


if (args.includes('--traffic')) {
  await traffic();
  process.exit(0);
}

/** The kernel family of a label: its name up to the first specialisation detail. */
function family(label: string): string {
  return label.replace(/\s*[([{].*$/, '').replace(/\s+\d.*$/, '');
}

async function traffic(): Promise<void> {
  const both = args.includes('--both');
  const policies: [string, KernelPolicy][] = both
    ? [['unfused', unfusedPolicy()], ['production', defaultKernelPolicy()], ['all fusions', allFusionsPolicy()]]
    : [[unfused ? 'unfused' : 'fused', policy]];
  const MB = (b: number): string => (b / 1e6).toFixed(1);
  for (const d of depths) {
    const results: { name: string; rows: TrafficRow[] }[] = [];
    let label = '';
    for (const [name, pol] of policies) {
      const device = await createDevice({ policy: pol });
      label = device.label;
      const s = resnetStep(device, d, batch);
      s.step(); // warm-up: the first step's one-off work (packed weights, statistics) is not a step's traffic
      await device.sync();
      results.push({ name, rows: await device.countTraffic(s.step) });
      s.dispose();
      await device.close();
    }
    console.log(`${label}\nResNet-${d}, batch ${batch}: bytes read + written by the kernels of one training step (MB = 10^6 bytes)\n`);
    const fams = new Map<string, number[]>();
    results.forEach((r, k) => {
      for (const row of r.rows) {
        const f = family(row.label);
        const e = fams.get(f) ?? new Array<number>(results.length * 2).fill(0);
        e[2 * k] += row.read + row.write;
        e[2 * k + 1] += row.count;
        fams.set(f, e);
      }
    });
    const cols = results.map((r) => `${`${r.name} MB`.padStart(12)} ${'calls'.padStart(6)}`).join(' ');
    console.log(`${'kernel family'.padEnd(44)} ${cols}`);
    for (const [f, e] of [...fams].sort((a, b) => b[1][b[1].length - 2]! - a[1][a[1].length - 2]!)) {
      console.log(`${f.slice(0, 44).padEnd(44)} ${results.map((_, k) => `${MB(e[2 * k]!).padStart(12)} ${String(e[2 * k + 1]).padStart(6)}`).join(' ')}`);
    }
    const totals = results.map((r) => ({
      read: r.rows.reduce((s, x) => s + x.read, 0),
      write: r.rows.reduce((s, x) => s + x.write, 0),
      calls: r.rows.reduce((s, x) => s + x.count, 0),
    }));
    console.log(`${'total'.padEnd(44)} ${totals.map((t) => `${MB(t.read + t.write).padStart(12)} ${String(t.calls).padStart(6)}`).join(' ')}`);
    for (const [k, t] of totals.entries()) console.log(`  ${results[k]!.name}: ${MB(t.read)} MB read, ${MB(t.write)} MB written, ${t.calls} dispatches and copies`);
    const [a, ...rest] = totals;
    rest.forEach((b, k) => {
      console.log(`  ${results[k + 1]!.name} vs unfused: ${(100 * ((b.read + b.write) / (a!.read + a!.write) - 1)).toFixed(1)}% bytes, ${b.calls - a!.calls} dispatches`);
    });
    console.log('');
  }
}

const device = await createDevice({ dawnFlags: ['disable-dawn-features=timestamp_quantization'], policy });
const { step, dispose } = resnetStep(device, depth, batch);
step();
await device.sync();
const rows = await device.profile(step);
const total = rows.reduce((s, r) => s + r.ms, 0);
// the same step unprofiled (median of 3, synced): the per-dispatch passes inflate some kernels
// (BENCHMARKS.md "Fusion": a few backward kernels read several times their own time), so the
// total can be well above the step's
const walls: number[] = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  step();
  await device.sync();
  walls.push(performance.now() - t0);
}
const wall = walls.sort((a, b) => a - b)[1]!;
console.log(`${device.label}\nResNet-${depth}, batch ${batch}: ${total.toFixed(0)} ms of kernel time in ${rows.reduce((s, r) => s + r.count, 0)} dispatches (the step unprofiled: ${wall.toFixed(0)} ms)\n`);
console.log(`${'kernel'.padEnd(52)} ${'ms'.padStart(8)} ${'share'.padStart(6)} ${'calls'.padStart(6)}`);
for (const r of rows.slice(0, top)) {
  console.log(`${r.label.slice(0, 52).padEnd(52)} ${r.ms.toFixed(1).padStart(8)} ${((100 * r.ms) / total).toFixed(1).padStart(5)}% ${String(r.count).padStart(6)}`);
}
dispose();
device.destroy();
