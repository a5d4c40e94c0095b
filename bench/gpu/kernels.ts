// The engine's GPU kernel family measured kernel by kernel (issue 19), for the GPU
// run (bench/gpu/run.sh bench) and here against lavapipe (--local, small sizes):
// matmul S³ and the ResNet conv layers (forward, grad input, grad weight), each on
//   old        the 64×64 tiled matmul / the 64-wide buffer conv kernels (on lavapipe:
//              whatever the planner picks without large tiles)
//   each large tile of kernels/gemmLarge.ts (128×128, double-buffered, 128×64, 64×128)
//   planner    what the planner picks on this adapter, untuned
//   autotuned  what kernels/autotune.ts picks after timing the candidates here
//   f16        the large tiles with f16 operands, f32 accumulation (shader-f16)
// with GFLOP/s and its share of the FMA peak measured here by bench/peak.ts's loops.
// Every kernel is checked first against the f32 'old' kernel's result (max relative
// difference printed; f16 against its own tolerance), so a wrong kernel cannot post a figure.
//
//   node --import tsx bench/gpu/kernels.ts [--local] [--size 4096] [--batches 128,1000]
//        [--json out.json] [--budget-s 120] [--dawn-flag f]
import { writeFileSync } from 'node:fs';
import { createDevice } from '../../gpu/device.ts';
import type { KernelPolicy } from '../../gpu/policy.ts';
import { type Tensor, empty, randn } from '../../engine/index.ts';
import { tuneConv, tuneMatmul } from '../../kernels/autotune.ts';
import { castToF16 } from '../../kernels/cast.ts';
import { conv2dForward, conv2dGradInput, conv2dGradWeight, gradWeightSplits } from '../../kernels/conv2d.ts';
import { conv2dForwardLarge, conv2dGradInputLarge, conv2dGradWeightLarge, convGemms } from '../../kernels/conv2dLarge.ts';
import type { ConvGeometry } from '../../kernels/convGeometry.ts';
import { planConv } from '../../kernels/convPlan.ts';
import { type GemmOperand, LARGE_TILES, TILE_128, tileName } from '../../kernels/gemmLarge.ts';
import { chooseConfig, configName, matmulKernel } from '../../kernels/matmul.ts';
import { matmulLarge } from '../../kernels/matmulLarge.ts';
import { matmulSubgroupMatrix, subgroupMatrixConfig, subgroupMatrixProblem } from '../../kernels/matmulSubgroupMatrix.ts';
import { FMA_VARIANTS, fmaCase } from '../peak.ts';
import { GpuTimer, engineRound } from '../timing.ts';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const LOCAL = argv.includes('--local');
const SIZE = Number(opt('--size') ?? (LOCAL ? 256 : 4096));
const BATCHES = (opt('--batches') ?? (LOCAL ? '8' : '128,1000')).split(',').map(Number);
const BUDGET_S = Number(opt('--budget-s') ?? (LOCAL ? 240 : 150));
const JSON_OUT = opt('--json');
const dawnFlags = argv.flatMap((a, i) => (argv[i - 1] === '--dawn-flag' ? [a] : []));
const T0 = performance.now();
const elapsed = (): number => (performance.now() - T0) / 1000;
const log = (s: string): void => console.log(`[${elapsed().toFixed(1)}s] ${s}`);

