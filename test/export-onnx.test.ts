// ONNX export checked by a real consumer: the exported network runs in
// onnxruntime-node (CPU) on 256 images and must give our engine's eval-mode
// logits (max abs difference ≤ 1e-4), with the normalisation in the graph or
// not; the opset is read back from the model; an op without a mapping is
// refused by name. Then the same through a trained run's checkpoint (the export
// command's path), and a user's own model file (examples/tiny-vgg.ts): trained,
// checkpointed, resumed (and refused when the file changed), evaluated, exported.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { type Device, Rng, type Tensor, noGrad, tensor } from '../engine/index.ts';
import { OnnxExportError, exportOnnx } from '../engine/io/onnx.ts';
import { Linear, Module } from '../engine/nn/index.ts';
import { argmax } from '../engine/ops/loss.ts';
import { buildModel } from '../models/index.ts';
import { DEFAULTS, type TrainConfig, validateConfig } from '../run/config.ts';
import { evaluateCheckpoint } from '../run/eval.ts';
import { exportCheckpoint } from '../run/export.ts';
import { augmenterFor, loadDatasets } from '../run/session.ts';
import { runTraining } from '../run/train.ts';
import { openTrainedCheckpoint, restoreTrainedModel } from '../run/trained.ts';
import { readSafetensors } from '../engine/io/safetensors.ts';
import { datasetSize } from '../data/dataset.ts';
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
    console.log(`resnet20 (random batchnorm statistics): max |onnxruntime − engine| ${d.toExponential(2)}`);
    assert.ok(d <= TOLERANCE, `max |onnxruntime − engine| = ${d} > ${TOLERANCE}`);
    // the logits are not trivially equal (a constant output would pass any tolerance)
    assert.ok(Math.max(...ours) - Math.min(...ours) > 0.1, 'logits should vary');
    x.dispose();
    sample.dispose();
    model.dispose();
  });

  it('ResNet-9 (max pools, residual add, scale) and an option-B ResNet-8 (1×1 projection + batchnorm): same logits', async () => {
    const { resnet } = await import('../models/index.ts');
    const models: [string, Module][] = [
      ['resnet9', buildModel('resnet9', device, { numClasses: 10, seed: 2, width: 8 })],
      ['resnet8 option B', resnet(device, { depth: 8, shortcut: 'B', numClasses: 10, seed: 2 })],
    ];
    const n = 64;
    const pixels = randomImages(8, n, [3, 32, 32]);
    const x = tensor(device, pixels, [n, 3, 32, 32]);
    const sample = tensor(device, pixels.subarray(0, 3 * 3 * 32 * 32), [3, 3, 32, 32]);
    for (const [name, model] of models) {
      randomiseBatchNorm(model, 5);
      const d = maxAbsDiff(await engineLogits(model, x), await runOnnx(await exportOnnx(model, sample), pixels, [n, 3, 32, 32]));
      assert.ok(d <= TOLERANCE, `${name}: max |onnxruntime − engine| = ${d} > ${TOLERANCE}`);
      model.dispose();
    }
    x.dispose();
    sample.dispose();
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

  it('a module written from ops (mean over H and W, add, mul, sub, scale, relu, avgPool2d, a constant): same logits', async () => {
    const { avgPool2d } = await import('../engine/ops/pool.ts');
    const { add, mean, mul, relu, scale, sub, sum } = await import('../engine/ops/index.ts');
    const { Conv2d } = await import('../engine/nn/index.ts');
    class FromOps extends Module {
      readonly conv = this.register('conv', new Conv2d(device, 3, 6, 3, { padding: 1, seed: 8 }));
      readonly fc = this.register('fc', new Linear(device, 6, 5, { seed: 9 }));
      forward(x: Tensor): Tensor {
        const h = relu(this.conv.forward(avgPool2d(x, 3, { stride: 1, padding: 1, countIncludePad: false })));
        const shift = tensor(device, [0.1, -0.2, 0.3, 0, 0.5, -0.1], [1, 6, 1, 1]);
        const g = mean(add(mul(h, h), sub(h, shift)), [2, 3]);
        return scale(add(this.fc.forward(g), sum(g, 1, true)), 0.5);
      }
    }
    const model = new FromOps();
    const pixels = randomImages(7, IMAGES, [3, 8, 8]);
    const x = tensor(device, pixels, [IMAGES, 3, 8, 8]);
    const sample = tensor(device, pixels.subarray(0, 2 * 3 * 64), [2, 3, 8, 8]);
    const bytes = await exportOnnx(model, sample);
    const d = maxAbsDiff(await engineLogits(model, x), await runOnnx(bytes, pixels, [IMAGES, 3, 8, 8]));
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

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TINY_VGG = join(ROOT, 'examples', 'tiny-vgg.ts');

/** A small synthetic run's configuration (16×16 images, 256+ test images). */
function runConfig(out: string, over: Partial<TrainConfig>): TrainConfig {
  return validateConfig(
    { ...DEFAULTS, imageSize: 16, syntheticTrain: 256, syntheticTest: IMAGES, batchSize: 32, iterations: 4, logEvery: 4, maxLr: 0.4, out, ...over },
    'export test',
  );
}

/**
 * Exports the run's checkpoint with and without the normalisation in the graph
 * and compares onnxruntime's logits with the engine's on the run's 256 test
 * images (the engine's input normalised by the augmenter, onnxruntime's baked
 * input the raw pixels / 255).
 */
async function checkRunExport(device: Device, run: string): Promise<number[]> {
  const trained = await openTrainedCheckpoint(run);
  const config = trained.checkpoint.sidecar.config;
  const { test } = await loadDatasets(config);
  assert.ok(datasetSize(test) >= IMAGES);
  const model = await restoreTrainedModel(device, config, test, trained, () => {});
  const augmenter = augmenterFor(device, config, test);
  const shape = [IMAGES, ...test.shape];
  const images = test.images.subarray(0, IMAGES * test.shape[0] * test.shape[1] * test.shape[2]);
  const x = augmenter.eval(images);
  const normalised = await x.toArray();
  const ours = await engineLogits(model, x);
  x.dispose();
  augmenter.dispose();
  model.dispose();
  const diffs: number[] = [];
  for (const bake of [false, true]) {
    const out = join(run, bake ? 'baked.onnx' : 'model.onnx');
    const r = await exportCheckpoint({ checkpoint: run, format: 'onnx', out, bakeNormalization: bake }, { device });
    assert.equal(r.path, out);
    const bytes = readFileSync(out);
    assert.equal(opsetOf(bytes), 13);
    const input = bake ? Float32Array.from(images, (v) => v / 255) : normalised;
    const d = maxAbsDiff(ours, await runOnnx(bytes, input, shape));
    assert.ok(d <= TOLERANCE, `${config.model}${bake ? ' (normalisation baked in)' : ''}: max |onnxruntime − engine| = ${d} > ${TOLERANCE}`);
    diffs.push(d);
  }
  return diffs;
}

describe('export of a trained run, and your own model file', () => {
  let device: Device;
  let dir: string;
  before(async () => {
    device = await testDevice();
    dir = mkdtempSync(join(tmpdir(), 'export-onnx-'));
  });
  after(async () => {
    await destroyTestDevice();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a briefly trained ResNet-20 checkpoint exports to ONNX (with and without baked normalisation) and to safetensors', async () => {
    const run = join(dir, 'r20');
    const r = await runTraining(runConfig(run, { model: 'resnet20', maxLr: 0.1 }), { quiet: true, log: () => {}, device });
    assert.equal(r.result.end, 'completed', r.result.message);
    const ckpt = await openTrainedCheckpoint(run);
    // the running statistics moved in training: eval-form batchnorm is really exercised
    const rm = ckpt.checkpoint.tensors['layer2.0.bn2.running_mean']!.data as Float32Array;
    assert.ok(rm.some((v) => Math.abs(v) > 1e-3), 'running_mean still zero');
    const diffs = await checkRunExport(device, run);
    console.log(`resnet20 checkpoint: max |onnxruntime − engine| ${diffs.map((d) => d.toExponential(2)).join(' (plain), ')} (baked)`);

    const st = await exportCheckpoint({ checkpoint: run, format: 'safetensors' }, { device });
    assert.equal(st.path, join(run, 'model.safetensors'));
    const file = await readSafetensors(st.path);
    for (const [k, t] of Object.entries(ckpt.checkpoint.tensors)) {
      assert.deepEqual(file.tensors[k]?.shape, t.shape, k);
      assert.deepEqual(Array.from(file.tensors[k]!.data as ArrayLike<number | bigint>), Array.from(t.data as ArrayLike<number | bigint>), k);
    }
    assert.equal(Object.keys(file.tensors).length, Object.keys(ckpt.checkpoint.tensors).length);
    assert.deepEqual(JSON.parse(file.metadata!.classes!), [...(await loadDatasets(ckpt.checkpoint.sidecar.config)).test.classNames]);
    await assert.rejects(exportCheckpoint({ checkpoint: run, format: 'safetensors', opset: 13 }, { device }), /apply to --format onnx only/);
  });

  it('examples/tiny-vgg.ts: trains, checkpoints with its path and SHA-256, resumes, evaluates and exports like a built-in model', async () => {
    const run = join(dir, 'vgg');
    const config = runConfig(run, { model: TINY_VGG, checkpointEvery: 2 });
    const first = await runTraining(config, { quiet: true, log: () => {}, device });
    assert.equal(first.result.end, 'completed');
    const ckpt = await openTrainedCheckpoint(run);
    const saved = ckpt.checkpoint.sidecar.config;
    assert.equal(saved.model, TINY_VGG);
    assert.match(saved.modelSha256 ?? '', /^[0-9a-f]{64}$/);
    assert.ok('features.0.conv.weight' in ckpt.checkpoint.tensors && 'classifier.bias' in ckpt.checkpoint.tensors);
    // resume: extend the run by 2 steps
    const resumed = await runTraining({ ...config, iterations: 6 }, { resume: true, changes: { iterations: 6 }, quiet: true, log: () => {}, device });
    assert.equal(resumed.result.end, 'completed');
    assert.equal((await openTrainedCheckpoint(run)).checkpoint.step, 6);
    const report = await evaluateCheckpoint({ checkpoint: run }, { device });
    assert.equal(report.images, IMAGES);
    const diffs = await checkRunExport(device, run);
    console.log(`tiny-vgg checkpoint: max |onnxruntime − engine| ${diffs.map((d) => d.toExponential(2)).join(' (plain), ')} (baked)`);
  });

  it('a changed model file: resume refuses it unless --allow-model-change, eval and export warn', async () => {
    // a copy of the example outside the package imports the engine by its path
    const file = join(dir, 'my-net.mts'); // an ES module wherever it lies (a .ts outside a "type": "module" package loads as CommonJS)
    const source = readFileSync(TINY_VGG, 'utf8').replace("from 'onecycle-gpu'", `from '${join(ROOT, 'engine', 'index.ts')}'`);
    writeFileSync(file, source);
    const run = join(dir, 'changed');
    const config = runConfig(run, { model: file });
    await runTraining(config, { quiet: true, log: () => {}, device });
    writeFileSync(file, `${source}\n// edited after training\n`);
    const more = { ...config, iterations: 6 };
    await assert.rejects(
      runTraining(more, { resume: true, changes: { iterations: 6 }, quiet: true, log: () => {}, device }),
      (e: Error) => /--resume: the model file .*my-net\.mts changed since the run started \(SHA-256 [0-9a-f]{12}… then, [0-9a-f]{12}… now\).*--allow-model-change/.test(e.message),
    );
    const warnings: string[] = [];
    await evaluateCheckpoint({ checkpoint: run }, { device, log: (s) => warnings.push(s) });
    assert.ok(warnings.some((w) => /warning: the model file .*my-net\.mts changed since the run started/.test(w)), warnings.join('\n'));
    const exportWarnings: string[] = [];
    await exportCheckpoint({ checkpoint: run, format: 'onnx' }, { device, log: (s) => exportWarnings.push(s) });
    assert.ok(exportWarnings.some((w) => /warning: the model file/.test(w)), exportWarnings.join('\n'));
    const lines: string[] = [];
    const r = await runTraining(more, { resume: true, allowModelChange: true, changes: { iterations: 6 }, quiet: true, log: (s) => lines.push(s), device });
    assert.equal(r.result.end, 'completed');
    assert.ok(lines.some((l) => /warning: the model file .* changed .*--allow-model-change/.test(l)), lines.join('\n'));
    // the checkpoints from now on carry the new file's hash: the next resume is not refused
    const now = (await openTrainedCheckpoint(run)).checkpoint.sidecar.config.modelSha256;
    assert.notEqual(now, config.modelSha256);
    await runTraining({ ...config, iterations: 7 }, { resume: true, changes: { iterations: 7 }, quiet: true, log: () => {}, device });
  });

  it('a model file that does not build a Module is refused with its path and why', async () => {
    const bad = join(dir, 'not-a-model.ts');
    writeFileSync(bad, 'export default () => 42;\n');
    await assert.rejects(runTraining(runConfig(join(dir, 'bad'), { model: bad }), { quiet: true, log: () => {}, device }), /not-a-model\.ts: the default export returned number, not an nn\.Module/);
    const none = join(dir, 'no-default.ts');
    writeFileSync(none, 'export const x = 1;\n');
    await assert.rejects(runTraining(runConfig(join(dir, 'bad2'), { model: none }), { quiet: true, log: () => {}, device }), /no-default\.ts: the file's default export must be a function/);
    await assert.rejects(runTraining(runConfig(join(dir, 'bad3'), { model: join(dir, 'missing.ts') }), { quiet: true, log: () => {}, device }), /missing\.ts: cannot read the model file: no such file/);
    assert.throws(() => runConfig(join(dir, 'bad4'), { model: TINY_VGG, width: 8 }), /width applies to the built-in models; a model file .* sets its own widths/);
    assert.throws(() => runConfig(join(dir, 'bad5'), { model: 'my-net' }), /unknown model 'my-net' \(one of resnet8, .*, or a model file's path/);
  });

  it('from the command line: train --model ./examples/tiny-vgg.ts, then export --format onnx', () => {
    const run = join(dir, 'cli');
    const cli = (args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'cli', 'main.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    const t = cli(['train', '--model', './examples/tiny-vgg.ts', '--image-size', '16', '--synthetic-train', '128', '--synthetic-test', '64',
      '--batch-size', '32', '--iterations', '4', '--out', run, '--quiet']);
    assert.equal(t.status, 0, `train failed:\n${t.stderr}${t.stdout}`);
    assert.match(String(t.stdout), /final test accuracy/);
    const e = cli(['export', '--checkpoint', run, '--format', 'onnx', '--opset', '15', '--quiet']);
    assert.equal(e.status, 0, `export failed:\n${e.stderr}${e.stdout}`);
    assert.match(String(e.stdout), /ONNX opset 15: input 'input' \[batch, 3, 16, 16\]/);
    assert.equal(opsetOf(readFileSync(join(run, 'model.onnx'))), 15);
    assert.ok(existsSync(join(run, 'model.onnx')));
    const help = cli(['--help']);
    assert.match(String(help.stdout), /^ {2}export {7}/m);
  });
});
