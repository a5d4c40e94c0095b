// ONNX export checked by a real consumer: the exported network runs in
// onnxruntime-node (CPU) on 256 images and must give our engine's eval-mode
// logits (max abs difference ≤ 1e-4), with the normalisation in the graph or
// not; the opset is read back from the model; an op without a mapping is
// refused by name.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { type Device, Rng, type Tensor, noGrad, tensor } from '../engine/index.ts';
import { OnnxExportError, exportOnnx } from '../engine/io/onnx.ts';
import { Linear, Module } from '../engine/nn/index.ts';
import { argmax } from '../engine/ops/loss.ts';
import { buildModel } from '../models/index.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

const TOLERANCE = 1e-4;
const IMAGES = 256;

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, `logits have ${a.length} and ${b.length} values`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = d; // NaN counts as the worst
  }
  return max;
}

/** Runs the ONNX model in onnxruntime on NCHW float input; returns the first output. */
export async function runOnnx(bytes: Uint8Array, input: Float32Array, shape: readonly number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', input, [...shape]) };
    const out = await session.run(feeds);
    return out[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Our engine's eval-mode logits for a batch. */
async function engineLogits(model: Module, x: Tensor): Promise<Float32Array> {
  model.eval();
  const y = noGrad(() => model.forward(x));
  const a = await y.toArray();
  y.dispose();
  model.train();
  return a;
}

/** Random γ, β and running statistics far from their initial 1/0, so eval-form batchnorm is really tested. */
function randomiseBatchNorm(model: Module, seed: number): void {
  const rng = new Rng(seed);
  const state: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(model.stateDict())) {
    const n = t.size;
    if (k.endsWith('running_mean') || k.endsWith('.bias')) state[k] = Array.from({ length: n }, () => rng.uniform(-0.5, 0.5));
    else if (k.endsWith('running_var')) state[k] = Array.from({ length: n }, () => rng.uniform(0.3, 2));
    else if (/bn\d?\.weight$|\.1\.weight$/.test(k)) state[k] = Array.from({ length: n }, () => rng.uniform(0.5, 1.5));
  }
  model.loadStateDict(state, { strict: false });
}

function randomImages(seed: number, n: number, shape: readonly [number, number, number]): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * shape[0] * shape[1] * shape[2] }, () => rng.uniform(0, 1));
}

function opsetOf(bytes: Uint8Array): number {
  const m = onnxProto.onnx.ModelProto.decode(bytes);
  return Number(m.opsetImport[0]!.version);
}

describe('ONNX export, run by onnxruntime-node', () => {
  let device: Device;
  before(async () => {
    device = await testDevice();
  });
  after(destroyTestDevice);

  it('ResNet-20 (option-A shortcuts, eval-form batchnorm): onnxruntime gives our logits on 256 images, opset 13', async () => {
    const model = buildModel('resnet20', device, { numClasses: 10, seed: 3 });
    randomiseBatchNorm(model, 4);
    const pixels = randomImages(5, IMAGES, [3, 32, 32]);
    const x = tensor(device, pixels, [IMAGES, 3, 32, 32]);
    const sample = tensor(device, pixels.subarray(0, 2 * 3 * 32 * 32), [2, 3, 32, 32]);
    const bytes = await exportOnnx(model, sample, {});
    assert.equal(opsetOf(bytes), 13);
    const ours = await engineLogits(model, x);
    const theirs = await runOnnx(bytes, pixels, [IMAGES, 3, 32, 32]);
    const d = maxAbsDiff(ours, theirs);
    console.log(`resnet20 max abs diff ${d}`);
    assert.ok(d <= TOLERANCE, `max |onnxruntime − engine| = ${d} > ${TOLERANCE}`);
    // the logits are not trivially equal (a constant output would pass any tolerance)
    assert.ok(Math.max(...ours) - Math.min(...ours) > 0.1, 'logits should vary');
    x.dispose();
    sample.dispose();
    model.dispose();
  });

  it('with the normalisation baked in: pixels in [0, 1] give the logits of the normalised input', async () => {
    const model = buildModel('smallcnn', device, { numClasses: 7, seed: 1, width: 8 });
    randomiseBatchNorm(model, 2);
    const mean = [0.49, 0.48, 0.45];
    const std = [0.25, 0.24, 0.26];
    const raw = randomImages(6, IMAGES, [3, 16, 16]);
    const plane = 16 * 16;
    const normalised = raw.map((v, i) => (v - mean[Math.floor(i / plane) % 3]!) / std[Math.floor(i / plane) % 3]!);
    const x = tensor(device, normalised, [IMAGES, 3, 16, 16]);
    const sample = tensor(device, normalised.subarray(0, 3 * 3 * plane), [3, 3, 16, 16]);
    const bytes = await exportOnnx(model, sample, { normalization: { mean, std }, opset: 17 });
    assert.equal(opsetOf(bytes), 17);
    const d = maxAbsDiff(await engineLogits(model, x), await runOnnx(bytes, raw, [IMAGES, 3, 16, 16]));
    assert.ok(d <= TOLERANCE, `max |onnxruntime − engine| = ${d} > ${TOLERANCE}`);
    x.dispose();
    sample.dispose();
    model.dispose();
  });

  it('refuses an op without an ONNX mapping, naming it, and an opset outside 13–17', async () => {
    class WithArgmax extends Module {
      readonly fc = this.register('fc', new Linear(device, 12, 4));
      forward(x: Tensor): Tensor {
        return argmax(this.fc.forward(x.flatten(1)));
      }
    }
    const model = new WithArgmax();
    const sample = tensor(device, new Float32Array(2 * 12), [2, 3, 2, 2]);
    await assert.rejects(exportOnnx(model, sample), (e: Error) => e instanceof OnnxExportError && /op 'argmax' has no ONNX mapping/.test(e.message));
    await assert.rejects(exportOnnx(model, sample, { opset: 9 }), /opset 9 is not supported \(13 to 17\)/);
    sample.dispose();
    model.dispose();
  });

  it('refuses batchnorm without running statistics (it would normalise with each batch)', async () => {
    const { BatchNorm2d } = await import('../engine/nn/index.ts');
    const bn = new BatchNorm2d(device, 3, { trackRunningStats: false });
    const sample = tensor(device, randomImages(1, 2, [3, 4, 4]), [2, 3, 4, 4]);
    await assert.rejects(exportOnnx(bn, sample), /normalises with the batch's statistics/);
    sample.dispose();
    bn.dispose();
  });
});
