// Which kernel the planners pick (kernels/convPlan.ts; batchnorm's planBatchNorm and
// matmul's chooseConfig) for every distinct layer of the CIFAR ResNets (ResNet-20 and -56 share their layer shapes: a 3→16 stem,
// 3×3 convs of 16, 32, 64 channels, two stride-2 stage entries; option-A shortcuts have
// no conv) at the training batch of 128, on a software adapter's profile (lavapipe:
// subgroups of 8) and on a discrete GPU's (subgroups of 32), without either adapter.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { AdapterProfile } from '../gpu/device.ts';
import { defaultKernelPolicy } from '../gpu/policy.ts';
import type { ConvGeometry } from '../kernels/convGeometry.ts';
import { planConv } from '../kernels/convPlan.ts';
import { gradWeightSplits } from '../kernels/conv2d.ts';
import { gradWeightSlicesTexture } from '../kernels/conv2dTexture.ts';
import { planBatchNorm } from '../kernels/batchnorm.ts';
import { chooseConfig } from '../kernels/matmul.ts';

const limits = { maxTextureDimension2D: 16384, maxTextureArrayLayers: 2048, maxComputeWorkgroupsPerDimension: 65535 } as GPUSupportedLimits;
const software: AdapterProfile = { isSoftwareAdapter: true, hasSubgroups: true, subgroupSize: 8, limits, policy: defaultKernelPolicy() };
const discrete: AdapterProfile = { isSoftwareAdapter: false, hasSubgroups: true, subgroupSize: 32, limits, policy: defaultKernelPolicy() };

const conv3x3 = (cin: number, cout: number, size: number, stride: number): ConvGeometry => ({
  batch: 128, cin, cout, h: size, w: size, kh: 3, kw: 3, ho: size / stride, wo: size / stride,
  strideH: stride, strideW: stride, padH: 1, padW: 1,
});
const RESNET_LAYERS: Record<string, ConvGeometry> = {
  'stem 3→16 @32': conv3x3(3, 16, 32, 1),
  'stage 1 16→16 @32': conv3x3(16, 16, 32, 1),
  'stage 2 entry 16→32 s2': conv3x3(16, 32, 32, 2),
  'stage 2 32→32 @16': conv3x3(32, 32, 16, 1),
  'stage 3 entry 32→64 s2': conv3x3(32, 64, 16, 2),
  'stage 3 64→64 @8': conv3x3(64, 64, 8, 1),
};

it('on a software adapter every ResNet conv runs the row kernels, forward and both gradients, nothing kept packed', () => {
  for (const [name, g] of Object.entries(RESNET_LAYERS)) {
    const p = planConv(software, g);
    assert.deepEqual([p.forward, p.gradInput, p.gradWeight], ['rows', 'rows', 'rows'], name);
    assert.equal(p.keepsPackedInput, false, name);
    assert.equal(p.sharesPackedGradOutput, false, name);
  }
});

it('on a discrete GPU every ResNet conv runs the buffer kernels, with split-K weight gradients', () => {
  for (const [name, g] of Object.entries(RESNET_LAYERS)) {
    const p = planConv(discrete, g);
    assert.deepEqual([p.forward, p.gradInput, p.gradWeight], ['buffer', 'buffer', 'buffer'], name);
    assert.equal(p.keepsPackedInput, false, name);
    assert.ok(p.gradWeightSplits > 1, `${name}: the batch's ${g.batch * g.ho * g.wo} pixels are split`);
    assert.equal(p.gradWeightSplits, gradWeightSplits(g, discrete).splits, name);
  }
});

it('the policy decides with the adapter: rows off gives the repacked texture kernels (X kept packed, dY packed once); a forced buffer path; a discrete GPU never takes the texture path unforced', () => {
  const noRows = { ...software, policy: { ...software.policy, conv: { ...software.policy.conv, rows: false } } };
  const buffer = { ...software, policy: { ...software.policy, conv: { ...software.policy.conv, path: 'buffer' as const } } };
  for (const [name, g] of Object.entries(RESNET_LAYERS)) {
    const p = planConv(noRows, g);
    assert.deepEqual([p.forward, p.gradInput, p.gradWeight, p.keepsPackedInput, p.sharesPackedGradOutput], ['texture', 'texture', 'texture', true, true], name);
    assert.equal(planConv(buffer, g).forward, 'buffer', name);
  }
  // subgroups of 8 on a GPU (not software): the texture path only when forced
  const gpu8 = { ...discrete, subgroupSize: 8 };
  const g = RESNET_LAYERS['stage 1 16→16 @32']!;
  assert.equal(planConv(gpu8, g).forward, 'buffer');
  assert.equal(planConv({ ...gpu8, policy: { ...gpu8.policy, conv: { ...gpu8.policy.conv, path: 'texture' } } }, g).forward, 'rows');
});

it('geometries the row kernels decline fall back where they should: a 5×5 conv and an odd width take the repacked kernels on a software adapter', () => {
  const g5: ConvGeometry = { ...conv3x3(8, 8, 16, 1), kh: 5, kw: 5, padH: 2, padW: 2 };
  assert.deepEqual(Object.values(planConv(software, g5)).slice(0, 3), ['texture', 'texture', 'texture']);
  const odd: ConvGeometry = { ...conv3x3(8, 8, 15, 1), w: 15, wo: 15, h: 15, ho: 15 };
  assert.equal(planConv(software, odd).forward, 'texture');
});

