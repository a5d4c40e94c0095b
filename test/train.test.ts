// The training pipeline end to end on a tiny configuration: outputs, bit-exact
// resume, Ctrl-C, divergence, the range test's exact restore and --max-lr auto.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS, type TrainConfig, validateConfig } from '../run/config.ts';
import { runTraining } from '../run/train.ts';
import { evaluateCheckpoint } from '../run/eval.ts';
import { EVAL_LOSS_IMAGES, evalLossSource, rangeTestForConfig, RANGE_DEFAULTS, repeatsSummary, resolveMaxLrByRangeTest } from '../run/rangeTest.ts';
import { type Device, SGD, keep, tensor } from '../engine/index.ts';
import { readSafetensors } from '../engine/io/safetensors.ts';
import { BatchLoader } from '../data/loader.ts';
import { rangeTest } from '../rangetest/rangeTest.ts';
import { augmenterFor, loadDatasets, modelFor, trainSource } from '../run/session.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const ROOT = new URL('..', import.meta.url).pathname;
const tmp = (): string => mkdtempSync(join(tmpdir(), 'onecycle-test-'));

/** A configuration that trains in seconds on lavapipe. */
function tiny(out: string, extra: Partial<TrainConfig> = {}): TrainConfig {
  return validateConfig(
    {
      ...DEFAULTS,
      model: 'smallcnn',
      width: 4,
      imageSize: 16,
      syntheticTrain: 256,
      syntheticTest: 128,
      batchSize: 32,
      iterations: 24,
      logEvery: 4,
      maxLr: 0.4,
      out,
      ...extra,
    },
    'test',
  );
}

const stepLosses = (dir: string): number[] =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"kind":"step"'))
    .map((l) => (JSON.parse(l) as { loss: number }).loss);

const quiet = { quiet: true, log: () => {} };