// exact timestamps (as bench/main.ts), and shader-f16 on NVIDIA's Vulkan driver
// (allow_unsafe_apis: subgroup matrices, where the adapter has them)
const device = await createDevice({ dawnFlags: ['disable-dawn-features=timestamp_quantization', 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia', ...dawnFlags] });
const timer = device.hasTimestampQuery ? new GpuTimer(device) : null;
const base: KernelPolicy = { ...device.policy, matmul: { ...device.policy.matmul, tuning: null }, conv: { ...device.policy.conv, tuning: null } };
device.policy = base;
log(`adapter: ${device.label} (${device.isSoftwareAdapter ? 'software' : 'GPU'}); shader-f16 ${device.hasShaderF16 ? 'yes' : 'no'}; subgroup matrices ${device.subgroupMatrixConfigs.map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`).join(', ') || 'none'}; timer ${timer ? 'timestamps' : 'wall clock'}`);

/** ms per repetition of `record`: the fastest of a few rounds, after a warm-up round that compiles. */
async function time(record: () => void): Promise<number> {
  const round = engineRound(device, timer, { record });
  await round(1);
  let reps = 1;
  let best = Infinity;
  for (let r = 0; r < 4; r++) {
    const { gpuMs, wallMs } = await round(reps);
    const ms = gpuMs ?? wallMs;
    best = Math.min(best, ms);
    reps = Math.max(1, Math.min(50, Math.round(50 / Math.max(ms, 0.01))));
  }
  return best;
}

// ------------------------------------------------------------------ peak
const invocations = device.isSoftwareAdapter ? 64 * 1024 : 1024 * 1024;
let peakGflops = 0;
for (const v of FMA_VARIANTS) {
  const c = fmaCase(device, v, device.isSoftwareAdapter ? 2e9 : 2e11, invocations);
  const ms = await time(c.record);
  peakGflops = Math.max(peakGflops, c.flops / ms / 1e6);
  c.dispose();
}
log(`FMA peak: ${peakGflops.toFixed(0)} GFLOP/s (f32)`);

interface Row {
  case: string;
  kernel: string;
  ms: number;
  gflops: number;
  ofPeak: number;
  maxRelDiff: number | null;
}
const rows: Row[] = [];
const report = (c: string, kernel: string, flops: number, ms: number, diff: number | null): void => {
  const gflops = flops / ms / 1e6;
  const row = { case: c, kernel, ms, gflops, ofPeak: gflops / peakGflops, maxRelDiff: diff };
  rows.push(row);
  log(`${c.padEnd(34)} ${kernel.padEnd(58)} ${ms.toFixed(3).padStart(9)} ms ${gflops.toFixed(0).padStart(7)} GFLOP/s ${(100 * row.ofPeak).toFixed(1).padStart(5)}%${diff === null ? '' : `  Δ ${diff.toExponential(1)}`}`);
};

async function maxRelDiff(a: Tensor, ref: Float32Array): Promise<number> {
  const got = await a.toArray();
  let scale = 0;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  let d = 0;
  for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(got[i]! - ref[i]!));
  return d / Math.max(scale, 1e-30);
}

function f16Of(t: Tensor): GemmOperand & { dispose(): void } {
  const pairs = empty(device, [Math.ceil(t.size / 2)]);
  castToF16(device, t, pairs.buffer);
  return { buffer: pairs.buffer, size: t.size, dispose: () => pairs.dispose() };
}

const withPolicy = async <T>(p: KernelPolicy, fn: () => Promise<T>): Promise<T> => {
  const saved = device.policy;
  device.policy = p;
  try {
    return await fn();
  } finally {
    device.policy = saved;
  }
};
const over = (): boolean => elapsed() > BUDGET_S;

// ------------------------------------------------------------------ matmul
{
  const S = SIZE;
  const o = { transA: false, transB: false, M: S, N: S, K: S, batch: 1, batchA: 1, batchB: 1 };
  const a = randn(device, [S, S], { seed: 1 });
  const b = randn(device, [S, S], { seed: 2 });
  const c = empty(device, [S, S]);
  const flops = 2 * S * S * S;
  const name = `matmul ${S}³`;
  const old = { kind: 'tiled' as const };
  await withPolicy({ ...base, matmul: { ...base.matmul, force: old } }, async () => report(name, `old: ${configName(old)}`, flops, await time(() => matmulKernel(device, a, b, c, o)), null));
  const ref = await c.toArray();
  for (const tile of LARGE_TILES) {
    if (over()) break;
    const cfg = { kind: 'large' as const, tile };
    const ms = await withPolicy({ ...base, matmul: { ...base.matmul, force: cfg } }, () => time(() => matmulKernel(device, a, b, c, o)));
    report(name, configName(cfg), flops, ms, await maxRelDiff(c, ref));
  }
  report(name, `planner: ${configName(chooseConfig(device, o))}`, flops, await time(() => matmulKernel(device, a, b, c, o)), await maxRelDiff(c, ref));
  if (!over()) {
    const [r] = await tuneMatmul(device, [o], (s) => empty(device, s), { write: false, budgetMs: 200 });
    report(name, `autotuned: ${configName(r!.best)}`, flops, await time(() => matmulKernel(device, a, b, c, o)), await maxRelDiff(c, ref));
    device.policy = base;
  }
  if (device.hasShaderF16) {
    const [ha, hb] = [f16Of(a), f16Of(b)];
    for (const tile of LARGE_TILES) {
      if (over()) break;
      const ms = await time(() => matmulLarge(device, ha, hb, c, o, tile, 'f16'));
      report(name, `f16 operands: ${tileName(tile)}`, flops, ms, await maxRelDiff(c, ref));
    }
    // the tensor cores (f16 operands, f32 result), where the device has subgroup matrices
    const why = subgroupMatrixProblem(device, S, S, S);
    if (why) log(`${name}: subgroup matrices skipped: ${why}`);
    else {
      try {
        const ms = await time(() => matmulSubgroupMatrix(device, ha, hb, c, S, S, S));
        report(name, `f16 subgroup matrices ${subgroupMatrixConfig(device)!.M}×${subgroupMatrixConfig(device)!.N}×${subgroupMatrixConfig(device)!.K}, 4×4 per subgroup`, flops, ms, await maxRelDiff(c, ref));
      } catch (e) {
        log(`${name}: subgroup matrices failed: ${(e as Error).message}`);
      }
    }
    ha.dispose();
    hb.dispose();
  }
  [a, b, c].forEach((t) => t.dispose());
}

// ------------------------------------------------------------------ conv
const conv3x3 = (batch: number, cin: number, cout: number, size: number, stride: number): ConvGeometry => ({
  batch, cin, cout, h: size, w: size, kh: 3, kw: 3, ho: size / stride, wo: size / stride, strideH: stride, strideW: stride, padH: 1, padW: 1,
});
const LAYERS: [string, (b: number) => ConvGeometry][] = [
  ['16→16 @32', (b) => conv3x3(b, 16, 16, 32, 1)],
  ['32→32 @16', (b) => conv3x3(b, 32, 32, 16, 1)],
  ['64→64 @8', (b) => conv3x3(b, 64, 64, 8, 1)],
  ['32→64 s2', (b) => conv3x3(b, 32, 64, 16, 2)],
];
for (const batch of BATCHES) {
  for (const [lname, geo] of LAYERS) {
    if (over()) break;
    const g = geo(batch);
    const x = randn(device, [g.batch, g.cin, g.h, g.w], { seed: 3 });
    const w = randn(device, [g.cout, g.cin, g.kh, g.kw], { seed: 4 });
    const dy = randn(device, [g.batch, g.cout, g.ho, g.wo], { seed: 5 });
    const y = empty(device, [g.batch, g.cout, g.ho, g.wo]);
    const dx = empty(device, [g.batch, g.cin, g.h, g.w]);
    const dw = empty(device, [g.cout, g.cin, g.kh, g.kw]);
    // the three parts do the same multiply-adds: one per (output pixel, tap, ci, co)
    const [M, N, K] = convGemms(g).forward as [number, number, number];
    const flops = (_p: 'forward' | 'gradInput' | 'gradWeight'): number => 2 * M * N * K;
    const parts = ['forward', 'gradInput', 'gradWeight'] as const;
    const out = { forward: y, gradInput: dx, gradWeight: dw };
    const runPart = (p: (typeof parts)[number], scratch: Tensor | undefined): (() => void) => {
      const plan = planConv(device, g);
      if (p === 'forward') return () => void conv2dForward(device, x, w, undefined, y, g, plan);
      if (p === 'gradInput') return () => conv2dGradInput(device, dy, w, dx, g, plan);
      return () => conv2dGradWeight(device, dy, x, dw, g, plan, scratch);
    };
    const measure = async (kernel: string, p: KernelPolicy, refs: Map<string, Float32Array> | null): Promise<void> => {
      await withPolicy(p, async () => {
        const splits = gradWeightSplits(g, device).splits;
        const scratch = splits > 1 ? empty(device, [splits * dw.size]) : undefined;
        for (const part of parts) {
          const ms = await time(runPart(part, scratch));
          const diff = refs ? await maxRelDiff(out[part], refs.get(part)!) : null;
          report(`conv ${lname} b${batch} ${part}`, kernel, flops(part), ms, diff);
        }
        scratch?.dispose();
      });
    };
    // old: the planner without large tiles (GPUs: the buffer path); its results are the references
    const oldPolicy: KernelPolicy = { ...base, conv: { ...base.conv, path: device.isSoftwareAdapter ? 'auto' : 'buffer' } };
    const refs = new Map<string, Float32Array>();
    await withPolicy(oldPolicy, async () => {
      const plan = planConv(device, g);
      await measure(`old: ${plan.forward}/${plan.gradInput}/${plan.gradWeight}`, oldPolicy, null);
      for (const part of parts) refs.set(part, await out[part].toArray());
    });
    for (const tile of LARGE_TILES) {
      if (over()) break;
      await measure(`large ${tileName(tile)}`, { ...base, conv: { ...base.conv, path: 'large', tile } }, refs);
    }
    {
      const plan = planConv(device, g);
      await measure(`planner: ${plan.forward}/${plan.gradInput}/${plan.gradWeight}`, base, refs);
    }
    if (!over()) {
      await tuneConv(device, [g], (s) => empty(device, s), { write: false, budgetMs: 150 });
      const tuned = device.policy;
      const plan = planConv(device, g);
      await measure(`autotuned: ${(['forward', 'gradInput', 'gradWeight'] as const).map((p) => plan.tiles?.[p] ? `${plan.tiles[p]!.bm}×${plan.tiles[p]!.bn}${plan.tiles[p]!.double ? 'db' : ''}` : plan[p]).join('/')}`, tuned, refs);
      device.policy = base;
    }
    if (device.hasShaderF16 && !over()) {
      const [hx, hw, hdy] = [f16Of(x), f16Of(w), f16Of(dy)];
      const { splits, chunk } = gradWeightSplits(g, { ...device, isSoftwareAdapter: false, policy: { ...base, conv: { ...base.conv, path: 'buffer' } } });
      const scratch = splits > 1 ? empty(device, [splits * dw.size]) : undefined;
      const t = TILE_128;
      report(`conv ${lname} b${batch} forward`, `f16 operands: ${tileName(t)}`, flops('forward'), await time(() => conv2dForwardLarge(device, hx, hw, undefined, y, g, t, 'f16')), await maxRelDiff(y, refs.get('forward')!));
      report(`conv ${lname} b${batch} gradInput`, `f16 operands: ${tileName(t)}`, flops('gradInput'), await time(() => conv2dGradInputLarge(device, hdy, hw, dx, g, t, 'f16')), await maxRelDiff(dx, refs.get('gradInput')!));
      // split-K partials are not summed here: the time is the GEMM's
      report(`conv ${lname} b${batch} gradWeight`, `f16 operands: ${tileName(t)} (${splits} splits, unsummed)`, flops('gradWeight'), await time(() => conv2dGradWeightLarge(device, hdy, hx, scratch ?? dw, g, t, splits, chunk, 'f16')), splits > 1 ? null : await maxRelDiff(dw, refs.get('gradWeight')!));
      [hx, hw, hdy].forEach((z) => z.dispose());
      scratch?.dispose();
    }
    [x, w, dy, y, dx, dw].forEach((t) => t.dispose());
  }
}

if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ adapter: device.label, software: device.isSoftwareAdapter, shaderF16: device.hasShaderF16, peakGflops, size: SIZE, batches: BATCHES, rows }, null, 1));
log(`done: ${rows.length} measurements${JSON_OUT ? `, ${JSON_OUT}` : ''}`);
timer?.destroy();
device.destroy();
