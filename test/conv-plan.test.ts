// Which kernel the conv planner (kernels/convPlan.ts) picks for every distinct conv
// layer of the CIFAR ResNets (ResNet-20 and -56 share their layer shapes: a 3→16 stem,
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
