// One helper checks an op's forward and every input's gradient against the
// float64 reference (tinygrad's helper_test_op, for WebGPU); another checks the
// reference's own backward by central finite differences.
import assert from 'node:assert/strict';
import { type Device, Rng, type Tensor, cast, createDevice, tensor, tidy } from '../engine/index.ts';
import { type Arr, type RefOp, arr, size } from './reference.ts';
import type { KernelPolicy } from '../gpu/policy.ts';

let shared: Promise<Device> | null = null;

/** One device per test file (Node runs each file in its own process). */
export function testDevice(): Promise<Device> {
  shared ??= createDevice();
  return shared;
}

/**
 * Closes the file's device: waits for its submitted work and pending error
 * scopes first (Device.close), since destroying it with promises in flight can
 * abort dawn.node at exit (seen once in CI after test/grad-scaler.test.ts's
 * tests had all passed: SIGABRT in pthread_mutex_lock).
 */
export async function destroyTestDevice(): Promise<void> {
  if (shared) await (await shared).close();
  shared = null;
}

export function randomArr(rng: Rng, shape: number[], low = -1, high = 1): Arr {
  const a = arr(shape);
  for (let i = 0; i < a.data.length; i++) a.data[i] = Math.fround(rng.uniform(low, high));
  return a;
}

export interface Tolerance {
  /** absolute part, as a fraction of the reference's largest magnitude */
  atol: number;
  rtol: number;
}

/**
 * |got − want| ≤ atol·max(1, max|want|) + rtol·|want| elementwise; the message
 * names the worst element.
 */
