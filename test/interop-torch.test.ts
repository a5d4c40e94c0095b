// PyTorch interop, for real: (a) a ResNet trained a few steps by the engine,
// saved by its own checkpoint writer, loads with load_state_dict(strict=True)
// into an independent PyTorch CIFAR ResNet (test/interop_torch.py, written from
// He et al.) and gives the engine's eval-mode logits; (b) a state_dict written
// by PyTorch loads through the engine's safetensors reader into our model and
// gives PyTorch's logits. Skipped, with the reason printed, only where no
// Python with torch is found.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS, type TrainConfig, validateConfig } from '../run/config.ts';
import { runTraining } from '../run/train.ts';
import { type Device, noGrad, tensor } from '../engine/index.ts';
import { loadCheckpoint } from '../engine/io/checkpoint.ts';
import { type StoredTensor, readSafetensors, writeSafetensors } from '../engine/io/safetensors.ts';
import type { Module } from '../engine/nn/index.ts';
import { augmenterFor, evalSource, loadDatasets, modelFor } from '../run/session.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

const HERE = new URL('.', import.meta.url).pathname;
const TOLERANCE = 1e-4;
const STEPS = 6;

/** The first Python that imports torch: Debian's /usr/bin/python3, then python3 on PATH. */
function findTorchPython(): { python: string } | { skip: string } {
  const tried: string[] = [];
  for (const python of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { python };
    tried.push(`${python}: ${r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  return { skip: `no Python with torch (${tried.join('; ')}); install Debian's python3-torch (.ci/run does)` };
}

const found = findTorchPython();
// CI sets this where it installed torch: a skip there would hide a broken set-up
if ('skip' in found && process.env.ONECYCLE_REQUIRE_TORCH === '1') {
  throw new Error(`interop-torch: ONECYCLE_REQUIRE_TORCH=1 but ${found.skip}`);
}
if ('skip' in found) console.log(`interop-torch: skipped: ${found.skip}`);
const skip = 'skip' in found ? found.skip : false;

function maxAbsDiff(a: Float32Array, b: Float32Array): { max: number; at: number } {
  assert.equal(a.length, b.length, `logits have ${a.length} and ${b.length} values`);
  let max = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) [max, at] = [d, i]; // NaN counts as the worst
  }
  return { max, at };
}

function f32(t: StoredTensor | undefined, what: string): Float32Array {
  assert.ok(t, `${what} is missing`);
  assert.equal(t.dtype, 'F32', `${what} is ${t.dtype}`);
  return t.data as Float32Array;
}

/** Eval-mode logits of `model` on the NCHW images `x` (host values). */
async function evalLogits(device: Device, model: Module, x: Float32Array, shape: number[]): Promise<Float32Array> {
  model.eval();
  const input = tensor(device, x, shape);
  const logits = noGrad(() => model.forward(input));
  const out = await logits.toArray();
  input.dispose();
  logits.dispose();
  return out;
}

