// Every matmul kernel of kernels/matmul.ts and kernels/matmulTexture.ts, forced in turn, against the float64
// reference (forward and both gradients, which run the other transposes): shapes
// whose dimensions are and are not multiples of 4 (the direct kernel's vec4 and
// scalar load paths), of the tile, batched and broadcast, with and without the
// fused bias. test/ops.test.ts covers the default choice on random shapes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, linear, matmul, tensor, tidy } from '../engine/index.ts';
import { hasSubgroupsOf8 } from '../kernels/common.ts';
import { type MatmulConfig, chooseConfig, configName } from '../kernels/matmul.ts';
import { DEFAULT_TOL, assertClose, checkOp, destroyTestDevice, randomArr, setPolicy, testDevice } from './helpers.ts';
import { refLinear, refMatmul } from './reference.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(async () => {
  setPolicy(device, { matmul: { force: null } });
  await destroyTestDevice();
});

const CONFIGS: MatmulConfig[] = [
  { kind: 'tiled' },
  { kind: 'direct', tm: 4, tn: 8, wx: 8, wy: 8 },
  { kind: 'direct', tm: 8, tn: 4, wx: 4, wy: 2 },
  // textures + subgroups (lavapipe); where the adapter has no subgroups of 8 this falls back to the direct kernel
  { kind: 'texture' },
];
// 70: two panels of B in the texture kernel; 130: its 32-row subgroups (M ≥ 128)
const dim = fc.constantFrom(1, 3, 4, 13, 36, 70, 130);

for (const cfg of CONFIGS) {
  describe(`matmul kernel: ${configName(cfg)}`, () => {
    it('matches the reference: transposes, batches, aligned and unaligned sizes', async () => {
      setPolicy(device, { matmul: { force: cfg } });
      try {
        await fc.assert(
          fc.asyncProperty(dim, dim, dim, fc.boolean(), fc.boolean(), fc.constantFrom(0, 1, 2), fc.constantFrom(0, 1, 2), fc.nat(),
            async (M, N, K, transA, transB, ba, bb, seed) => {
              if (ba > 1 && bb > 1) bb = ba;
              const rng = new Rng(seed);
              const a = randomArr(rng, [...(ba ? [ba] : []), ...(transA ? [K, M] : [M, K])]);
              const b = randomArr(rng, [...(bb ? [bb] : []), ...(transB ? [N, K] : [K, N])]);
              await checkOp(device, { inputs: [a, b], gpu: ([x, y]) => matmul(x!, y!, { transA, transB }), ref: refMatmul(transA, transB), seed });
            }),
          { numRuns: 6 },
        );
      } finally {
        setPolicy(device, { matmul: { force: null } });
      }
    });

    it('linear with the fused bias', async () => {
      setPolicy(device, { matmul: { force: cfg } });
      try {
        for (const [n, i, o] of [[5, 8, 10], [12, 13, 4], [64, 36, 8]] as const) {
          const rng = new Rng(n * i * o);
          await checkOp(device, {
            inputs: [randomArr(rng, [n, i]), randomArr(rng, [o, i]), randomArr(rng, [o])],
            gpu: ([x, w, b]) => linear(x!, w!, b),
            ref: refLinear,
          });
        }
      } finally {
        setPolicy(device, { matmul: { force: null } });
      }
    });
  });
}

describe('texture matmul: operands already in the packed layout', () => {
  // Row-major operands whose rows are whole 256-byte copy rows (K and N multiples of 64)
  // are copied into the textures instead of packed; a copy leaves A's padding rows (past
  // M) holding whatever the pooled texture held, which must never reach C.
  it('are copied, not packed, and stale padding rows never reach the result', async () => {
    if (!hasSubgroupsOf8(device)) return; // the texture kernel does not run here
    setPolicy(device, { matmul: { force: { kind: 'texture' } } });
    try {
      const rng = new Rng(7);
      // leave huge values in pooled textures of the sizes the next products take
      for (const [M, K, N] of [[64, 128, 64], [64, 64, 128]] as const) {
        const big = (n: number) => new Float32Array(n).fill(3e38);
        await tidy(() => matmul(tensor(device, big(M * K), [M, K]), tensor(device, big(K * N), [K, N]))).toArray();
      }
      // B is copied one 64-column panel at a time (several panels, batched panels, 32-row subgroups at M ≥ 128)
      for (const [ba, bb, M, K, N] of [[0, 0, 37, 128, 64], [2, 0, 5, 64, 128], [2, 2, 61, 64, 128], [0, 0, 130, 64, 192], [0, 3, 128, 128, 192]] as const) {
        const a = randomArr(rng, [...(ba ? [ba] : []), M, K]);
        const b = randomArr(rng, [...(bb ? [bb] : []), K, N]);
        const before = device.executionStats().dispatches;
        const c = tidy(() => matmul(tensor(device, a.data, a.shape), tensor(device, b.data, b.shape)));
        assert.equal(device.executionStats().dispatches - before, 1, `${a.shape}·${b.shape}: only the multiply is dispatched`);
        assertClose(await c.toArray(), refMatmul().forward([a, b]), DEFAULT_TOL, `${a.shape}·${b.shape}`);
        c.dispose();
      }
      // one operand copied, the other (transposed) packed
      const a = randomArr(rng, [37, 128]);
      const bt = randomArr(rng, [64, 128]);
      const before = device.executionStats().dispatches;
      const c = tidy(() => matmul(tensor(device, a.data, a.shape), tensor(device, bt.data, bt.shape), { transB: true }));
      assert.equal(device.executionStats().dispatches - before, 2, 'A copied, Bᵀ packed');
      assertClose(await c.toArray(), refMatmul(false, true).forward([a, bt]), DEFAULT_TOL, 'A·Bᵀ');
      c.dispose();
    } finally {
      setPolicy(device, { matmul: { force: null } });
    }
  });
});

describe('matmul kernel choice', () => {
  it('the texture kernel is never chosen (even forced) where its textures or grids would exceed the device limits', () => {
    const l = device.limits;
    const base = { transA: false, transB: false, batchA: 1, batchB: 1, batch: 1, M: 256, N: 256, K: 256 };
    const tooTall = { ...base, M: l.maxTextureDimension2D + 64 };
    const tooManyLayers = { ...base, batchA: l.maxTextureArrayLayers + 1, batch: l.maxTextureArrayLayers + 1 };
    // B takes one layer per 64-column panel per batch entry
    const tooManyPanels = { ...base, N: 64 * (l.maxTextureArrayLayers + 1) };
    const tooManyBatchedPanels = { ...base, N: 128, batchB: l.maxTextureArrayLayers / 2 + 1, batch: l.maxTextureArrayLayers / 2 + 1 };
    for (const o of [tooTall, tooManyLayers, tooManyPanels, tooManyBatchedPanels]) assert.notEqual(chooseConfig(device, o).kind, 'texture', JSON.stringify(o));
    setPolicy(device, { matmul: { force: { kind: 'texture' } } });
    try {
      assert.notEqual(chooseConfig(device, tooTall).kind, 'texture');
    } finally {
      setPolicy(device, { matmul: { force: null } });
    }
  });
});