export function assertClose(got: ArrayLike<number>, want: Arr, tol: Tolerance, what: string): void {
  assert.equal(got.length, want.data.length, `${what}: ${got.length} values, expected ${want.data.length}`);
  let scale = 1;
  for (const v of want.data) scale = Math.max(scale, Math.abs(v));
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want.data[i]!);
    const allowed = tol.atol * scale + tol.rtol * Math.abs(want.data[i]!);
    if (!(err <= allowed) && (worst < 0 || err - allowed > worstExcess)) {
      worst = i;
      worstExcess = err - allowed;
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${what} [shape ${JSON.stringify(want.shape)}]: element ${worst} is ${got[worst]}, reference ${want.data[worst]} ` +
        `(|err| ${Math.abs(got[worst]! - want.data[worst]!).toExponential(2)}, atol ${tol.atol}·${scale.toPrecision(3)}, rtol ${tol.rtol})`,
    );
  }
}

export interface OpCase {
  /** inputs' values (float64, already representable in f32) */
  inputs: Arr[];
  /** which inputs are differentiable (default: all f32 inputs) */
  grad?: boolean[];
  /** inputs uploaded as i32 (labels) */
  int?: boolean[];
  gpu: (ts: Tensor[]) => Tensor;
  ref: RefOp;
  tol?: Tolerance;
  gradTol?: Tolerance;
  seed?: number;
}

export const DEFAULT_TOL: Tolerance = { atol: 1e-5, rtol: 1e-4 };

/** Runs the op on the GPU with a random upstream gradient and compares everything with the reference. */
export async function checkOp(device: Device, c: OpCase): Promise<void> {
  const rng = new Rng(c.seed ?? 1234);
  const tol = c.tol ?? DEFAULT_TOL;
  const gradTol = c.gradTol ?? tol;
  const want = c.ref.forward(c.inputs);
  const g = randomArr(rng, want.shape);
  const wantGrads = c.ref.backward(c.inputs, g);
  const result = tidy(() => {
    const ts = c.inputs.map((x, i) => {
      const t = tensor(device, x.data, x.shape, c.int?.[i] ? 'i32' : 'f32');
      if (!c.int?.[i] && (c.grad?.[i] ?? true)) t.requireGrad();
      return t;
    });
    const out = c.gpu(ts);
    const gt = tensor(device, g.data, out.shape);
    if (out.requiresGrad) out.backward(gt);
    return { ts, out };
  });
  try {
    assert.deepEqual([...result.out.shape], want.shape, `${c.ref.name}: output shape`);
    assertClose(await result.out.toArray(), want, tol, `${c.ref.name} forward`);
    for (let i = 0; i < c.inputs.length; i++) {
      const t = result.ts[i]!;
      if (!t.requiresGrad) continue;
      assert.ok(t.grad, `${c.ref.name}: input ${i} got no gradient`);
      assertClose(await t.grad.toArray(), wantGrads[i]!, gradTol, `${c.ref.name} gradient of input ${i}`);
    }
  } finally {
    for (const t of result.ts) {
      t.grad?.dispose();
      t.dispose();
    }
    result.out.dispose();
  }
}

/** Central finite differences of <g, f(x)> against the reference's backward (float64). */
export function checkRefGrad(op: RefOp, inputs: Arr[], opts: { seed?: number; skip?: number[]; h?: number; tol?: number } = {}): void {
  const rng = new Rng(opts.seed ?? 99);
  const h = opts.h ?? 1e-6;
  const out = op.forward(inputs);
  const g = randomArr(rng, out.shape);
  const analytic = op.backward(inputs, g);
  const dot = (y: Arr): number => y.data.reduce((s, v, i) => s + v * g.data[i]!, 0);
  inputs.forEach((x, k) => {
    if (opts.skip?.includes(k)) return;
    for (let i = 0; i < size(x.shape); i++) {
      const orig = x.data[i]!;
      x.data[i] = orig + h;
      const up = dot(op.forward(inputs));
      x.data[i] = orig - h;
      const down = dot(op.forward(inputs));
      x.data[i] = orig;
      const numeric = (up - down) / (2 * h);
      const a = analytic[k]!.data[i]!;
      const tol = opts.tol ?? 1e-6;
      assert.ok(
        Math.abs(numeric - a) <= tol * Math.max(1, Math.abs(numeric)),
        `${op.name}: d/d input ${k}[${i}] analytic ${a} vs finite difference ${numeric}`,
      );
    }
  });
}

/**
 * Replaces parts of the device's kernel policy (which kernel variants the planners may
 * choose: gpu/policy.ts) for a test; returns the function that restores the policy the
 * device had before.
 */
export function setPolicy(
  device: Device,
  patch: { conv?: Partial<KernelPolicy['conv']>; matmul?: Partial<KernelPolicy['matmul']>; batchnorm?: Partial<KernelPolicy['batchnorm']>; fusion?: Partial<KernelPolicy['fusion']> },
): () => void {
  const saved = device.policy;
  device.policy = {
    ...saved,
    conv: { ...saved.conv, ...patch.conv },
    matmul: { ...saved.matmul, ...patch.matmul },
    batchnorm: { ...saved.batchnorm, ...patch.batchnorm },
    fusion: { ...saved.fusion, ...patch.fusion },
  };
  return () => {
    device.policy = saved;
  };
}

// ------------------------------------------------------------------ half precision

/** IEEE binary16 rounding of a double (ties to even, subnormals, ±inf past 65504), by arithmetic: independent of the bit code in kernels/cast.ts. */
export function toHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity; // 65504 + half an ulp (16) rounds up
  const e = Math.max(Math.floor(Math.log2(a)), -14); // subnormals share the smallest exponent
  const ulp = 2 ** (e - 10);
  let q = a / ulp;
  const f = Math.floor(q);
  q = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * q * ulp;
}

/** The values of a rounded to f16 (what an f16 tensor of them holds). */
export const halfArr = (a: Arr): Arr => ({ shape: a.shape, data: Float64Array.from(a.data, toHalf) });

/** Results and gradients each rounded to f16 once (2^-11 relative) against the float64 reference. */
export const F16_TOL: Tolerance = { atol: 2e-3, rtol: 4e-3 };

/** The op on its inputs cast to f16; its result must be f16 (an f16 activation stays f16), read back through a cast to f32. */
export const half = (fn: (ts: Tensor[]) => Tensor) => (ts: Tensor[]): Tensor => {
  const y = fn(ts.map((t) => cast(t, 'f16')));
  assert.equal(y.dtype, 'f16', `${y.op}: f16 input gave a ${y.dtype} output`);
  return cast(y, 'f32');
};
