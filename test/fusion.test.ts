// The fusions of policy.fusion (issue 20), each against its unfused form and the
// float64 references at the production configuration (on lavapipe: the row kernels,
// asserted through the planner so a test cannot drift onto another kernel):
//   addInto   the conv grad-input kernel adds into the gradient its input already has
//             (the residual's) instead of autograd's separate add: same sum, same order,
//             so bit-identical to the unfused engine
//   shareRaw  the row kernels copy X (forward → weight gradient) and dY (both gradients)
//             into a texture once: the same values read, bit-identical
//   reluMask  batchnorm + relu's backward recomputes the relu's mask from x as the
//             forward computed the output (same bits) instead of reading the output
//             (its float64 checks: test/batchnorm.test.ts, which runs the default policy)
//   bnStats   the conv forward writes batchnorm's statistics partials in its epilogue,
//             batchnorm merges them: a new order of sums, so equal within f32 rounding
//   bnBackward the conv grad input that completes a batchnorm output's gradient masks
//             it by the relu as it stores it and writes the batchnorm's backward sums'
//             partials: within f32 rounding
//   bnPrologue a training batchnorm + relu leaves its output unwritten and the 3×3 row
//             convs that read it load its input through it (bnApply's arithmetic: bit-
//             identical); anything else that reads it has it written then
//   rawGrad   a batchnorm's grad input that is a row conv's dY is written straight into
//             the raw texture both conv gradients read, not a buffer then copied (the
//             same bits); anything else that reads it has the buffer written then
// and a ResNet's training steps with every fusion on against every fusion off (6 steps
// with the first gradient; 50 steps of losses).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, type Tensor, add, batchNorm2d, conv2d, scale, tensor, tidy } from '../engine/index.ts';
import type { Conv2dOptions } from '../engine/ops/conv.ts';
import { SGD } from '../engine/optim.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { isSoftwareAdapter } from '../kernels/common.ts';
import { textureConvSupported } from '../kernels/conv2dTexture.ts';
import { planConv } from '../kernels/convPlan.ts';
import { planBatchNorm } from '../kernels/batchnorm.ts';
import { type KernelPolicy, allFusionsPolicy, defaultKernelPolicy, unfusedPolicy } from '../gpu/policy.ts';
import type { TrafficRow } from '../gpu/device.ts';
import { resnet } from '../models/resnet.ts';
import { type Arr, type RefOp, arr } from './reference.ts';
import { avoidReluKink, refBatchNorm2d, refConv2d } from './reference-conv.ts';
import { checkOp, destroyTestDevice, randomArr, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const GRAD_TOL = { atol: 3e-5, rtol: 1e-4 };

/** Runs `f` with the device under `policy`, then restores the policy it had. */
async function underPolicy<T>(policy: KernelPolicy, f: () => Promise<T>): Promise<T> {
  const saved = device.policy;
  device.policy = policy;
  try {
    return await f();
  } finally {
    device.policy = saved;
  }
}
const rowsHere = (): boolean => isSoftwareAdapter(device) && textureConvSupported(device);

/** conv(x, w) + conv(x/2, w) = conv(1.5·x, w): x's gradient comes from two convolutions, the second added into the first's. */
function refTwoConvs(stride: number, padding: number): RefOp {
  const conv = refConv2d(stride, padding);
  const x15 = (x: Arr): Arr => arr(x.shape, x.data.map((v) => 1.5 * v));
  return {
    name: 'conv(x, w) + conv(x/2, w)',
    forward: ([x, w]) => conv.forward([x15(x!), w!]),
    backward: ([x, w], g) => {
      const [dx, dw] = conv.backward([x15(x!), w!], g);
      return [x15(dx!), dw!];
    },
  };
}

/** ResNet-like geometries the row kernels take: 3×3 padding 1 or 1×1, stride 1 or 2, whole lanes of 4 pixels. */
const production = fc
  .record({
    batch: fc.constantFrom(1, 2, 3),
    cin: fc.constantFrom(4, 8, 16),
    cout: fc.constantFrom(4, 8, 16),
    k: fc.constantFrom(1, 3),
    stride: fc.constantFrom(1, 2),
    lanes: fc.constantFrom(1, 2, 4),
    rows: fc.constantFrom(4, 8),
    seed: fc.nat(),
  })
  .map((c) => ({ ...c, w: 4 * c.lanes * c.stride, h: c.rows * c.stride, padding: (c.k - 1) / 2 }));

type Case = typeof production extends fc.Arbitrary<infer T> ? T : never;

const geometry = (c: Case) => ({ batch: c.batch, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: c.k, kw: c.k, ho: c.h / c.stride, wo: c.w / c.stride, strideH: c.stride, strideW: c.stride, padH: c.padding, padW: c.padding });

/** x's and w's gradients of conv(x, w) + conv(x/2, w) under the device's policy as it is, and what the step's kernels were. */
async function twoConvGrads(c: Case, g: Arr): Promise<{ dx: Float32Array; dw: Float32Array; labels: string[]; adds: number }> {
  const rng = new Rng(c.seed);
  const xs = randomArr(rng, [c.batch, c.cin, c.h, c.w]);
  const ws = randomArr(rng, [c.cout, c.cin, c.k, c.k]);
  const x = tensor(device, xs.data, xs.shape).requireGrad();
  const w = tensor(device, ws.data, ws.shape).requireGrad();
  const o = { stride: c.stride, padding: c.padding };
  const rows = await device.countTraffic(() => {
    tidy(() => {
      const y = add(conv2d(x, w, null, o), conv2d(scale(x, 0.5), w, null, o));
      y.backward(tensor(device, g.data, g.shape));
    });
  });
  const out = { dx: await x.grad!.toArray(), dw: await w.grad!.toArray(), labels: rows.map((r) => r.label), adds: rows.filter((r) => r.label.startsWith('binary add')).reduce((n, r) => n + r.count, 0) };
  for (const t of [x, w]) {
    t.grad?.dispose();
    t.dispose();
  }
  return out;
}

describe('fusion: add into (policy.fusion.addInto)', () => {
  it('at the production configuration: a gradient added into by the conv grad-input kernel matches the reference', async () => {
    await fc.assert(
      fc.asyncProperty(production, async (c) => {
        const plan = planConv(device, geometry(c));
        assert.equal(plan.gradInputAccumulates, plan.gradInput !== 'texture', `every grad-input kernel but the texture one adds into the gradient: ${JSON.stringify(c)}`);
        if (rowsHere()) assert.equal(plan.gradInput, 'rows', 'lavapipe runs these on the row kernels');
        const rng = new Rng(c.seed);
        await checkOp(device, {
          inputs: [randomArr(rng, [c.batch, c.cin, c.h, c.w]), randomArr(rng, [c.cout, c.cin, c.k, c.k])],
          gpu: ([x, w]) => add(conv2d(x!, w!, null, c), conv2d(scale(x!, 0.5), w!, null, c)),
          ref: refTwoConvs(c.stride, c.padding),
          gradTol: GRAD_TOL,
          seed: c.seed,
        });
      }),
      { numRuns: 12 },
    );
  });

  it('is bit-identical to the unfused separate add, and takes its place', async (t) => {
    // (each path's kernels run on every device; the separate add is replaced only where the row kernels run)
    if (!rowsHere()) return t.skip('the row kernels (and so the fusion) run on software adapters with subgroups of 8 only');
    await fc.assert(
      fc.asyncProperty(production, async (c) => {
        const g = randomArr(new Rng(c.seed + 1), [c.batch, c.cout, c.h / c.stride, c.w / c.stride]);
        const fused = await twoConvGrads(c, g);
        const plain = await underPolicy(unfusedPolicy(), () => twoConvGrads(c, g));
        assert.deepEqual(fused.dx, plain.dx, 'dx');
        assert.deepEqual(fused.dw, plain.dw, 'dw');
        assert.ok(fused.labels.some((l) => l.includes('add into')), `a kernel adds into the gradient: ${fused.labels.join(', ')}`);
        // adds: the forward's, then x's two gradients and w's two (a leaf's); the conv kernel adds x's in the fused step
        assert.equal(plain.adds, 3, 'the unfused step: the forward add, x\'s and w\'s gradients added separately');
        assert.equal(fused.adds, 2, 'the fused step: the forward add and w\'s');
      }),
      { numRuns: 6 },
    );
  });
});

describe("fusion: add into on GPUs' conv kernels (the buffer and large-tile grad input, forced here)", () => {
  for (const path of ['buffer', 'large'] as const) {
    it(`${path} kernels: bit-identical to the unfused separate add, which it replaces; matches the reference`, async () => {
      const forced = (fusion: KernelPolicy['fusion']): KernelPolicy => {
        const p = defaultKernelPolicy();
        return { ...p, fusion, conv: { ...p.conv, path } };
      };
      const saved = device.policy;
      try {
        await fc.assert(
          fc.asyncProperty(production, async (c) => {
            const g = randomArr(new Rng(c.seed + 1), [c.batch, c.cout, c.h / c.stride, c.w / c.stride]);
            device.policy = forced(defaultKernelPolicy().fusion);
            const plan = planConv(device, geometry(c));
            assert.equal(plan.gradInput, path === 'large' ? 'large' : 'buffer');
            assert.ok(plan.gradInputAccumulates, 'the planner adds into the gradient');
            const fused = await twoConvGrads(c, g);
            await checkOp(device, {
              inputs: [randomArr(new Rng(c.seed), [c.batch, c.cin, c.h, c.w]), randomArr(new Rng(c.seed + 2), [c.cout, c.cin, c.k, c.k])],
              gpu: ([x, w]) => add(conv2d(x!, w!, null, c), conv2d(scale(x!, 0.5), w!, null, c)),
              ref: refTwoConvs(c.stride, c.padding),
              gradTol: GRAD_TOL,
              seed: c.seed,
            });
            device.policy = forced(unfusedPolicy().fusion);
            const plain = await twoConvGrads(c, g);
            assert.deepEqual(fused.dx, plain.dx, 'dx');
            assert.deepEqual(fused.dw, plain.dw, 'dw');
            assert.ok(fused.labels.some((l) => l.includes('add into')), `a kernel adds into the gradient: ${fused.labels.join(', ')}`);
            assert.equal(plain.adds, 3, 'the unfused step: the forward add, x\'s and w\'s gradients added separately');
            assert.equal(fused.adds, 2, 'the fused step: the forward add and w\'s');
          }),
          { numRuns: path === 'large' ? 3 : 6 },
        );
      } finally {
        device.policy = saved;
      }
    });
  }
});

/** batchnorm(conv(x, w)) on inputs [x, w, γ, β] (training statistics). */
function refConvBatchNorm(stride: number, padding: number): RefOp {
  const conv = refConv2d(stride, padding);
  const bn = refBatchNorm2d({ training: true });
  return {
    name: 'batchNorm2d(conv2d(x, w))',
    forward: ([x, w, gamma, beta]) => bn.forward([conv.forward([x!, w!]), gamma!, beta!]),
    backward: ([x, w, gamma, beta], g) => {
      const y = conv.forward([x!, w!]);
      const [dy, dgamma, dbeta] = bn.backward([y, gamma!, beta!], g);
      const [dx, dw] = conv.backward([x!, w!], dy!);
      return [dx!, dw!, dgamma!, dbeta!];
    },
  };
}

describe('fusion: batchnorm statistics in the conv epilogue (policy.fusion.bnStats)', () => {
  it('at the production configuration: batchnorm of a conv that wrote its statistics matches the reference', async () => {
    await fc.assert(
      fc.asyncProperty(production, async (c) => {
        const plan = planConv(device, geometry(c));
        assert.equal(plan.forwardStatistics, rowsHere(), `the planner writes statistics on the row kernels only: ${JSON.stringify(c)}`);
        const rng = new Rng(c.seed);
        // values off 0 (a constant offset per image is what the shifted sums must absorb)
        const x = randomArr(rng, [c.batch, c.cin, c.h, c.w], 0.5, 2);
        await checkOp(device, {
          inputs: [x, randomArr(rng, [c.cout, c.cin, c.k, c.k]), randomArr(rng, [c.cout], 0.5, 1.5), randomArr(rng, [c.cout])],
          gpu: ([xt, w, gamma, beta]) => batchNorm2d(conv2d(xt!, w!, null, { ...c, statistics: true }), { training: true, weight: gamma, bias: beta }),
          ref: refConvBatchNorm(c.stride, c.padding),
          tol: { atol: 3e-5, rtol: 1e-4 },
          gradTol: { atol: 1e-4, rtol: 1e-3 },
          seed: c.seed,
        });
      }),
      { numRuns: 12 },
    );
  });

  it('a conv output whose statistics no batchnorm takes is still the plain output; batchnorm in eval mode ignores them', async () => {
    const rng = new Rng(3);
    const xs = randomArr(rng, [2, 8, 8, 8]);
    const ws = randomArr(rng, [8, 8, 3, 3]);
    const run = async (statistics: boolean): Promise<Float32Array> => {
      const out = tidy(() => {
        const y = conv2d(tensor(device, xs.data, xs.shape), tensor(device, ws.data, ws.shape), null, { padding: 1, statistics });
        const rm = tensor(device, new Array(8).fill(0.1), [8]);
        const rv = tensor(device, new Array(8).fill(2), [8]);
        return batchNorm2d(y, { training: false, runningMean: rm, runningVar: rv });
      });
      const a = await out.toArray();
      out.dispose();
      return a;
    };
    assert.deepEqual(await run(true), await run(false));
  });
});

/**
 * A training batchnorm + relu (+ residual) feeding convolutions, on inputs
 * [x, γ, β, (r,) w]: conv(y, w) alone, or conv(y, w) + conv(y/2, w) = conv(1.5·y, w),
 * where the second gradient of y is added into (the residual's case in a ResNet).
 */
function refBnConv(residual: boolean, twice: boolean, stride: number, padding: number): RefOp {
  const bn = refBatchNorm2d({ training: true, relu: true, residual });
  const conv = refConv2d(stride, padding);
  const f = twice ? 1.5 : 1;
  const split = (xs: Arr[]): [Arr[], Arr] => [xs.slice(0, residual ? 4 : 3), xs[xs.length - 1]!];
  return {
    name: `conv(relu(bn(x)${residual ? ' + r' : ''}))${twice ? ' twice' : ''}`,
    forward: (xs) => {
      const [bi, w] = split(xs);
      const y = bn.forward(bi);
      return conv.forward([arr(y.shape, y.data.map((v) => f * v)), w]);
    },
    backward: (xs, g) => {
      const [bi, w] = split(xs);
      const y = bn.forward(bi);
      const [dy, dw] = conv.backward([arr(y.shape, y.data.map((v) => f * v)), w], g);
      return [...bn.backward(bi, arr(dy!.shape, dy!.data.map((v) => f * v))), dw!];
    },
  };
}

/** f(inputs) + f(inputs): an op whose output is read twice (the same inputs, gradients doubled). */
function refTwice(op: RefOp): RefOp {
  return {
    name: `${op.name} twice`,
    forward: (xs) => {
      const y = op.forward(xs);
      return arr(y.shape, y.data.map((v) => 2 * v));
    },
    backward: (xs, g) => op.backward(xs, arr(g.shape, g.data.map((v) => 2 * v))),
  };
}

describe('fusion: a batchnorm\'s backward in the conv grad-input epilogue (policy.fusion.bnBackward)', () => {
  // production leaves it off on lavapipe (gpu/policy.ts); the fusion itself is tested with every fusion on
  let saved: KernelPolicy;
  before(() => {
    saved = device.policy;
    device.policy = allFusionsPolicy();
  });
  after(() => {
    device.policy = saved;
  });
  for (const [residual, twice] of [[false, false], [true, false], [true, true], [false, true]] as const) {
    it(`at the production configuration: conv(relu(bn(x)${residual ? ' + r' : ''}))${twice ? ', y read by two convs (added into)' : ''} matches the reference`, async () => {
      await fc.assert(
        fc.asyncProperty(production, async (c) => {
          const plan = planConv(device, geometry(c));
          assert.equal(plan.gradInputBatchNorm, rowsHere(), `the planner folds batchnorm's backward in on the row kernels only: ${JSON.stringify(c)}`);
          const rng = new Rng(c.seed);
          const x = randomArr(rng, [c.batch, c.cin, c.h, c.w]);
          const bnIn = [x, randomArr(rng, [c.cin], 0.5, 1.5), randomArr(rng, [c.cin])];
          if (residual) bnIn.push(randomArr(rng, [c.batch, c.cin, c.h, c.w]));
          avoidReluKink(bnIn, { training: true, relu: true, residual });
          const o: Conv2dOptions = { stride: c.stride, padding: c.padding };
          await checkOp(device, {
            inputs: [...bnIn, randomArr(rng, [c.cout, c.cin, c.k, c.k])],
            gpu: (ts) => {
              const [xt, gamma, beta] = ts;
              const w = ts[ts.length - 1]!;
              const y = batchNorm2d(xt!, { training: true, weight: gamma, bias: beta, relu: true, residual: residual ? ts[3] : null });
              return twice ? add(conv2d(y, w, null, o), conv2d(scale(y, 0.5), w, null, o)) : conv2d(y, w, null, o);
            },
            ref: refBnConv(residual, twice, c.stride, c.padding),
            gradTol: { atol: 1e-4, rtol: 1e-3 },
            seed: c.seed,
          });
        }),
        { numRuns: 8 },
      );
    });
  }
});

describe("fusion: batchnorm + relu in the next conv's operand loads (policy.fusion.bnPrologue)", () => {
  // the kernels that write a batchnorm + relu output: bnApply's, or the one from the prologue's coefficients
  const written = (labels: string[]): string[] => labels.filter((l) => /^batchnorm( \(merging statistics\))? \+ relu$|from prologue coefficients/.test(l));
  for (const twice of [false, true]) {
    it(`at the production configuration: conv(relu(bn(x)))${twice ? ', y read by two convs' : ''} matches the reference; y is never written where the plan loads it through the prologue`, async () => {
      await fc.assert(
        fc.asyncProperty(production, async (c) => {
          const plan = planConv(device, geometry(c));
          assert.equal(plan.inputPrologue, rowsHere() && c.k === 3, `the planner takes the prologue on the 3×3 row kernels only: ${JSON.stringify(c)}`);
          const rng = new Rng(c.seed);
          const bnIn = [randomArr(rng, [c.batch, c.cin, c.h, c.w]), randomArr(rng, [c.cin], 0.5, 1.5), randomArr(rng, [c.cin])];
          avoidReluKink(bnIn, { training: true, relu: true, residual: false });
          const o: Conv2dOptions = { stride: c.stride, padding: c.padding };
          const rows = await device.countTraffic(() =>
            checkOp(device, {
              inputs: [...bnIn, randomArr(rng, [c.cout, c.cin, c.k, c.k])],
              gpu: ([xt, gamma, beta, w]) => {
                const y = batchNorm2d(xt!, { training: true, weight: gamma, bias: beta, relu: true });
                return twice ? add(conv2d(y, w!, null, o), conv2d(y, w!, null, o)) : conv2d(y, w!, null, o);
              },
              ref: twice ? refTwice(refBnConv(false, false, c.stride, c.padding)) : refBnConv(false, false, c.stride, c.padding),
              gradTol: { atol: 1e-4, rtol: 1e-3 },
              seed: c.seed,
            }),
          );
          const labels = rows.map((r) => r.label);
          if (plan.inputPrologue) {
            assert.deepEqual(written(labels), [], `y written although every reader loads it through the prologue: ${labels.join('; ')}`);
            assert.ok(labels.some((l) => l.includes('bn + relu prologue')), `no kernel took the prologue: ${labels.join('; ')}`);
          } else assert.equal(written(labels).length, 1, `y written once for the conv that reads it: ${labels.join('; ')}`);
        }),
        { numRuns: 10 },
      );
    });
  }

  it("an output something else reads is written then, with the batchnorm's values bit for bit, also after backward and an update of γ and β, and by a conv after backward", async (t) => {
    if (!rowsHere()) return t.skip('the prologue is planned on the row kernels only (software adapters with subgroups of 8)');
    const rng = new Rng(4);
    const xs = randomArr(rng, [2, 8, 8, 8]);
    const ws = randomArr(rng, [8, 8, 3, 3]);
    // y read before backward, after it (and an update of γ, β), or by another conv after it (its prologue is gone with the graph)
    const run = (policy: KernelPolicy, when: 'before' | 'after' | 'conv after'): Promise<{ y: Float32Array; dx: Float32Array; writes: number; prologue: boolean }> =>
      underPolicy(policy, async () => {
        const x = tensor(device, xs.data, xs.shape).requireGrad();
        const w = tensor(device, ws.data, ws.shape).requireGrad();
        const gamma = tensor(device, new Array(8).fill(1.25), [8]).requireGrad();
        const beta = tensor(device, new Array(8).fill(0.1), [8]).requireGrad();
        let y!: Tensor;
        let yv: Float32Array = new Float32Array();
        const rows = await device.countTraffic(async () => {
          // no tidy: y and the graph stay alive across the awaits (backward frees what the ops saved)
          y = batchNorm2d(x, { training: true, weight: gamma, bias: beta, relu: true });
          const loss = conv2d(y, w, null, { padding: 1 });
          if (when === 'before') yv = await y.toArray();
          loss.backward(tensor(device, new Array(loss.size).fill(1), loss.shape));
          loss.dispose();
          // an optimizer step changes γ and β in place: y is what the forward computed, not what they give now
          new SGD({ params: [gamma, beta], lr: 0.5 }).step();
          if (when === 'after') yv = await y.toArray();
          if (when === 'conv after') {
            const again = conv2d(y, w, null, { padding: 1 });
            yv = await again.toArray();
            again.dispose();
          }
        });
        const labels = rows.map((r) => r.label);
        const out = {
          y: yv,
          dx: await x.grad!.toArray(),
          writes: labels.filter((l) => l.includes('prologue coefficients') && l.startsWith('batchnorm + relu')).length,
          prologue: labels.some((l) => l.includes('bn + relu prologue')),
        };
        for (const v of [x, w, gamma, beta, y]) {
          v.grad?.dispose();
          v.dispose();
        }
        return out;
      });
    const without = defaultKernelPolicy();
    without.fusion.bnPrologue = false;
    for (const when of ['before', 'after', 'conv after'] as const) {
      const fused = await run(defaultKernelPolicy(), when);
      const plain = await run(without, when);
      assert.ok(fused.prologue && !plain.prologue, `${when} backward: the conv took the prologue with the fusion on only`);
      assert.equal(fused.writes, 1, `${when} backward: y written once, when read`);
      assert.deepEqual(fused.y, plain.y, `${when} backward: y as batchnorm writes it`);
      assert.deepEqual(fused.dx, plain.dx, `${when} backward: x's gradient`);
    }
  });
});

describe("fusion: a batchnorm's grad input written as the conv's raw dY (policy.fusion.rawGrad)", () => {
  // production with rawGrad on (production has it off: slower on lavapipe)
  const withRawGrad = (): KernelPolicy => {
    const p = defaultKernelPolicy();
    p.fusion.rawGrad = true;
    return p;
  };
  for (const [name, policy] of [['production with rawGrad', withRawGrad], ['every fusion', allFusionsPolicy]] as const) {
    it(`at the production configuration (${name}): the gradients of batchnorm(conv(x, w)) match the reference; dY is never copied or written to a buffer where the plan reads it raw`, async () => {
      await fc.assert(
        fc.asyncProperty(production, async (c) => {
          const g = geometry(c);
          const raw = planConv(device, g).sharesRawGradOutput && planBatchNorm(device, { batch: c.batch, channels: c.cout, plane: g.ho * g.wo }).rawGradInput;
          assert.equal(raw, rowsHere() && (c.cout * g.ho * g.wo) % 64 === 0, `the planners write dY raw on the row kernels, for whole raw rows: ${JSON.stringify(c)}`);
          const rng = new Rng(c.seed);
          const rows = await underPolicy(policy(), () =>
            device.countTraffic(() =>
              checkOp(device, {
                inputs: [randomArr(rng, [c.batch, c.cin, c.h, c.w], 0.5, 2), randomArr(rng, [c.cout, c.cin, c.k, c.k]), randomArr(rng, [c.cout], 0.5, 1.5), randomArr(rng, [c.cout])],
                gpu: ([xt, w, gamma, beta]) => batchNorm2d(conv2d(xt!, w!, null, { ...c, statistics: true }), { training: true, weight: gamma, bias: beta }),
                ref: refConvBatchNorm(c.stride, c.padding),
                tol: { atol: 3e-5, rtol: 1e-4 },
                gradTol: { atol: 1e-4, rtol: 1e-3 },
                seed: c.seed,
              }),
            ),
          );
          const labels = rows.map((r) => r.label);
          assert.equal(labels.some((l) => l.includes('(raw dx)')), raw, `a raw dx where planned: ${labels.join('; ')}`);
          assert.ok(!labels.includes('copy texture to buffer'), `dY's buffer written although only the conv reads it: ${labels.join('; ')}`);
        }),
        { numRuns: 8 },
      );
    });
  }

  /** How many dispatches or copies of one label a traffic count saw. */
  const countOf = (rows: TrafficRow[], label: string): number => rows.filter((r) => r.label === label).reduce((n, r) => n + r.count, 0);

  it("changes no bit of any gradient (relu, residual, eval mode); a dY that is not the batchnorm's alone is written as before", async (t) => {
    if (!rowsHere()) return t.skip('dY is read raw on the row kernels only (software adapters with subgroups of 8)');
    const rng = new Rng(6);
    const xs = randomArr(rng, [2, 8, 8, 8]);
    const ws = randomArr(rng, [8, 8, 3, 3]);
    const rs = randomArr(rng, [2, 8, 8, 8]);
    // conv → batchnorm + relu (+ residual; or in eval mode); the conv output also read by another op whose
    // gradient adds to dY: one that runs its backward first ('scaled') or after the batchnorm's ('conv')
    type Variant = 'relu' | 'residual' | 'eval' | 'scaled' | 'conv';
    const run = (policy: KernelPolicy, variant: Variant): Promise<{ grads: Float32Array[]; raw: boolean; copies: number; writes: number }> =>
      underPolicy(policy, async () => {
        const x = tensor(device, xs.data, xs.shape).requireGrad();
        const w = tensor(device, ws.data, ws.shape).requireGrad();
        const gamma = tensor(device, new Array(8).fill(1.25), [8]).requireGrad();
        const beta = tensor(device, new Array(8).fill(0.1), [8]).requireGrad();
        const r = tensor(device, rs.data, rs.shape).requireGrad();
        const running = variant === 'eval' ? { runningMean: tensor(device, new Array(8).fill(0.2), [8]), runningVar: tensor(device, new Array(8).fill(1.7), [8]) } : {};
        const rows = await device.countTraffic(() => {
          tidy(() => {
            const out = conv2d(x, w, null, { padding: 1, statistics: true });
            const y = batchNorm2d(out, { training: variant !== 'eval', weight: gamma, bias: beta, relu: true, residual: variant === 'residual' ? r : null, ...running });
            const loss = variant === 'scaled' ? add(y, scale(out, 0.5)) : variant === 'conv' ? add(y, conv2d(out, w, null, { padding: 1 })) : y;
            loss.backward(tensor(device, Array.from({ length: loss.size }, (_, i) => Math.sin(i)), loss.shape));
          });
        });
        const grads = await Promise.all([x, w, gamma, beta].map((v) => v.grad!.toArray()));
        if (variant === 'residual') grads.push(await r.grad!.toArray());
        for (const v of [x, w, gamma, beta, r, ...Object.values(running)]) {
          v.grad?.dispose();
          v.dispose();
        }
        return { grads, raw: rows.some((row) => row.label.includes('(raw dx)')), copies: countOf(rows, 'copy buffer to texture'), writes: countOf(rows, 'copy texture to buffer') };
      });
    const without = defaultKernelPolicy();
    without.fusion.rawGrad = false;
    for (const variant of ['relu', 'residual', 'eval', 'scaled', 'conv'] as const) {
      const fused = await run(withRawGrad(), variant);
      const plain = await run(without, variant);
      fused.grads.forEach((g, i) => assert.deepEqual(g, plain.grads[i], `${variant}: gradient ${i} bit for bit`));
      assert.ok(!plain.raw, `${variant}: no raw dx with the fusion off`);
      assert.equal(fused.writes, 0, `${variant}: dY never written back from a texture`);
      if (variant === 'scaled' || variant === 'conv') {
        // dY is the sum of two gradients: the batchnorm's alone is not what the conv reads
        assert.ok(!fused.raw, `${variant}: no raw dx where another gradient adds to dY`);
        assert.equal(fused.copies, plain.copies, `${variant}: the same copies`);
      } else {
        assert.ok(fused.raw, `${variant}: a raw dx with the fusion on`);
        assert.equal(fused.copies, plain.copies - 1, `${variant}: dY not copied to a texture (${fused.copies} copies, ${plain.copies} without)`);
      }
    }
  });

  it("a raw dY that something else reads is written to its buffer then, from the texture, with the batchnorm's values", async (t) => {
    if (!rowsHere()) return t.skip('dY is read raw on the row kernels only (software adapters with subgroups of 8)');
    const rng = new Rng(8);
    const xs = randomArr(rng, [2, 8, 8, 8]);
    const ws = randomArr(rng, [8, 8, 3, 3]);
    const gs = randomArr(rng, [2, 8, 8, 8]);
    // the batchnorm's backward called as autograd would, its dx (the conv's dY) then read directly
    const dyOfConv = (policy: KernelPolicy): Promise<{ values: Float32Array; writes: number; deferred: boolean }> =>
      underPolicy(policy, async () => {
        const x = tensor(device, xs.data, xs.shape).requireGrad();
        const w = tensor(device, ws.data, ws.shape).requireGrad();
        const out = conv2d(x, w, null, { padding: 1, statistics: true });
        const y = batchNorm2d(out, { training: true, relu: true });
        const g = tensor(device, gs.data, gs.shape);
        let dx!: Tensor;
        const rows = await device.countTraffic(() => {
          dx = y.backwardFn!(g, [undefined], [true])[0]!;
        });
        const deferred = dx.writeDeferred;
        let values: Float32Array = new Float32Array();
        const writes = await device.countTraffic(async () => {
          values = await dx.toArray();
        });
        assert.ok(!rows.some((r) => r.label === 'copy texture to buffer'));
        for (const v of [x, w, out, y, g, dx]) v.dispose();
        return { values, writes: countOf(writes, 'copy texture to buffer'), deferred };
      });
    const without = defaultKernelPolicy();
    without.fusion.rawGrad = false;
    const fused = await dyOfConv(withRawGrad());
    const plain = await dyOfConv(without);
    assert.ok(fused.deferred && !plain.deferred, 'dx left unwritten with the fusion on only');
    assert.equal(fused.writes, 1, 'written once from the texture when read');
    assert.equal(plain.writes, 0);
    assert.deepEqual(fused.values, plain.values, "the batchnorm's dx bit for bit");
  });
});

describe('fusion: the whole engine', () => {
  /** Losses and the first conv's weight gradient of `steps` SGD steps of a small ResNet under the device's policy as it is. */
  async function train(steps: number, gradStep = steps - 1, o: { images?: number; lr?: number } = {}): Promise<{ losses: number[]; grad: Float32Array }> {
    const images = o.images ?? 4;
    const model = resnet(device, { depth: 8, numClasses: 10, shortcut: 'A', seed: 5 });
    model.train(true);
    const opt = new SGD({ params: model.parameters(), lr: o.lr ?? 0.05, momentum: 0.9, weightDecay: 5e-4 });
    const rng = new Rng(9);
    const xs = randomArr(rng, [images, 3, 32, 32]);
    const x = tensor(device, xs.data, xs.shape);
    const labels = tensor(device, Array.from({ length: images }, (_, i) => [1, 7, 3, 0][i % 4]! + (i >> 2) % 2), [images], 'i32');
    const losses: number[] = [];
    let grad: Float32Array = new Float32Array();
    for (let s = 0; s < steps; s++) {
      const loss: Tensor = tidy(() => {
        const l = softmaxCrossEntropy(model.forward(x), labels);
        l.backward();
        return l;
      });
      losses.push(await loss.item());
      loss.dispose();
      if (s === gradStep) grad = await model.conv1.weight.grad!.toArray();
      opt.step();
      opt.zeroGrad();
    }
    x.dispose();
    labels.dispose();
    for (const p of model.parameters()) p.dispose();
    return { losses, grad };
  }

  const trainWith = (policy: KernelPolicy, steps: number, gradStep = steps - 1, o: { images?: number; lr?: number } = {}): Promise<{ losses: number[]; grad: Float32Array }> =>
    underPolicy(policy, () => train(steps, gradStep, o));

  it('training steps with the fusions that keep the arithmetic give the unfused losses and gradients bit for bit', async () => {
    const exact = defaultKernelPolicy();
    exact.fusion = { ...exact.fusion, bnStats: false, bnBackward: false, bnMerge: false, rawGrad: true };
    const fused = await trainWith(exact, 4);
    const plain = await trainWith(unfusedPolicy(), 4);
    // addInto, shareRaw, reluMask, bnPrologue and rawGrad change no arithmetic
    assert.equal(exact.fusion.bnPrologue, true);
    assert.equal(exact.fusion.rawGrad, true);
    if (rowsHere()) {
      // and the ResNet's convs take the prologue under this policy: one step counted
      const labels = (await underPolicy(exact, () => device.countTraffic(async () => void (await train(1))))).map((r) => r.label);
      assert.ok(labels.some((l) => l.includes('bn + relu prologue')), `no conv took the prologue: ${labels.join('; ')}`);
      assert.ok(labels.some((l) => l.includes('(raw dx)')), `no batchnorm wrote a raw dY: ${labels.join('; ')}`);
    }
    assert.deepEqual(fused.losses, plain.losses);
    assert.deepEqual(fused.grad, plain.grad);
  });

  it('training steps with every fusion on give the unfused losses within f32 rounding (and so do the production fusions)', async () => {
    // the first step's gradient (the same weights; later ones follow weights that drifted apart by rounding,
    // which 4 images of a small net amplify) within 1e-4 of its scale, the losses within 1e-4 relative
    const plain = await trainWith(unfusedPolicy(), 6, 0);
    let scale = 0;
    for (const v of plain.grad) scale = Math.max(scale, Math.abs(v));
    for (const [name, policy] of [['every fusion', allFusionsPolicy()], ['production', defaultKernelPolicy()]] as const) {
      const fused = await trainWith(policy, 6, 0);
      fused.losses.forEach((l, i) => assert.ok(Math.abs(l - plain.losses[i]!) <= 1e-4 * Math.abs(plain.losses[i]!), `${name}: step ${i}: loss ${l}, unfused ${plain.losses[i]}`));
      plain.grad.forEach((v, i) => assert.ok(Math.abs(fused.grad[i]! - v) <= 1e-4 * scale, `${name}: gradient ${i}: ${fused.grad[i]}, unfused ${v}`));
    }
  });

  it('50 training steps with every fusion on, and with the production fusions, give the unfused losses within the drift of f32 rounding', async () => {
    // 32 images at lr 0.01 (momentum 0.9): the loss falls from 2.33 to ~1.44 in 50 steps, and the rounding
    // differences of the fused sums (1e-7 relative in a step) grow to ~3e-5 of the loss by step 50 on lavapipe;
    // a wrong fusion moves the first steps' losses by far more (the 6-step test above also checks the gradient)
    const o = { images: 32, lr: 0.01 };
    const plain = await trainWith(unfusedPolicy(), 50, 0, o);
    assert.ok(plain.losses[49]! < 0.8 * plain.losses[0]!, `the run trains: loss ${plain.losses[0]} -> ${plain.losses[49]}`);
    for (const [name, policy] of [['every fusion', allFusionsPolicy()], ['production', defaultKernelPolicy()]] as const) {
      const fused = await trainWith(policy, 50, 0, o);
      fused.losses.forEach((l, i) => assert.ok(Math.abs(l - plain.losses[i]!) <= 2e-4 * Math.abs(plain.losses[i]!), `${name}: step ${i}: loss ${l}, unfused ${plain.losses[i]}`));
    }
  });
});
