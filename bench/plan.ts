// Which kernels this adapter runs for each distinct layer of a CIFAR ResNet: the conv
// planner's choice (kernels/convPlan.ts) for the forward and both gradients, what is
// kept packed and the weight gradient's split-K; batchnorm's layouts (planBatchNorm);
// the classifier's matmuls (kernels/matmul.ts chooseConfig). No GPU work: the planners read the adapter's profile.
// --discrete: a discrete GPU's profile instead of this adapter (subgroups of 32, no
// software rasteriser, default policy): which layers get the large tiles (kernels/gemmLarge.ts).
//
//   node --import tsx bench/plan.ts [--batch 128] [--discrete]       (npm start -- bench --plan)
import { type AdapterProfile, createDevice } from '../gpu/device.ts';
import { defaultKernelPolicy } from '../gpu/policy.ts';
import { tileName } from '../kernels/gemmLarge.ts';
import type { ConvGeometry } from '../kernels/convGeometry.ts';
import { planConv } from '../kernels/convPlan.ts';
import { chooseConfig, configName } from '../kernels/matmul.ts';
import { planBatchNorm } from '../kernels/batchnorm.ts';

const args = process.argv.slice(2);
const i = args.indexOf('--batch');
const batch = i >= 0 ? Number(args[i + 1]) : 128;
if (!Number.isInteger(batch) || batch < 1) throw new Error(`--batch: a positive integer, got ${args[i + 1]}`);

const DISCRETE = args.includes('--discrete');
const discreteLimits = { maxTextureDimension2D: 16384, maxTextureArrayLayers: 2048, maxComputeWorkgroupsPerDimension: 65535 } as GPUSupportedLimits;
const device: AdapterProfile & { label: string; destroy(): void } = DISCRETE
  ? { isSoftwareAdapter: false, hasSubgroups: true, subgroupSize: 32, limits: discreteLimits, policy: defaultKernelPolicy(), label: 'a discrete GPU profile (subgroups of 32)', destroy: () => {} }
  : await createDevice();
const conv3x3 = (cin: number, cout: number, size: number, stride: number): ConvGeometry => ({
  batch, cin, cout, h: size, w: size, kh: 3, kw: 3, ho: size / stride, wo: size / stride, strideH: stride, strideW: stride, padH: 1, padW: 1,
});
// every distinct conv of ResNet-20/32/44/56/110 (option-A shortcuts have none)
const layers: [string, ConvGeometry][] = [
  ['stem 3→16, 32×32', conv3x3(3, 16, 32, 1)],
  ['stage 1 16→16, 32×32', conv3x3(16, 16, 32, 1)],
  ['stage 2 entry 16→32, stride 2', conv3x3(16, 32, 32, 2)],
  ['stage 2 32→32, 16×16', conv3x3(32, 32, 16, 1)],
  ['stage 3 entry 32→64, stride 2', conv3x3(32, 64, 16, 2)],
  ['stage 3 64→64, 8×8', conv3x3(64, 64, 8, 1)],
];
console.log(`adapter: ${device.label} (${device.isSoftwareAdapter ? 'software' : 'GPU'}; subgroups ${device.subgroupSize || (device.hasSubgroups ? 'of several sizes' : 'none')})`);
const kernelOf = (k: string, t: { bm: number; bn: number; double: boolean } | undefined): string => (k === 'large' && t ? `${t.bm}×${t.bn}${t.double ? ' db' : ''}` : k);
console.log(`CIFAR ResNet layers at batch ${batch}:\n`);
const w = Math.max(...layers.map(([n]) => n.length));
console.log(`${'conv layer'.padEnd(w)}  forward  grad input  grad weight  split-K  packed X kept  dY packed once  fusions the plan allows (policy.fusion)`);
// the fusions the plan lets this layer take (issue 20; gpu/policy.ts FusionPolicy)
const fusions = (p: ReturnType<typeof planConv>): string =>
  [
    p.forwardStatistics && 'bn statistics',
    p.inputPrologue && 'bn + relu prologue',
    p.gradInputAccumulates && 'add into',
    p.gradInputBatchNorm && 'bn backward',
    (p.keepsRawInput || p.sharesRawGradOutput) && 'shared raw copies',
  ]
    .filter((f) => f)
    .join(', ') || 'none';
for (const [name, g] of layers) {
  const p = planConv(device, g);
  const [f, gi, gw] = [kernelOf(p.forward, p.tiles?.forward), kernelOf(p.gradInput, p.tiles?.gradInput), kernelOf(p.gradWeight, p.tiles?.gradWeight)];
  console.log(
    `${name.padEnd(w)}  ${f.padEnd(7)}  ${gi.padEnd(10)}  ${gw.padEnd(11)}  ${String(p.gradWeightSplits).padStart(7)}  ${(p.keepsPackedInput ? 'yes' : 'no').padEnd(13)}  ${(p.sharesPackedGradOutput ? 'yes' : 'no').padEnd(14)}  ${fusions(p)}`,
  );
}
console.log('(large tiles: kernels/gemmLarge.ts; 128×128 = ' + tileName({ bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, double: false }) + ')');
console.log('');
for (const [c, side] of [[16, 32], [32, 16], [64, 8]] as const) {
  const p = planBatchNorm(device, { batch, channels: c, plane: side * side });
  console.log(`batchnorm ${c} channels, ${side}×${side}: reductions by ${p.reduction === 'subgroup' ? 'one 8-lane subgroup per workgroup' : '64-lane trees'}, elementwise ${p.elementwise === 'by-channel' ? 'by channel over runs of images' : 'by planes'}${p.vec4 ? ', vec4' : ''}${p.rawGradInput ? '; grad input can store a raw dY (rawGrad)' : ''}`);
}
const fc = { transA: false, transB: true, batchA: 1, batchB: 1, batch: 1, M: batch, N: 10, K: 64 };
console.log(`\nclassifier ${batch}×64 · (10×64)ᵀ: ${configName(chooseConfig(device, fc))}`);
console.log(`its weight gradient (${batch}×10)ᵀ · ${batch}×64: ${configName(chooseConfig(device, { ...fc, transA: true, transB: false, M: 10, N: 64, K: batch }))}`);
for (const n of [1024, 4096]) console.log(`matmul ${n}³: ${configName(chooseConfig(device, { ...fc, transB: false, M: n, N: n, K: n }))}`);
device.destroy();