// batchnorm after every conv: 16, 32, 64 channels over 32², 16², 8² planes
const BN_LAYERS = [
  { batch: 128, channels: 16, plane: 32 * 32 },
  { batch: 128, channels: 32, plane: 16 * 16 },
  { batch: 128, channels: 64, plane: 8 * 8 },
];

it('batchnorm: one-subgroup reductions and per-channel elementwise passes on a software adapter, 64-lane trees and planes on a GPU; vec4 throughout; a raw-texture dx by channel only', () => {
  for (const g of BN_LAYERS) {
    assert.deepEqual(planBatchNorm(software, g), { reduction: 'subgroup', elementwise: 'by-channel', vec4: true, rawGradInput: true }, JSON.stringify(g));
    assert.deepEqual(planBatchNorm(discrete, g), { reduction: 'tree', elementwise: 'planes', vec4: true, rawGradInput: false }, JSON.stringify(g));
  }
  const gpuLayouts = { ...software, policy: { ...software.policy, batchnorm: { cpuLayouts: false } } };
  assert.deepEqual(planBatchNorm(gpuLayouts, BN_LAYERS[0]!), { reduction: 'tree', elementwise: 'planes', vec4: true, rawGradInput: false });
  // an image that is not whole raw rows of 64 floats (3 channels of 5×4), or planes not of whole vec4s: written to a buffer
  assert.equal(planBatchNorm(software, { batch: 2, channels: 3, plane: 20 }).rawGradInput, false);
  assert.equal(planBatchNorm(software, { batch: 2, channels: 4, plane: 6 }).rawGradInput, false);
  assert.equal(planBatchNorm(software, { batch: 2, channels: 4, plane: 16 }).rawGradInput, true);
});

it('the classifier (64 → 10 at batch 128) and its gradients: small direct kernels on a software adapter, the tiled kernel on a GPU', () => {
  // an empty tuning table: no .cache/matmul-tuning.json of this machine is read
  const untuned = (p: AdapterProfile) => ({ ...p, label: 'test profile', policy: { ...p.policy, matmul: { force: null, tuning: new Map() } } });
  const fc = { transA: false, transB: true, batchA: 1, batchB: 1, batch: 1, M: 128, N: 10, K: 64 };
  const shapes = [fc, { ...fc, transB: false, K: 10, N: 64 }, { ...fc, transA: true, transB: false, M: 10, N: 64, K: 128 }];
  for (const o of shapes) {
    assert.deepEqual(chooseConfig(untuned(software), o), { kind: 'direct', tm: 4, tn: 4, wx: 4, wy: 4 }, JSON.stringify(o));
    assert.deepEqual(chooseConfig(untuned(discrete), o), { kind: 'tiled' }, JSON.stringify(o));
  }
  // a large product takes the texture kernel on a software adapter with subgroups of 8
  assert.equal(chooseConfig(untuned(software), { ...fc, transB: false, M: 256, N: 256, K: 256 }).kind, 'texture');
});

it("on a software adapter the weight gradients' split-K slices fill the slice budget: every slice whole rows of the batch, at most the budget's bytes of dY and X rows unless one row is more, fewer slices (fewer partials) for a larger budget, and ResNet-20's 64-channel partials under 2 MB", () => {
  const budget = (kib: number): AdapterProfile => ({ ...software, policy: { ...software.policy, conv: { ...software.policy.conv, wgradSliceBytes: kib << 10 } } });
  for (const [name, g] of Object.entries(RESNET_LAYERS)) {
    const rows = g.batch * g.ho;
    const rowBytes = 16 * ((g.wo + 2 * g.padW + 2) * Math.ceil(g.cout / 4) + g.strideH * (g.w + 2 * g.padW) * Math.ceil(g.cin / 4));
    let previous = Infinity;
    for (const kib of [64, 256, 1024, 4096]) {
      const { slices, rowsPerSlice } = gradWeightSlicesTexture(budget(kib), g);
      assert.ok(slices * rowsPerSlice >= rows && (slices - 1) * rowsPerSlice < rows, `${name} at ${kib} KiB: ${slices} slices of ${rowsPerSlice} rows cover ${rows} rows`);
      const minimumWork = Math.ceil(96 / (Math.ceil(g.cout / 16) * Math.ceil(g.cin / 4) * 3));
      if (slices > minimumWork) assert.ok(rowsPerSlice === 1 || rowsPerSlice * rowBytes <= (kib << 10) * 1.01, `${name} at ${kib} KiB: ${rowsPerSlice} rows of ${rowBytes} bytes`);
      assert.ok(slices <= previous, `${name}: ${slices} slices at ${kib} KiB, more than the ${previous} of a smaller budget`);
      previous = slices;
    }
  }
  const g = RESNET_LAYERS['stage 3 64→64 @8']!;
  const { slices } = gradWeightSlicesTexture(software, g);
  assert.ok(slices * 64 * 64 * 9 * 4 < 2e6, `stage 3: ${slices} partials of 147 KB each`);
});