describe('train', () => {
  it('writes metrics, summary, plots and a PyTorch-named safetensors checkpoint', async () => {
    const out = tmp();
    const r = await runTraining(tiny(out), { ...quiet, device });
    assert.equal(r.result.end, 'completed');
    assert.equal(stepLosses(out).length, 24);
    for (const f of ['summary.json', 'loss.svg', 'accuracy.svg', 'lr.svg', 'momentum.svg']) assert.ok(existsSync(join(out, f)), f);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { end: string; steps: number; testAccuracy: number };
    assert.equal(summary.steps, 24);
    assert.ok(summary.testAccuracy >= 0 && summary.testAccuracy <= 1);
    const latest = readFileSync(join(out, 'checkpoints', 'latest'), 'utf8').trim();
    const st = await readSafetensors(join(out, 'checkpoints', latest, 'model.safetensors'));
    const names = Object.keys(st.tensors);
    assert.ok(names.includes('conv1.weight') && names.includes('bn1.running_var') && names.includes('fc.bias'), names.join(' '));
    assert.equal(st.tensors['bn1.num_batches_tracked']!.dtype, 'I64');
    assert.match(readFileSync(join(out, 'loss.svg'), 'utf8'), /^<svg[\s\S]*<\/svg>\s*$/);
  });

  it('--target-accuracy stops at the first evaluation that reaches it and says when (time to accuracy)', async () => {
    const evalAccs = (dir: string): { step: number; acc: number }[] =>
      readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"kind":"eval"')).map((l) => JSON.parse(l) as { step: number; acc: number });
    const full = tmp();
    await runTraining(tiny(full, { evalEvery: 4 }), { ...quiet, device });
    const evals = evalAccs(full);
    assert.equal(evals.length, 6, 'evaluations at 4, 8, …, 24');
    // the target: the best accuracy before the end, first reached at step `at` (every earlier evaluation is below it)
    const before = evals.slice(0, -1);
    const best = Math.max(...before.map((e) => e.acc));
    const at = before.find((e) => e.acc === best)!.step;
    assert.ok(best > evals[0]!.acc || at === 4, 'the tiny net learns');
    const out = tmp();
    const r = await runTraining(tiny(out, { evalEvery: 4, targetAccuracy: best }), { ...quiet, device });
    assert.equal(r.result.end, 'completed');
    assert.equal(r.result.steps, at, 'stopped at the crossing evaluation');
    assert.deepEqual(stepLosses(out), stepLosses(full).slice(0, at), 'the same run up to there');
    assert.equal(r.testAccuracy, best);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { target: { target: number; accuracy: number; step: number; seconds: number; trainSeconds: number } };
    assert.equal(summary.target.step, at);
    assert.equal(summary.target.accuracy, best);
    assert.ok(summary.target.seconds > 0 && summary.target.trainSeconds > 0 && summary.target.trainSeconds < summary.target.seconds, JSON.stringify(summary.target));
    assert.match(r.result.message, /^reached .*% \(target .*%\) at step \d+ of 24, /);
    // a target never reached: every step trained, and the summary says so
    const all = Math.max(...evals.map((e) => e.acc));
    if (all < 1) {
      const missed = tmp();
      const m = await runTraining(tiny(missed, { evalEvery: 4, targetAccuracy: Math.min(1, all + 0.01) }), { ...quiet, device });
      assert.equal(m.result.steps, 24);
      assert.deepEqual((JSON.parse(readFileSync(join(missed, 'summary.json'), 'utf8')) as { target: unknown }).target, { target: Math.min(1, all + 0.01), reached: false });
    }
    assert.throws(() => tiny(tmp(), { targetAccuracy: 94 }), /targetAccuracy must be a fraction in \(0, 1\] \(0\.94 for 94%\), got 94/);
  });

  it('resumes bit-exactly: an interrupted and resumed run has the same losses and weights as an uninterrupted one', async () => {
    const a = tmp();
    const b = tmp();
    await runTraining(tiny(a), { ...quiet, device });
    const first = await runTraining(tiny(b), { ...quiet, device, stopAtStep: 10 });
    assert.equal(first.result.end, 'interrupted');
    assert.ok(first.result.steps >= 10 && first.result.steps < 24);
    const resumed = await runTraining(tiny(b, { maxLr: 123 /* ignored: a resume keeps its settings */ }), { ...quiet, device, resume: true });
    assert.equal(resumed.result.end, 'completed');
    assert.deepEqual(stepLosses(b), stepLosses(a));
    const weights = async (dir: string) => {
      const latest = readFileSync(join(dir, 'checkpoints', 'latest'), 'utf8').trim();
      return (await readSafetensors(join(dir, 'checkpoints', latest, 'model.safetensors'))).tensors;
    };
    const wa = await weights(a);
    const wb = await weights(b);
    for (const k of Object.keys(wa)) assert.deepEqual(wb[k]!.data, wa[k]!.data, k);
  });

  it('--resume without a checkpoint is refused with the folder named', async () => {
    const out = tmp();
    await assert.rejects(runTraining(tiny(out), { ...quiet, device, resume: true }), /no checkpoint in .*checkpoints/);
  });

  it('a diverging run stops and says exactly which checkpoint it keeps; a kept one evaluates sanely', async () => {
    // the case (LR 100, a checkpoint every 5 steps: a01de24 kept one that evaluated at loss 2e10),
    // LR 900 (diverges before any checkpoint), and the same without periodic checkpoints
    const cases: Partial<TrainConfig>[] = [
      { model: 'resnet8', width: 8, schedule: 'constant', maxLr: 100, checkpointEvery: 5, iterations: 60 },
      { schedule: 'constant', maxLr: 900, momentum: 0.99, checkpointEvery: 4, iterations: 60 },
      { schedule: 'constant', maxLr: 100, checkpointEvery: 0, iterations: 60 },
      // One Cycle up to 40: good for 20 steps (checkpoints at 4, …, 20), then the loss blows up
      { maxLr: 40, checkpointEvery: 4, iterations: 60 },
    ];
    let keptOne = false;
    for (const extra of cases) {
      const out = tmp();
      const r = await runTraining(tiny(out, extra), { ...quiet, device });
      const what = JSON.stringify(extra);
      assert.equal(r.result.end, 'diverged', what);
      assert.match(r.result.message, /training diverged: .*(loss became|exceeded)/, what);
      const latestPath = join(out, 'checkpoints', 'latest');
      if (/No checkpoint is kept/.test(r.result.message)) {
        assert.equal(existsSync(latestPath), false, `${what}: says none is kept, yet ${latestPath} exists`);
        continue;
      }
      const m = /Kept: the last good checkpoint, (\S+) \(step (\d+)\)/.exec(r.result.message);
      assert.ok(m, `${what}: ${r.result.message}`);
      assert.equal(join(out, 'checkpoints', readFileSync(latestPath, 'utf8').trim()), m[1], what);
      // its weights load (finite, checked) and evaluate to a finite loss
      const report = await evaluateCheckpoint({ checkpoint: out, out: join(tmp(), 'eval.json') }, { device });
      assert.equal(report.step, Number(m[2]), what);
      assert.ok(Number.isFinite(report.loss), `${what}: the kept checkpoint evaluates at loss ${report.loss}`);
      // and the loss its weights gave in training (step k's) was not diverging: below 4 × the
      // lowest smoothed loss so far (or 4 × ln 10, the loss of a uniform guess, if higher)
      const losses = stepLosses(out);
      const k = Number(m[2]);
      let avg = 0;
      let min = Infinity;
      for (let i = 0; i < k; i++) {
        avg = 0.98 * avg + 0.02 * losses[i]!;
        min = Math.min(min, avg / (1 - 0.98 ** (i + 1)));
      }
      assert.ok(losses[k]! < 4 * Math.max(Math.log(10), min), `${what}: step ${k}'s loss ${losses[k]} was diverging`);
      keptOne = true;
    }
    assert.ok(keptOne, 'one case diverges after a good checkpoint');
  });

  it('Ctrl-C writes a checkpoint and exits; --resume finishes the run', async () => {
    const out = tmp();
    const args = ['--import', 'tsx', 'cli/main.ts', 'train', '--model', 'smallcnn', '--width', '4', '--image-size', '16', '--synthetic-train', '256',
      '--synthetic-test', '64', '--batch-size', '32', '--iterations', '400', '--log-every', '2', '--out', out];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        // interrupt once training is under way
        if (!sent && /train \d+\/400/.test(stderr)) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.on('exit', (c) => resolve(c));
    });
    assert.equal(code, 130, `exit code; stderr:\n${stderr}`);
    assert.match(stdout, /interrupted at step \d+/);
    assert.match(stderr, /continue with --resume/);
    const state = JSON.parse(readFileSync(join(out, 'checkpoints', readFileSync(join(out, 'checkpoints', 'latest'), 'utf8').trim(), 'state.json'), 'utf8')) as { step: number };
    assert.ok(state.step > 0 && state.step < 400);
    const r = await runTraining(tiny(out), { ...quiet, device, resume: true, stopAtStep: state.step + 4 });
    assert.equal(r.result.steps, state.step + 4, 'resumed from the Ctrl-C checkpoint');
  });
});