describe('PyTorch interop', { skip }, () => {
  let device: Device;
  let dir: string;
  before(async () => {
    device = await testDevice();
    dir = mkdtempSync(join(tmpdir(), 'interop-torch-'));
  });
  after(async () => {
    await destroyTestDevice();
    rmSync(dir, { recursive: true, force: true });
  });

  it('engine checkpoint → PyTorch (strict load, same logits) and PyTorch state_dict → engine (same logits)', async () => {
    const python = (found as { python: string }).python;
    const config: TrainConfig = validateConfig(
      {
        ...DEFAULTS,
        model: 'resnet8',
        imageSize: 16,
        syntheticTrain: 192,
        syntheticTest: 64,
        batchSize: 32,
        iterations: STEPS,
        logEvery: STEPS,
        maxLr: 0.4,
        out: join(dir, 'run'),
      },
      'interop test',
    );
    await runTraining(config, { quiet: true, log: () => {}, device });

    // what `eval` does: the newest checkpoint through the engine's loader
    const ckpt = await loadCheckpoint(join(config.out, 'checkpoints'));
    const nbt = ckpt.tensors['layer1.0.bn1.num_batches_tracked'];
    assert.equal(nbt?.dtype, 'I64');
    assert.equal((nbt.data as BigInt64Array)[0], BigInt(STEPS));
    // running statistics must have moved, or they would not be tested
    assert.ok(f32(ckpt.tensors['layer2.0.bn2.running_mean'], 'running_mean').some((v) => Math.abs(v) > 1e-3), 'running_mean still zero');
    assert.ok(f32(ckpt.tensors['layer2.0.bn2.running_var'], 'running_var').some((v) => Math.abs(v - 1) > 1e-3), 'running_var still one');
    copyFileSync(join(ckpt.dir, 'model.safetensors'), join(dir, 'engine.safetensors'));

    const data = await loadDatasets(config);
    const model = await modelFor(device, config, data.test);
    const augmenter = augmenterFor(device, config, data.test);
    const batch = evalSource(device, data.test, augmenter, 64).batches()[Symbol.iterator]().next();
    assert.ok(!batch.done);
    const shape = [...batch.value.x.shape];
    assert.equal(shape[0], 64);
    const x = await batch.value.x.toArray();
    batch.value.x.dispose();
    batch.value.y.dispose();
    augmenter.dispose();
    await writeSafetensors(join(dir, 'inputs.safetensors'), { x: { shape, data: x } });

    const state: Record<string, ArrayLike<number> | BigInt64Array> = {};
    for (const [k, t] of Object.entries(ckpt.tensors)) state[k] = t.data as ArrayLike<number> | BigInt64Array;
    model.loadStateDict(state);
    const ours = await evalLogits(device, model, x, shape);

    const r = spawnSync(python, [join(HERE, 'interop_torch.py'), dir, '--depth', '8', '--width', '16', '--classes', String(data.test.numClasses)], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, `interop_torch.py failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);

    // (a) the engine's checkpoint run by PyTorch
    const torchOfOurs = f32((await readSafetensors(join(dir, 'torch-of-engine.safetensors'))).tensors.logits, 'logits');
    const a = maxAbsDiff(ours, torchOfOurs);
    assert.ok(a.max <= TOLERANCE, `engine → PyTorch: logits differ by ${a.max} at ${a.at} (engine ${ours[a.at]}, PyTorch ${torchOfOurs[a.at]})`);
    // the logits must depend on the image, or matching them would prove little
    const spread = Math.max(...ours) - Math.min(...ours);
    assert.ok(spread > 0.1, `logits span only ${spread}`);

    // (b) PyTorch's own model through the engine's loader
    const theirs = await readSafetensors(join(dir, 'torch-model.safetensors'));
    assert.equal(theirs.tensors['bn1.num_batches_tracked']?.dtype, 'I64');
    const torchState: Record<string, ArrayLike<number> | BigInt64Array> = {};
    for (const [k, t] of Object.entries(theirs.tensors)) torchState[k] = t.data as ArrayLike<number> | BigInt64Array;
    const fresh = await modelFor(device, { ...config, seed: 99 }, data.test);
    fresh.loadStateDict(torchState); // strict by default, as PyTorch
    const oursOfTorch = await evalLogits(device, fresh, x, shape);
    const torchLogits = f32((await readSafetensors(join(dir, 'torch-logits.safetensors'))).tensors.logits, 'logits');
    const b = maxAbsDiff(oursOfTorch, torchLogits);
    assert.ok(b.max <= TOLERANCE, `PyTorch → engine: logits differ by ${b.max} at ${b.at} (engine ${oursOfTorch[b.at]}, PyTorch ${torchLogits[b.at]})`);
    // two different models: (b) is not (a) again
    assert.ok(maxAbsDiff(ours, torchLogits).max > 0.01, 'the PyTorch-trained model gives the engine model’s logits');
    console.log(`interop-torch: ${python}: ${r.stdout.trim()}; max |Δlogit| engine→torch ${a.max.toExponential(2)}, torch→engine ${b.max.toExponential(2)}`);
    model.dispose();
    fresh.dispose();
  });
});
