// Where the planners put the large-tile GEMM family (kernels/gemmLarge.ts), on a
// discrete GPU's profile and a software adapter's, without either adapter: matmul
// (kernels/matmul.ts's chooseConfig) and the conv GEMMs (kernels/convPlan.ts).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { AdapterProfile } from '../gpu/device.ts';
import { defaultKernelPolicy } from '../gpu/policy.ts';
import type { ConvGeometry } from '../kernels/convGeometry.ts';
import { planConv } from '../kernels/convPlan.ts';
import { TILE_128, TILE_128_DB, TILE_64x128 } from '../kernels/gemmLarge.ts';
import { chooseConfig } from '../kernels/matmul.ts';
import { convShapeClass } from '../kernels/conv2dLarge.ts';

const limits = { maxTextureDimension2D: 16384, maxTextureArrayLayers: 2048, maxComputeWorkgroupsPerDimension: 65535 } as GPUSupportedLimits;
const software = { isSoftwareAdapter: true, hasSubgroups: true, subgroupSize: 8, limits, policy: defaultKernelPolicy(), label: 'lavapipe' };
const discrete = { isSoftwareAdapter: false, hasSubgroups: true, subgroupSize: 32, limits, policy: defaultKernelPolicy(), label: 'gpu' };
const mm = (M: number, N: number, K: number, batch = 1) => ({ transA: false, transB: false, M, N, K, batch, batchA: batch, batchB: batch });

const conv3x3 = (batch: number, cin: number, cout: number, size: number, stride: number): ConvGeometry => ({
  batch, cin, cout, h: size, w: size, kh: 3, kw: 3, ho: size / stride, wo: size / stride, strideH: stride, strideW: stride, padH: 1, padW: 1,
});

it('matmul on a discrete GPU: 128×128 tiles for products that fill it, the 64×64 kernel otherwise; never on a software adapter', () => {
  assert.deepEqual(chooseConfig(discrete, mm(4096, 4096, 4096)), { kind: 'large', tile: TILE_128 });
  assert.deepEqual(chooseConfig(discrete, mm(2048, 2048, 2048)), { kind: 'large', tile: TILE_128 });
  // a classifier's 128×10 and a product with short K stay on the tiled kernel
  assert.deepEqual(chooseConfig(discrete, mm(128, 10, 64)), { kind: 'tiled' });
  assert.deepEqual(chooseConfig(discrete, mm(4096, 4096, 32)), { kind: 'tiled' });
  // 1024 rows of 64 columns: too narrow for 128-wide tiles, 64×128 tiles do not fill 128 workgroups either
  assert.deepEqual(chooseConfig(discrete, mm(1024, 64, 1024)), { kind: 'tiled' });
  // batched: the batch counts in the workgroups
  assert.deepEqual(chooseConfig(discrete, mm(256, 256, 256, 32)), { kind: 'large', tile: TILE_128 });
  assert.notEqual(chooseConfig(software, mm(4096, 4096, 4096)).kind, 'large');
});

it('matmul: a forced or tuned large tile wins over the planner on any adapter', () => {
  const forced = { ...software, policy: { ...software.policy, matmul: { force: { kind: 'large' as const, tile: TILE_128_DB }, tuning: null } } };
  assert.deepEqual(chooseConfig(forced, mm(13, 7, 5)), { kind: 'large', tile: TILE_128_DB });
  const tuned = { ...discrete, policy: { ...discrete.policy, matmul: { force: null, tuning: new Map([['NN:4096x4096x4096', { kind: 'large' as const, tile: TILE_128_DB }]]) } } };
  assert.deepEqual(chooseConfig(tuned, mm(4096, 4096, 4096)), { kind: 'large', tile: TILE_128_DB });
});

it('conv on a discrete GPU: the large tiles where a GEMM fills the GPU (wide layers, large batches), the 64-wide buffer kernels for CIFAR ResNets at batch 128', () => {
  // ResNet-20/56 at batch 128: every part stays on the buffer kernels (test/plans.test.ts)
  for (const g of [conv3x3(128, 16, 16, 32, 1), conv3x3(128, 64, 64, 8, 1)]) {
    const p = planConv(discrete, g);
    assert.deepEqual([p.forward, p.gradInput, p.gradWeight], ['buffer', 'buffer', 'buffer']);
    assert.equal(p.tiles, undefined);
  }
  // a 128-channel layer at batch 256: forward M = 128, N = 256·16·16 → 128×128 tiles
  const wide = planConv(discrete, conv3x3(256, 128, 128, 16, 1));
  assert.deepEqual([wide.forward, wide.gradInput, wide.gradWeight], ['large', 'large', 'large']);
  assert.deepEqual(wide.tiles?.forward, TILE_128);
  // ResNet-56's 64-channel stage at batch 1000: 64-row tiles (64×128) forward
  const r56 = planConv(discrete, conv3x3(1000, 64, 64, 8, 1));
  assert.equal(r56.forward, 'large');
  assert.deepEqual(r56.tiles?.forward, TILE_64x128);
  // the software adapter keeps its row kernels
  const sw = planConv(software, conv3x3(256, 128, 128, 16, 1));
  assert.ok(!['large'].includes(sw.forward));
});

