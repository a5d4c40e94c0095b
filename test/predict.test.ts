// Train on an image folder, eval and predict, end to end: the classes (solid
// colours with noise) are learnable in a few dozen steps; the checkpoint
// carries the class names, normalisation and input shape; eval names the
// classes; predict decodes as training did and agrees with eval's accuracy.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS, type TrainConfig, validateConfig } from '../run/config.ts';
import { runTraining } from '../run/train.ts';
import { evaluateCheckpoint, formatEvalReport } from '../run/eval.ts';
import { formatPredictions, predictImages, softmax, topK } from '../run/predict.ts';
import { loadDatasets } from '../run/session.ts';
import { RANGE_DEFAULTS, rangeTestForConfig } from '../run/rangeTest.ts';
import { openTrainedCheckpoint } from '../run/trained.ts';
import { STATE_FILE, latestCheckpointDir } from '../engine/io/checkpoint.ts';
import type { Device } from '../engine/index.ts';
import { Rng } from '../engine/random.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';
import { tempDir, writeImage, writeTree } from './imageFolders.ts';

const CLASSES = ['red', 'green', 'blue'];
let device: Device;
let root: string;
let out: string;
const dirs: string[] = [];
const ROOT = new URL('..', import.meta.url).pathname;

function folderConfig(extra: Partial<TrainConfig> = {}): TrainConfig {
  return validateConfig(
    {
      ...DEFAULTS, model: 'smallcnn', width: 4, dataset: 'folder', data: root, imageSize: 12, batchSize: 16, iterations: 40, logEvery: 10, maxLr: 0.4, out, ...extra,
    },
    'test',
  );
}

before(async () => {
  device = await testDevice();
  root = tempDir('predict-data');
  out = tempDir('predict-run');
  dirs.push(root, out);
  await writeTree(join(root, 'train'), CLASSES, 16, 1);
  await writeTree(join(root, 'val'), CLASSES, 6, 2);
  // one odd validation image: grayscale, which the pipeline converts for training and predict alike
  await writeImage(join(root, 'val', 'red', 'gray.png'), new Rng(3), [200, 200, 200], { channels: 1 });
});
after(async () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await destroyTestDevice();
});

describe('softmax and topK', () => {
  it('are a probability distribution, most probable first, ties by index', () => {
    const p = softmax([1, 3, 2, 3]);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    const ref = [1, 3, 2, 3].map((v) => Math.exp(v) / [1, 3, 2, 3].reduce((a, b) => a + Math.exp(b), 0));
    p.forEach((v, i) => assert.ok(Math.abs(v - ref[i]!) < 1e-12));
    assert.deepEqual(topK(p, ['a', 'b', 'c', 'd'], 3).map((t) => t.class), ['b', 'd', 'c']);
    // large logits do not overflow
    assert.ok(softmax([1000, 0]).every(Number.isFinite));
  });
});