describe('range test', () => {
  it('restores weights, batchnorm statistics and optimizer state bit for bit', async () => {
    const c = tiny(tmp());
    const data = await loadDatasets(c);
    const model = await modelFor(device, c, data.train);
    const loader = new BatchLoader(data.train, { batchSize: 32, seed: 0, dropLast: true });
    const augmenter = augmenterFor(device, c, data.train);
    const opt = new SGD({ params: model.namedParameters(), lr: 0.1, momentum: 0.9 });
    // give the optimizer a real state first
    for (const p of model.parameters()) p.grad = keep(tensor(device, new Float32Array(p.size).fill(0.01), p.shape));
    opt.step();
    const before = await Promise.all(Object.entries(model.stateDict()).map(async ([k, t]) => [k, t.dtype === 'i32' ? await t.toInt32Array() : await t.toArray()] as const));
    const optBefore = await opt.state();
    const r = await rangeTest({ device, model, train: trainSource(device, loader, augmenter, true), steps: 30, startLr: 1e-3, endLr: 10, optimizer: opt, readEvery: 5 });
    assert.ok(r.steps >= 10, `recorded ${r.steps} steps`);
    assert.equal(r.lrs.length, r.losses.length);
    for (const [k, want] of before) {
      const t = model.stateDict()[k]!;
      const got = t.dtype === 'i32' ? await t.toInt32Array() : await t.toArray();
      assert.deepEqual(got, want, `${k} changed`);
    }
    assert.deepEqual(await opt.state(), optBefore);
    for (const p of model.parameters()) assert.ok(p.grad, 'the caller’s gradients are kept');
    augmenter.dispose();
  });

  it("--eval-loss records the loss on the held-out set's first EVAL_LOSS_IMAGES images, in batches of at least 256", async () => {
    for (const [testImages, want] of [[100, 100], [EVAL_LOSS_IMAGES + 300, EVAL_LOSS_IMAGES]] as const) {
      const c = tiny(tmp(), { syntheticTrain: 64, syntheticTest: testImages });
      const data = await loadDatasets(c);
      const augmenter = augmenterFor(device, c, data.train);
      const source = evalLossSource(device, data.test, augmenter, c.batchSize);
      assert.equal(source.size, want);
      const sizes: number[] = [];
      for (const { x, y } of source.batches()) {
        sizes.push(y.size);
        x.dispose();
        y.dispose();
      }
      assert.equal(sizes.reduce((a, b) => a + b, 0), want);
      assert.equal(sizes[0], Math.min(256, want));
      augmenter.dispose();
    }
  });

  it('the range-test command writes the curve, the plot and a suggestion; --max-lr auto uses it', async () => {
    const out = tmp();
    const c = tiny(out, { syntheticTrain: 512 });
    const one = await rangeTestForConfig(device, c, { ...RANGE_DEFAULTS, steps: 40, startLr: 1e-3, endLr: 20, repeats: 1 }, () => {});
    for (const f of ['range-test.json', 'range-test.csv', 'range-test.svg']) assert.ok(existsSync(join(out, f)), f);
    assert.ok(one.median.suggestion, one.median.suggestionError ?? '');
    assert.equal(one.sweeps.length, 1);
    assert.ok(!existsSync(join(out, 'sweep-1')));

    // repeated: a sweep per seed in its own folder, the median's report at the top with every pick
    const out3 = tmp();
    const three = await rangeTestForConfig(device, { ...c, out: out3 }, { ...RANGE_DEFAULTS, steps: 40, startLr: 1e-3, endLr: 20, repeats: 3 }, () => {});
    assert.deepEqual(three.sweeps.map((w) => w.seed), [c.seed, c.seed + 1, c.seed + 2]);
    // the first sweep is the single sweep above: same seed, same config
    assert.deepEqual(three.sweeps[0]!.result.losses, one.median.losses);
    const picks = three.sweeps.map((w) => w.result.suggestion!.maxLr).sort((a, b) => a - b);
    assert.equal(three.median.suggestion!.maxLr, picks[1]);
    for (let i = 1; i <= 3; i++) assert.ok(existsSync(join(out3, `sweep-${i}`, 'range-test.json')), `sweep-${i}`);
    const top = JSON.parse(readFileSync(join(out3, 'range-test.json'), 'utf8')) as { suggestion: { maxLr: number }; sweeps: { maxLr: number }[] };
    assert.equal(top.suggestion.maxLr, picks[1]);
    assert.deepEqual(top.sweeps.map((w) => w.maxLr), three.sweeps.map((w) => w.result.suggestion!.maxLr));
    assert.match(repeatsSummary(three), /^3 sweeps \(seeds \d+, \d+, \d+\) suggested max LR .*the median/);

    const lr = await resolveMaxLrByRangeTest(device, { ...c, out: tmp() });
    assert.ok(lr > 0 && Number.isFinite(lr));
  });
});