it('conv: the policy forces the large tiles on every part (any adapter), and a tuned choice (or a tuned "buffer") wins over the planner', () => {
  const g = conv3x3(4, 3, 5, 9, 2);
  const forced = { ...software, policy: { ...software.policy, conv: { ...software.policy.conv, path: 'large' as const, tile: TILE_64x128 } } };
  const p = planConv(forced, g);
  assert.deepEqual([p.forward, p.gradInput, p.gradWeight], ['large', 'large', 'large']);
  assert.deepEqual(p.tiles, { forward: TILE_64x128, gradInput: TILE_64x128, gradWeight: TILE_64x128 });
  const wideG = conv3x3(256, 128, 128, 16, 1);
  const tuning = new Map([[convShapeClass('forward', wideG), TILE_128_DB], [convShapeClass('gradInput', wideG), null]]);
  const tuned = { ...discrete, policy: { ...discrete.policy, conv: { ...discrete.policy.conv, tuning } } };
  const t = planConv(tuned, wideG);
  assert.deepEqual(t.tiles?.forward, TILE_128_DB);
  assert.equal(t.gradInput, 'buffer');
  assert.equal(t.gradWeight, 'large');
});

it('matmul at f16 precision: the subgroup-matrix kernel where the adapter offers f16×f16→f32 tensor-core shapes and the product fits it; never otherwise', () => {
  const sgm = [{ M: 16, N: 16, K: 16, componentType: 'f16', resultComponentType: 'f32' }];
  const f16Policy = { ...defaultKernelPolicy(), precision: 'f16' as const };
  const tensorCores = { ...discrete, policy: f16Policy, hasShaderF16: true, subgroupMatrixConfigs: sgm };
  assert.deepEqual(chooseConfig(tensorCores, mm(4096, 4096, 4096)), { kind: 'subgroupMatrix' });
  assert.deepEqual(chooseConfig(tensorCores, mm(128, 64, 16)), { kind: 'subgroupMatrix' });
  // what the kernel cannot do: partial tiles, transposes, batches, a bias
  assert.notEqual(chooseConfig(tensorCores, mm(4095, 4096, 4096)).kind, 'subgroupMatrix');
  assert.notEqual(chooseConfig(tensorCores, { ...mm(4096, 4096, 4096), transA: true }).kind, 'subgroupMatrix');
  assert.notEqual(chooseConfig(tensorCores, mm(256, 256, 256, 4)).kind, 'subgroupMatrix');
  // f32 precision, no such shape (an f32-only or i8 config), no shader-f16, a software adapter: the FMA kernels
  assert.deepEqual(chooseConfig({ ...tensorCores, policy: defaultKernelPolicy() }, mm(4096, 4096, 4096)), { kind: 'large', tile: TILE_128 });
  assert.notEqual(chooseConfig({ ...tensorCores, subgroupMatrixConfigs: [{ ...sgm[0]!, componentType: 'i8', resultComponentType: 'i32' }] }, mm(4096, 4096, 4096)).kind, 'subgroupMatrix');
  assert.notEqual(chooseConfig({ ...tensorCores, hasShaderF16: false }, mm(4096, 4096, 4096)).kind, 'subgroupMatrix');
  assert.notEqual(chooseConfig({ ...software, policy: f16Policy, hasShaderF16: true, subgroupMatrixConfigs: sgm }, mm(4096, 4096, 4096)).kind, 'subgroupMatrix');
});

it('conv on f16 activations: on a GPU every part takes a large tile (the only kernels that store f16), also where none fills the GPU or the autotuner chose the 64-wide kernel; a software adapter keeps its own plan (the conv then runs on f32 copies)', () => {
  const small = conv3x3(8, 16, 16, 32, 1); // ResNet-20's first stage at batch 8: fills nothing
  const f32Plan = planConv(discrete, small);
  assert.ok(f32Plan.forward !== 'large' && f32Plan.gradWeight !== 'large', 'at f32 the small conv stays on the buffer kernels');
  const half = planConv(discrete, small, true);
  assert.deepEqual([half.forward, half.gradInput, half.gradWeight], ['large', 'large', 'large']);
  for (const t of Object.values(half.tiles ?? {})) assert.ok(t.bm === 64 || t.bn === 64, `the smallest tile, got ${JSON.stringify(t)}`);
  // the autotuner found the 64-wide buffer kernel fastest for every part (null)
  const tunedBuffer = new Map((['forward', 'gradInput', 'gradWeight'] as const).map((part) => [convShapeClass(part, small), null] as const));
  const tuned = { ...discrete, policy: { ...discrete.policy, conv: { ...discrete.policy.conv, tuning: tunedBuffer } } };
  assert.notEqual(planConv(tuned, small).forward, 'large');
  assert.equal(planConv(tuned, small, true).forward, 'large');
  const soft = planConv(software, small, true);
  assert.ok(soft.forward !== 'large' && soft.gradInput !== 'large' && soft.gradWeight !== 'large');
});
