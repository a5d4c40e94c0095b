// SGD against an independent float64 transliteration of PyTorch's torch.optim.SGD
// (and of the Caffe form Smith used) with schedules for LR and momentum, state
// save/restore bit-exact, and a small model trained with oneCycle handed to SGD.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type Device, Rng, SGD, type Tensor, accuracy, keep, linear, relu, softmaxCrossEntropy, tensor, tidy,
} from '../engine/index.ts';
import { oneCycle, type Schedule } from '../schedules/index.ts';
import { sgdSlotsPerDispatch } from '../kernels/sgd.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

interface RefOptions {
  lr: Schedule;
  momentum: Schedule;
  weightDecay: number;
  dampening: number;
  nesterov: boolean;
  decoupled: boolean;
  form: 'pytorch' | 'caffe';
}

/** torch/optim/sgd.py `_single_tensor_sgd`, plus SGDW-style decoupled decay and the Caffe update. */
function referenceSgd(w0: Float64Array, grads: (Float64Array | null)[], o: RefOptions): Float64Array {
  const w = Float64Array.from(w0);
  let buf: Float64Array | null = null;
  grads.forEach((g, t) => {
    if (!g) return; // no gradient this step: PyTorch skips the parameter
    const lr = o.lr(t);
    const mu = o.momentum(t);
    const d = new Float64Array(w.length);
    for (let i = 0; i < w.length; i++) {
      if (o.decoupled) w[i] = w[i]! - lr * o.weightDecay * w[i]!;
      d[i] = o.decoupled ? g[i]! : g[i]! + o.weightDecay * w[i]!;
    }
    if (o.form === 'caffe') {
      buf ??= new Float64Array(w.length);
      for (let i = 0; i < w.length; i++) {
        buf[i] = mu * buf[i]! - lr * d[i]!;
        w[i] = w[i]! + buf[i]!;
      }
      return;
    }
    if (buf === null) {
      buf = Float64Array.from(d);
    } else {
      for (let i = 0; i < w.length; i++) buf[i] = mu * buf[i]! + (1 - o.dampening) * d[i]!;
    }
    for (let i = 0; i < w.length; i++) {
      const step = o.nesterov ? d[i]! + mu * buf[i]! : buf[i]!;
      w[i] = w[i]! - lr * step;
    }
  });
  return w;
}

async function runGpuSgd(w0: Float64Array, grads: Float64Array[], o: RefOptions): Promise<{ w: Float32Array; lrs: number[]; moms: number[] }> {
  const w = tensor(device, w0, [w0.length]).requireGrad();
  const opt = new SGD({
    params: [w],
    lr: o.lr,
    momentum: o.momentum,
    weightDecay: o.weightDecay,
    dampening: o.dampening,
    nesterov: o.nesterov,
    decoupledWeightDecay: o.decoupled,
    form: o.form,
  });
  const lrs: number[] = [];
  const moms: number[] = [];
  for (const g of grads) {
    w.grad = keep(tensor(device, g, [g.length]));
    lrs.push(opt.lrAt());
    moms.push(opt.momentumAt());
    opt.step();
    opt.zeroGrad();
  }
  const out = await w.toArray();
  opt.dispose();
  w.dispose();
  return { w: out, lrs, moms };
}