describe('train, eval and predict on an image folder', () => {
  it('trains, saves the classes with the checkpoint, evaluates per class, and predict agrees with eval', async () => {
    const config = folderConfig();
    const { result } = await runTraining(config, { device, quiet: true, log: () => {} });
    assert.equal(result.end, 'completed', result.message);

    const trained = await openTrainedCheckpoint(out);
    const data = trained.checkpoint.sidecar.data;
    assert.ok(data, 'the checkpoint records its data');
    assert.deepEqual(data.classNames, ['blue', 'green', 'red']);
    assert.deepEqual(data.shape, [3, 12, 12]);
    const loaded = await loadDatasets(config, { log: () => {} });
    assert.deepEqual(data.normalization, loaded.train.normalization);

    const report = await evaluateCheckpoint({ checkpoint: out, out: join(out, 'eval.json') }, { device });
    assert.equal(report.images, 19);
    assert.deepEqual(report.perClass.map((p) => p.name), ['blue', 'green', 'red']);
    assert.ok(report.accuracy >= 0.8, `the colours are learnable: eval accuracy ${report.accuracy}`);
    const text = formatEvalReport(report);
    assert.match(text, /per class:\n\s+blue\s+\d+\.\d\d%/);
    assert.match(text, /confusion matrix \(rows: true class, columns: predicted\):/);
    assert.match(text, /2 red\s+\d+\s+\d+\s+\d+/);

    const p = await predictImages({ checkpoint: out, inputs: [join(root, 'val')], topK: 2 }, { device });
    assert.equal(p.predictions.length, 19);
    assert.deepEqual(p.classNames, ['blue', 'green', 'red']);
    assert.equal(p.resize, 'crop');
    let correct = 0;
    for (const pred of p.predictions) {
      assert.equal(pred.top.length, 2);
      assert.ok(pred.top[0]!.probability >= pred.top[1]!.probability);
      assert.ok(pred.top.every((t) => t.probability >= 0 && t.probability <= 1));
      const truth = pred.path.split('/').at(-2);
      if (pred.top[0]!.class === truth) correct++;
    }
    // the same images, the same weights, the same decoding: the same predictions
    assert.equal(correct, report.correct, `predict: ${correct}/19 correct, eval: ${report.correct}/19`);
    // a probability row sums to 1 with all classes
    const all = await predictImages({ checkpoint: out, inputs: [join(root, 'val', 'blue', '000.jpg')], topK: 10 }, { device });
    assert.equal(all.predictions[0]!.top.length, 3);
    assert.ok(Math.abs(all.predictions[0]!.top.reduce((a, t) => a + t.probability, 0) - 1) < 1e-6);
    assert.match(formatPredictions(all), /000\.jpg\s+\w+ \d+\.\d%/);
  });

  it('range-tests on the folder (from its cache)', async () => {
    const rtOut = tempDir('predict-rt');
    dirs.push(rtOut);
    const lines: string[] = [];
    const r = await rangeTestForConfig(device, folderConfig({ out: rtOut }), { ...RANGE_DEFAULTS, steps: 12, startLr: 1e-3, endLr: 5, repeats: 1 }, (l) => lines.push(l));
    assert.ok(r.median.steps > 0);
    assert.ok(lines.some((l) => /read the decoded images from the cache/.test(l)), lines.join('\n'));
  });

  it('skips an unreadable image with its path, or refuses it with strict', async () => {
    const bad = join(tempDir('predict-bad'), 'broken.jpg');
    dirs.push(join(bad, '..'));
    writeFileSync(bad, 'not a jpeg');
    const good = join(root, 'val', 'green', '000.jpg');
    const lines: string[] = [];
    const r = await predictImages({ checkpoint: out, inputs: [good, bad] }, { device, log: (s) => lines.push(s) });
    assert.equal(r.predictions.length, 1);
    assert.deepEqual(r.skipped.map((s) => s.path), [bad]);
    assert.ok(lines.some((l) => l.includes(bad)));
    await assert.rejects(predictImages({ checkpoint: out, inputs: [good, bad], strict: true }, { device }), /broken\.jpg: cannot decode/);
    await assert.rejects(predictImages({ checkpoint: out, inputs: [join(root, 'nope.png')] }, { device }), /nope\.png: no such file or folder/);
  });

  it('a checkpoint without the data field (written before) still loads; a damaged one is refused', async () => {
    const dir = (await latestCheckpointDir(join(out, 'checkpoints')))!;
    const statePath = join(dir, STATE_FILE);
    const original = readFileSync(statePath, 'utf8');
    try {
      const state = JSON.parse(original) as { sidecar: Record<string, unknown> };
      const data = state.sidecar.data;
      delete state.sidecar.data;
      writeFileSync(statePath, JSON.stringify(state));
      const lines: string[] = [];
      const r = await predictImages({ checkpoint: out, inputs: [join(root, 'val', 'red', '000.jpg')] }, { device, log: (s) => lines.push(s) });
      assert.deepEqual(r.classNames, ['blue', 'green', 'red']);
      assert.ok(lines.some((l) => /does not record its classes/.test(l)));
      const ev = await evaluateCheckpoint({ checkpoint: out, out: join(out, 'eval2.json') }, { device });
      assert.equal(ev.images, 19);
      state.sidecar.data = { ...(data as object), normalization: { mean: [0.5, 0.5], std: [1, 1, 1] } };
      writeFileSync(statePath, JSON.stringify(state));
      await assert.rejects(openTrainedCheckpoint(out), /data\.normalization\.mean must be 3 finite numbers/);
    } finally {
      writeFileSync(statePath, original);
    }
  });

  it('tune on the folder: a validation slice of the training images, the test set untouched; its recipe keeps the folder', () => {
    const tuneOut = tempDir('predict-tune');
    dirs.push(tuneOut);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'cli', 'main.ts'), 'tune', '--dataset', 'folder', '--data', root, '--image-size', '12',
      '--model', 'smallcnn', '--width', '4', '--batch-size', '16', '--max-lr', '0.4', '--budget', '40', '--weight-decays', '1e-4,0', '--bn-momenta', '0.1',
      '--eta', '2', '--out', tuneOut], { encoding: 'utf8', cwd: ROOT });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /read the decoded images from the cache/);
    const recipe = JSON.parse(readFileSync(join(tuneOut, 'tuned-recipe.json'), 'utf8')) as Partial<TrainConfig>;
    assert.deepEqual([recipe.dataset, recipe.data, recipe.valSplit, recipe.imageSize], ['folder', root, 0, 12]);
  });

  it('is in --help, and the command line prints a table or JSON', () => {
    const cli = (...args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'cli', 'main.ts'), ...args], { encoding: 'utf8', cwd: ROOT });
    assert.match(String(cli('--help').stdout), /predict\s+classify image files/);
    assert.match(String(cli('predict', '--help').stdout), /--top N/);
    const json = cli('predict', '--checkpoint', out, '--json', '--top', '1', join(root, 'val', 'red'));
    assert.equal(json.status, 0, String(json.stderr));
    const parsed = JSON.parse(String(json.stdout)) as { predictions: { path: string; top: { class: string }[] }[] };
    assert.equal(parsed.predictions.length, 7);
    const table = cli('predict', '--checkpoint', out, join(root, 'val', 'blue', '001.png'));
    assert.equal(table.status, 0, String(table.stderr));
    assert.match(String(table.stdout), /001\.png\s+(blue|green|red) \d+\.\d%/);
    const ev = cli('eval', '--checkpoint', out, '--out', join(out, 'eval-cli.json'));
    assert.equal(ev.status, 0, String(ev.stderr));
    assert.match(String(ev.stdout), /per class:\n\s+blue .*\n\s+green .*\n\s+red .*\nconfusion matrix/);
    const none = cli('predict', '--checkpoint', out);
    assert.equal(none.status, 1);
    assert.match(String(none.stderr), /no images given/);
  });
});