describe('SGD', () => {
  it('matches PyTorch/Caffe SGD step by step under a one-cycle LR and momentum schedule', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 5, max: 40 }),
        fc.constantFrom(0, 1e-4, 5e-2),
        fc.constantFrom(0, 0.3),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom('pytorch', 'caffe'),
        fc.nat(),
        async (n, steps, weightDecay, dampening, nesterov, decoupled, form, seed) => {
          if (form === 'caffe') nesterov = false;
          if (nesterov) dampening = 0;
          const rng = new Rng(seed);
          const w0 = Float64Array.from({ length: n }, () => Math.fround(rng.uniform(-1, 1)));
          const grads = Array.from({ length: steps }, () => Float64Array.from({ length: n }, () => Math.fround(rng.uniform(-1, 1))));
          const cycle = oneCycle({ maxLr: 0.5, totalSteps: steps });
          const o: RefOptions = { lr: cycle.lr, momentum: cycle.momentum, weightDecay, dampening, nesterov, decoupled, form };
          const want = referenceSgd(w0, grads, o);
          const got = await runGpuSgd(w0, grads, o);
          for (let t = 0; t < steps; t++) {
            assert.equal(got.lrs[t], cycle.lr(t), `lr used at step ${t}`);
            assert.equal(got.moms[t], cycle.momentum(t), `momentum used at step ${t}`);
          }
          // f32 arithmetic over ≤ 40 steps of O(1) updates: 1e-5 absolute is ~100 ulps of slack
          for (let i = 0; i < n; i++) {
            assert.ok(Math.abs(got.w[i]! - want[i]!) < 1e-5, `w[${i}] = ${got.w[i]}, reference ${want[i]} (${form}, nesterov=${nesterov})`);
          }
        },
      ),
      { numRuns: 15 },
    );
  });

  it('updates many parameters of odd sizes, several per dispatch, each as the reference does (some without a gradient at some steps)', async () => {
    const per = sgdSlotsPerDispatch(device);
    assert.ok(per >= 2, `this adapter's storage-buffer limit allows ${per} parameters per dispatch`);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 300 }), matrix: fc.boolean(), sometimesNoGrad: fc.boolean() }), { minLength: 1, maxLength: 3 * per + 1 }),
        fc.constantFrom(0, 5e-2),
        fc.boolean(),
        fc.constantFrom('pytorch', 'caffe'),
        fc.nat(),
        async (specs, weightDecay, nesterov, form, seed) => {
          if (form === 'caffe') nesterov = false;
          const steps = 6;
          const rng = new Rng(seed);
          const cycle = oneCycle({ maxLr: 0.5, totalSteps: steps });
          const params = specs.map((spec) => {
            const w0 = Float64Array.from({ length: spec.n }, () => Math.fround(rng.uniform(-1, 1)));
            // a parameter without a gradient at steps 0 and 3: its first update comes later, and it is skipped once
            const grads = Array.from({ length: steps }, (_, t) =>
              spec.sometimesNoGrad && t % 3 === 0 ? null : Float64Array.from({ length: spec.n }, () => Math.fround(rng.uniform(-1, 1))));
            const shape = spec.matrix ? [1, spec.n] : [spec.n];
            return { spec, w0, grads, shape, w: tensor(device, w0, shape).requireGrad() };
          });
          const opt = new SGD({
            params: params.map((q) => q.w), lr: cycle.lr, momentum: cycle.momentum, weightDecay, nesterov, form, noDecay: 'bias-and-norm',
          });
          for (let t = 0; t < steps; t++) {
            let withGrad = 0;
            for (const q of params) {
              const g = q.grads[t];
              if (g) {
                q.w.grad = keep(tensor(device, g, q.shape));
                withGrad++;
              }
            }
            const before = device.executionStats().dispatches;
            opt.step();
            // from step 2 on every velocity exists (a new one is a fill dispatch)
            if (t >= 2) assert.equal(device.executionStats().dispatches - before, Math.ceil(withGrad / per), `dispatches for ${withGrad} parameters`);
            opt.zeroGrad();
          }
          for (const [k, q] of params.entries()) {
            const o: RefOptions = { lr: cycle.lr, momentum: cycle.momentum, weightDecay: q.spec.matrix ? weightDecay : 0, dampening: 0, nesterov, decoupled: false, form };
            const want = referenceSgd(q.w0, q.grads, o);
            const got = await q.w.toArray();
            for (let i = 0; i < q.spec.n; i++) {
              assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `parameter ${k} (${q.spec.n} values) w[${i}] = ${got[i]}, reference ${want[i]}`);
            }
            q.w.dispose();
          }
          opt.dispose();
        },
      ),
      { numRuns: 12 },
    );
  });

  it("'bias-and-norm' leaves 1-D parameters out of weight decay", async () => {
    const w = tensor(device, [1, 2, 3, 4], [2, 2]).requireGrad();
    const b = tensor(device, [1, 2], [2]).requireGrad();
    const opt = new SGD({ params: [w, b], lr: 0.1, weightDecay: 0.5, noDecay: 'bias-and-norm' });
    w.grad = keep(tensor(device, [0, 0, 0, 0], [2, 2]));
    b.grad = keep(tensor(device, [0, 0], [2]));
    opt.step();
    assert.deepEqual([...(await w.toArray())], [1, 2, 3, 4].map((x) => Math.fround(x - 0.1 * 0.5 * x)));
    assert.deepEqual([...(await b.toArray())], [1, 2]);
    opt.dispose();
  });

  it('rejects invalid options', () => {
    const w = tensor(device, [1], [1]);
    assert.throws(() => new SGD({ params: [], lr: 0.1 }), /no parameters/);
    assert.throws(() => new SGD({ params: [w], lr: -1 }), /lr must be/);
    assert.throws(() => new SGD({ params: [w], lr: Number.NaN }), /lr must be/);
    assert.throws(() => new SGD({ params: [w], lr: 0.1, nesterov: true, dampening: 0.1 }), /Nesterov/);
    assert.throws(() => new SGD({ params: [w], lr: 0.1, weightDecay: -1 }), /weightDecay/);
    w.dispose();
  });

  it('state saves and restores so a resumed run continues bit-exactly', async () => {
    const rng = new Rng(3);
    const n = 257;
    const w0 = Float32Array.from({ length: n }, () => rng.uniform(-1, 1));
    const grads = Array.from({ length: 20 }, () => Float32Array.from({ length: n }, () => rng.uniform(-1, 1)));
    const cycle = oneCycle({ maxLr: 1, totalSteps: 20 });
    const make = (w: Tensor) => new SGD({ params: [w], lr: cycle.lr, momentum: cycle.momentum, weightDecay: 1e-3, nesterov: true });
    const runSteps = (opt: SGD, w: Tensor, from: number, to: number) => {
      for (let t = from; t < to; t++) {
        w.grad = keep(tensor(device, grads[t]!, [n]));
        opt.step();
        opt.zeroGrad();
      }
    };
    const wa = tensor(device, w0, [n]).requireGrad();
    const a = make(wa);
    runSteps(a, wa, 0, 10);
    const saved = await a.state();
    const savedW = await wa.toArray();
    runSteps(a, wa, 10, 20);
    const straight = await wa.toArray();

    const wb = tensor(device, savedW, [n]).requireGrad();
    const b = make(wb);
    b.loadState(saved);
    assert.equal(b.stepCount, 10);
    runSteps(b, wb, 10, 20);
    assert.deepEqual(await wb.toArray(), straight);
    assert.throws(() => b.loadState({ step: 1, velocities: [] }), /1 parameters/);
    a.dispose();
    b.dispose();
  });

  it('trains a small MLP with oneCycle handed to SGD, using the schedule at every step', async () => {
    // XOR of the signs of two coordinates: needs the hidden layer
    const rng = new Rng(11);
    const N = 256;
    const xs = new Float32Array(N * 2);
    const ys = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      xs[2 * i] = rng.uniform(-1, 1);
      xs[2 * i + 1] = rng.uniform(-1, 1);
      ys[i] = xs[2 * i]! * xs[2 * i + 1]! > 0 ? 1 : 0;
    }
    const x = tensor(device, xs, [N, 2]);
    const y = tensor(device, ys, [N], 'i32');
    const init = (shape: number[], fanIn: number) =>
      tensor(device, Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn)), shape).requireGrad();
    const params = [init([32, 2], 2), init([32], 2), init([2, 32], 32), init([2], 32)];
    const steps = 200;
    const cycle = oneCycle({ maxLr: 1, totalSteps: steps });
    const opt = new SGD({ params, lr: cycle.lr, momentum: cycle.momentum });
    const [w1, b1, w2, b2] = params as [Tensor, Tensor, Tensor, Tensor];
    const used: [number, number][] = [];
    for (let t = 0; t < steps; t++) {
      tidy(() => {
        const loss = softmaxCrossEntropy(linear(relu(linear(x, w1, b1)), w2, b2), y);
        loss.backward();
      });
      used.push([opt.lrAt(), opt.momentumAt()]);
      opt.step();
      opt.zeroGrad();
    }
    used.forEach(([lr, mom], t) => {
      assert.equal(lr, cycle.lr(t));
      assert.equal(mom, cycle.momentum(t));
    });
    const acc = await tidy(() => accuracy(linear(relu(linear(x, w1, b1)), w2, b2), y)).item();
    assert.ok(acc >= 0.95, `training accuracy ${acc}`);
    opt.dispose();
  });
});
