// Nothing lost, nothing silent (issue 17): every bad input ends in a one-line
// message naming the file or flag and exit 1, never an abort, a hang or a
// silent success with damage; run folders are guarded (non-empty --out, a
// lock); kill -9, torn files, SIGTERM and divergence leave a run resumable and
// its metrics equal to an uninterrupted run's. Kill, lock and signal cases run
// as real processes; the fuzzing (fast-check) validates in-process through the
// functions the CLI uses, with a handful of corrupted cases run through it too.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS, LIMITS, type TrainConfig, validateConfig } from '../run/config.ts';
import { parseTrainArgs } from '../cli/flags.ts';
import { runTraining } from '../run/train.ts';
import { type Device, SGD } from '../engine/index.ts';
import { loadCheckpoint, saveCheckpoint } from '../engine/io/checkpoint.ts';
import { describeFsError } from '../engine/io/fsErrors.ts';
import { decodeSafetensors, encodeSafetensors, type TensorEntry } from '../engine/io/safetensors.ts';
import type { Module } from '../engine/nn/index.ts';
import { BatchLoader } from '../data/loader.ts';
import { DivergenceMonitor } from '../train/fit.ts';
import { RunOutputs } from '../train/outputs.ts';
import { applyCheckpoint, loadDatasets, loadTrainingCheckpoint, modelFor, saveTrainingCheckpoint } from '../run/session.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const tmp = (): string => mkdtempSync(join(tmpdir(), 'onecycle-rel-'));

// ------------------------------------------------------------------ helpers

/** The CLI flags of a tiny run (smallcnn width 4 on 16-pixel images: a step takes milliseconds). */
const TINY = ['--model', 'smallcnn', '--width', '4', '--image-size', '16', '--synthetic-train', '256', '--synthetic-test', '64', '--batch-size', '32', '--seed', '3'];

function tinyConfig(out: string, extra: Partial<TrainConfig> = {}): TrainConfig {
  return validateConfig({ ...parseTrainArgs([...TINY, '--out', out]).config, logEvery: 4, iterations: 8, checkpointEvery: 4, maxLr: 0.4, ...extra }, 'test');
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI as a child process; `watch` sees stderr as it grows. */
function start(args: string[], watch?: (stderr: string, child: ChildProcess) => void, as?: { uid: number; gid: number }): { child: ChildProcess; done: Promise<Ran> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    watch?.(stderr, child);
  });
  const done = new Promise<Ran>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cli ${args.join(' ')}: no exit within 120 s (a hang)\nstderr:\n${stderr}`));
    }, 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

const cli = (args: string[]): Promise<Ran> => start(args).done;
const show = (r: Ran): string => `exit ${r.code} (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
/** stderr without Dawn's start-up warnings. */
const errLines = (r: Ran): string[] => r.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('Warning: max'));

/** Exit 1 with exactly one error line that matches `message`, and nothing that looks like a crash. */
function assertRefused(r: Ran, message: RegExp, what: string): void {
  assert.equal(r.code, 1, `${what}: ${show(r)}`);
  const errors = errLines(r).filter((l) => l.startsWith('error: '));
  assert.equal(errors.length, 1, `${what}: one error line\n${show(r)}`);
  assert.match(errors[0]!, message, what);
  assert.doesNotMatch(r.stderr, /Aborted|Assertion|system_error|at .*\.ts:\d+/, `${what}: a crash or a stack trace\n${show(r)}`);
}

async function waitFor(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const latestDir = (run: string): string => join(run, 'checkpoints', readFileSync(join(run, 'checkpoints', 'latest'), 'utf8').trim());
const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** metrics.jsonl without the throughput field (the one thing that differs between two identical runs). */
function metricLines(run: string): string[] {
  return readFileSync(join(run, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const { imagesPerSec: _ips, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return JSON.stringify(rest);
    });
}

/** Rewrites a checkpoint's weights and records their size and SHA-256 in state.json, as a careful forger would. */
function replaceWeights(ckptDir: string, bytes: Uint8Array): void {
  writeFileSync(join(ckptDir, 'model.safetensors'), bytes);
  const statePath = join(ckptDir, 'state.json');
  const state = readJson<{ weights: { bytes: number; sha256: string } }>(statePath);
  state.weights.bytes = bytes.byteLength;
  state.weights.sha256 = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(statePath, JSON.stringify(state));
}

function editState(ckptDir: string, edit: (state: { sidecar: Record<string, unknown> } & Record<string, unknown>) => void): void {
  const statePath = join(ckptDir, 'state.json');
  const state = readJson<{ sidecar: Record<string, unknown> } & Record<string, unknown>>(statePath);
  edit(state);
  writeFileSync(statePath, JSON.stringify(state));
}

function copyRun(run: string): string {
  const dir = tmp();
  cpSync(run, dir, { recursive: true });
  return dir;
}

let device: Device;
/** a finished 8-step run (checkpoints at 4 and 8) to copy and damage */
let base: string;
before(async () => {
  device = await testDevice();
  base = tmp();
  await runTraining(tinyConfig(base), { device, quiet: true, log: () => {} });
});
after(destroyTestDevice);

// ------------------------------------------------------------------ 1: errors after the device exists

describe('errors after the GPU device exists', () => {
  it('eval of a checkpoint holding weights of another width: exit 1 with the message, every time (a01de24 aborted or hung in ~40%)', async () => {
    const other = tmp();
    await runTraining(tinyConfig(other, { width: 8, iterations: 4, checkpointEvery: 0 }), { device, quiet: true, log: () => {} });
    const run = copyRun(base);
    replaceWeights(latestDir(run), readFileSync(join(latestDir(other), 'model.safetensors')));
    // 8 runs: without Device.close() about half of them abort or hang
    for (let i = 0; i < 8; i++) {
      const r = await cli(['eval', '--checkpoint', run, '--quiet']);
      assertRefused(r, /model\.safetensors: cannot load checkpoint: tensor '[\w.]+' has shape \[8, .*; smallcnn \(width 4\) on .* expects \[4, /, `run ${i + 1}`);
    }
  });
});

// ------------------------------------------------------------------ 2, 4, 7, 10: kill -9, torn metrics, the lock, SIGTERM

describe('kill -9, a torn metrics line, the run lock and SIGTERM (real processes)', () => {
  it('a second training on a locked folder is refused; after kill -9 the stale lock is taken over, the torn line dropped, SIGTERM checkpoints (143), and the finished metrics equal an uninterrupted run', async () => {
    const out = tmp();
    // constant LR: the schedule does not depend on the run's length, so a run shortened on resume
    // (--iterations) must equal an uninterrupted run of that length
    const flags = [...TINY, '--schedule', 'constant', '--max-lr', '0.2', '--log-every', '2', '--checkpoint-every', '4', '--eval-every', '6', '--quiet'];
    const args = [...flags, '--out', out];
    const a = start(['train', ...args, '--iterations', '5000']);
    await waitFor(() => existsSync(join(out, 'checkpoints', 'latest')), 'the first checkpoint');

    const b = await cli(['train', ...args, '--resume']);
    assertRefused(b, new RegExp(`is in use by another training \\(pid ${a.child.pid}`), 'second training');

    a.child.kill('SIGKILL');
    const ra = await a.done;
    assert.equal(ra.signal, 'SIGKILL');
    assert.ok(existsSync(join(out, '.lock')), 'the killed run left its lock');
    appendFileSync(join(out, 'metrics.jsonl'), '{"kind":"st'); // what a full disk or a power cut leaves

    let sent = false;
    const c = start(['train', ...args, '--resume'], (stderr, child) => {
      if (!sent && /resuming .* at step \d+/.test(stderr)) {
        sent = true;
        child.kill('SIGTERM');
      }
    });
    const rc = await c.done;
    assert.equal(rc.code, 143, `SIGTERM: ${show(rc)}`);
    assert.match(rc.stderr, new RegExp(`taking over the stale lock of pid ${a.child.pid}`));
    assert.match(rc.stderr, /metrics\.jsonl: dropped a torn last line/);
    assert.match(rc.stderr, /stopped by SIGTERM at step \d+; checkpoint .* \(continue with --resume/);
    assert.match(rc.stdout, /stopped by SIGTERM at step \d+/);
    assert.equal(existsSync(join(out, '.lock')), false, 'the lock is released');
    const stoppedAt = readJson<{ step: number }>(join(latestDir(out), 'state.json')).step;

    // finish: the remaining steps up to stoppedAt + 10
    const total = stoppedAt + 10;
    const d = await cli(['train', ...args, '--resume', '--iterations', String(total)]);
    assert.equal(d.code, 0, show(d));
    assert.match(d.stderr, /--iterations changed from 5000 to/);

    const ref = tmp();
    await runTraining(parseTrainArgs([...flags, '--out', ref, '--iterations', String(total)]).config, { device, quiet: true, log: () => {} });
    assert.deepEqual(metricLines(out), metricLines(ref));
  });

  it('a damaged metrics line before the last is refused with the file and the line number', async () => {
    const run = copyRun(base);
    const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').split('\n');
    lines[2] = '{"kind": "step", "st';
    writeFileSync(join(run, 'metrics.jsonl'), lines.join('\n'));
    await assert.rejects(runTraining(tinyConfig(run), { device, quiet: true, log: () => {}, resume: true }), /metrics\.jsonl: line 3 is not a metrics record/);
  });
});

// ------------------------------------------------------------------ 3: --out guarded

describe('a fresh train into a non-empty --out', () => {
  it('is refused unless --resume or --overwrite; --overwrite clears a run but never a folder that is not one', async () => {
    const run = copyRun(base);
    const before = readFileSync(join(run, 'metrics.jsonl'), 'utf8');
    const ckpts = readdirSync(join(run, 'checkpoints')).sort();
    let r = await cli(['train', ...TINY, '--iterations', '5', '--out', run]);
    assertRefused(r, /--out .*: the folder is not empty \(.*\); continue that run with --resume, or replace it with --overwrite/, 'existing run');
    assert.equal(readFileSync(join(run, 'metrics.jsonl'), 'utf8'), before, 'metrics untouched');
    assert.deepEqual(readdirSync(join(run, 'checkpoints')).sort(), ckpts, 'checkpoints untouched');

    const notRun = tmp();
    writeFileSync(join(notRun, 'notes.txt'), 'my notes');
    r = await cli(['train', ...TINY, '--iterations', '5', '--out', notRun]);
    assertRefused(r, /the folder is not empty \(notes\.txt\); choose an empty or new folder/, 'a folder that is not a run');
    r = await cli(['train', ...TINY, '--iterations', '5', '--out', notRun, '--overwrite']);
    assertRefused(r, /--overwrite: .* holds files that are not a run's outputs \(notes\.txt\)/, '--overwrite on a folder that is not a run');
    assert.deepEqual(readdirSync(notRun), ['notes.txt']);
    assert.equal(readFileSync(join(notRun, 'notes.txt'), 'utf8'), 'my notes');

    const logs: string[] = [];
    await runTraining(tinyConfig(run, { iterations: 5, checkpointEvery: 0 }), { device, quiet: true, log: (s) => logs.push(s), overwrite: true });
    assert.ok(logs.some((l) => l.startsWith(`--overwrite: deleted the previous run in ${run}`)), logs.join('\n'));
    assert.deepEqual(readdirSync(join(run, 'checkpoints')), ['ckpt-000001', 'latest'], 'only the new run’s checkpoint');
    assert.equal(metricLines(run).filter((l) => l.includes('"kind":"step"')).length, 5);

    // a fresh run that failed before its first step (here: no such dataset) does not block a retry
    const failed = tmp();
    await assert.rejects(runTraining(tinyConfig(failed, { dataset: 'cifar10', data: join(failed, 'no-such-data') }), { device, quiet: true, log: () => {} }), /no-such-data/);
    await runTraining(tinyConfig(failed, { iterations: 4, checkpointEvery: 0 }), { device, quiet: true, log: () => {} });
  });
});

// ------------------------------------------------------------------ 5: divergence (see also train.test.ts)

describe('divergence', () => {
  it('the monitor catches a blow-up within the first 10 losses (a01de24 ignored them), not an ordinary start', () => {
    const m = new DivergenceMonitor({ factor: 4, beta: 0.98, floor: Math.log(10) });
    assert.equal(m.push(2.4, "step 0"), null);
    assert.match(m.push(2e10, "step 1") ?? '', /loss 2\.000e\+10 at step 1 exceeded 4×/);
    const ok = new DivergenceMonitor({ factor: 4, beta: 0.98, floor: Math.log(10) });
    for (const [i, l] of [2.4, 2.9, 3.1, 2.2, 2.6, 1.9, 2.0, 2.5, 1.8, 2.1, 1.7].entries()) assert.equal(ok.push(l, `step ${i}`), null, `step ${i}`);
  });

  it('with --checkpoint-every 0 it says that no checkpoint is kept (a01de24 claimed "(step 0) is kept")', async () => {
    const out = tmp();
    const r = await runTraining(tinyConfig(out, { maxLr: 100, schedule: 'constant', checkpointEvery: 0, iterations: 40 }), { device, quiet: true, log: () => {} });
    assert.equal(r.result.end, 'diverged');
    assert.match(r.result.message, /No checkpoint is kept/);
    assert.doesNotMatch(r.result.message, /step 0\) is kept/);
    assert.equal(existsSync(join(out, 'checkpoints')), false);
  });
});

// ------------------------------------------------------------------ 6: --resume and other flags

describe('--resume with other flags', () => {
  it('refuses changed settings, naming each; accepts the saved values again; --iterations extends a finished run', async () => {
    const run = copyRun(base);
    const r = await cli(['train', '--resume', '--out', run, '--max-lr', '2', '--model', 'resnet20', '--quiet']);
    assertRefused(r, /--resume continues a run with the settings saved in its checkpoint; these differ and cannot change: command line: --model \(the run has "smallcnn", given "resnet20"\); command line: --max-lr \(the run has 0\.4, given 2\)/, 'changed flags');
    assert.equal(readJson<{ step: number }>(join(latestDir(run), 'state.json')).step, 8, 'nothing written');

    // the same command line as the run's, plus a longer --iterations: extends it
    const logs: string[] = [];
    const given = parseTrainArgs([...TINY, '--max-lr', '0.4', '--iterations', '12', '--out', run]);
    const res = await runTraining(given.config, { device, quiet: true, log: (s) => logs.push(s), resume: true, changes: given.given, changesAs: given.givenAs });
    assert.equal(res.result.end, 'completed');
    assert.equal(res.result.steps, 12);
    assert.ok(logs.some((l) => /--iterations changed from 8 to 12/.test(l)), logs.join('\n'));
    assert.ok(!logs.some((l) => /--max-lr|--model/.test(l)), 'unchanged flags pass silently');
    await assert.rejects(
      runTraining(given.config, { device, quiet: true, log: () => {}, resume: true, changes: { iterations: 3 }, changesAs: { iterations: '--iterations' } }),
      /--iterations 3 is below the 12 steps the run has already taken/,
    );
  });
});

// ------------------------------------------------------------------ 7: resumed metrics equal the uninterrupted run's

describe('metrics after resume', () => {
  it('equal the uninterrupted run line for line (evaluations included); resuming a finished run changes nothing', async () => {
    const extra: Partial<TrainConfig> = { iterations: 16, evalEvery: 4, checkpointEvery: 0, logEvery: 2 };
    const a = tmp();
    const b = tmp();
    await runTraining(tinyConfig(a, extra), { device, quiet: true, log: () => {} });
    const first = await runTraining(tinyConfig(b, extra), { device, quiet: true, log: () => {}, stopAtStep: 6 });
    assert.equal(first.result.end, 'interrupted');
    await runTraining(tinyConfig(b, extra), { device, quiet: true, log: () => {}, resume: true });
    assert.deepEqual(metricLines(b), metricLines(a));
    await runTraining(tinyConfig(b, extra), { device, quiet: true, log: () => {}, resume: true });
    assert.deepEqual(metricLines(b), metricLines(a), 'a finished run resumed: its final evaluation is not duplicated');
  });
});

// ------------------------------------------------------------------ 8: weights checked

describe('weights are checked against the model', () => {
  const cases: [string, (t: Record<string, TensorEntry>) => void, RegExp][] = [
    ['a permuted shape with the same element count', (t) => void (t['conv1.weight'] = { ...t['conv1.weight']!, shape: [...t['conv1.weight']!.shape].reverse() }), /tensor 'conv1\.weight' has shape \[3, 3, 3, 4\]; smallcnn \(width 4\) expects \[4, 3, 3, 3\]/],
    ['I32 data where F32 is expected', (t) => void (t['fc.weight'] = { shape: t['fc.weight']!.shape, data: new Int32Array((t['fc.weight']!.data as Float32Array).slice().buffer), dtype: 'I32' }), /tensor 'fc\.weight' is I32; smallcnn \(width 4\) expects F32/],
    ['a NaN weight', (t) => void ((t['conv1.weight']!.data as Float32Array)[5] = NaN), /tensor 'conv1\.weight' holds NaN at index 5/],
    ['an Inf running variance', (t) => void ((t['bn1.running_var']!.data as Float32Array)[0] = Infinity), /tensor 'bn1\.running_var' holds Infinity at index 0/],
  ];
  for (const [what, edit, message] of cases) {
    it(`${what}: --resume refused naming the tensor`, async () => {
      const run = copyRun(base);
      const dir = latestDir(run);
      const st = decodeSafetensors(readFileSync(join(dir, 'model.safetensors')));
      const tensors: Record<string, TensorEntry> = {};
      for (const [k, v] of Object.entries(st.tensors)) tensors[k] = { shape: v.shape, data: v.data, dtype: v.dtype };
      edit(tensors);
      replaceWeights(dir, encodeSafetensors(tensors, st.metadata));
      await assert.rejects(runTraining(tinyConfig(run), { device, quiet: true, log: () => {}, resume: true }), (e: Error) => {
        assert.ok(e.message.startsWith(join(dir, 'model.safetensors')), e.message);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it('NaN velocities are refused; a resume with NaN weights (as a01de24 trained 100 steps on) exits 1 naming the tensor', async () => {
    const run = copyRun(base);
    editState(latestDir(run), (s) => {
      const opt = s.sidecar.optimizer as { velocities: (string | null)[] };
      const b = Buffer.from(opt.velocities[0]!, 'base64');
      const v = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      v[1] = NaN;
      opt.velocities[0] = Buffer.from(v.buffer).toString('base64');
    });
    await assert.rejects(runTraining(tinyConfig(run), { device, quiet: true, log: () => {}, resume: true }), /state\.json: cannot load checkpoint: optimizer\.velocities\[0\] \(conv1\.weight\) holds NaN at index 1/);

    const run2 = copyRun(base);
    const dir = latestDir(run2);
    const st = decodeSafetensors(readFileSync(join(dir, 'model.safetensors')));
    (st.tensors['conv2.weight']!.data as Float32Array).fill(NaN, 0, 240);
    replaceWeights(dir, encodeSafetensors(st.tensors, st.metadata));
    const r = await cli(['train', '--resume', '--out', run2, '--quiet']);
    assertRefused(r, /model\.safetensors: cannot load checkpoint: tensor 'conv2\.weight' holds NaN at index 0/, 'NaN weights');
  });
});

describe('a NaN in the weights', () => {
  it('never goes into a checkpoint (it need not show in the loss: on lavapipe ReLU’s max(x, 0) maps NaN to 0)', async () => {
    const config = tinyConfig(tmp());
    const data = await loadDatasets(config);
    const model = await modelFor(device, config, data.train);
    const optimizer = new SGD({ params: model.namedParameters(), lr: 0.1, momentum: 0.9 });
    const loader = new BatchLoader(data.train, { batchSize: 32, seed: config.seed, shuffle: true, dropLast: true });
    const w = model.stateDict()['conv1.weight']!;
    const values = await w.toArray();
    values[3] = NaN;
    device.write(w.buffer, values);
    const root = join(config.out, 'checkpoints');
    const r = await saveTrainingCheckpoint(root, model, optimizer, loader, config, 0.4, 8);
    assert.deepEqual(r, { notSaved: "weight 'conv1.weight' became NaN (index 3) by step 0" });
    assert.equal(existsSync(root), false);
    optimizer.dispose();
    model.dispose();
  });
});

// ------------------------------------------------------------------ 9: validation

describe('settings validated wherever they come from', () => {
  it('flags: absurd sizes, seeds and relations are refused naming the flag', () => {
    const refused: [string[], RegExp][] = [
      [['--iterations', '1e12'], /command line: --iterations must be a positive integer at most 100000000, got 1000000000000/],
      [['--synthetic-train', '2000000000'], /command line: --synthetic-train must be a positive integer at most 1000000/],
      [['--synthetic-train', '900000', '--image-size', '64'], /the generated dataset .* would take .* GiB; the limit is 2 GiB/],
      [['--cutout', '20', '--image-size', '16'], /command line: --cutout \(20\) exceeds the image side \(16 pixels\)/],
      [['--seed', '1e20'], /command line: --seed must be a non-negative integer at most 4294967295/],
      [['--min-lr', '2', '--max-lr', '1'], /command line: --min-lr \(2\) must be below maxLr \(1\)/],
    ];
    for (const [args, message] of refused) assert.throws(() => parseTrainArgs(args), message, args.join(' '));
  });

  it('a tampered optimizer.step (1e9) is refused on resume, naming state.json (a01de24 "completed" with exit 0)', async () => {
    const run = copyRun(base);
    editState(latestDir(run), (s) => void ((s.sidecar.optimizer as { step: number }).step = 1e9));
    const r = await cli(['train', '--resume', '--out', run, '--quiet']);
    assertRefused(r, /state\.json: cannot load checkpoint: optimizer\.step must be an integer in \[0, totalSteps = 8\], got 1000000000/, 'optimizer.step');
  });
});

// ------------------------------------------------------------------ 10: file-system errors, a crash before `latest`

describe('file-system errors and the first checkpoint', () => {
  it('ENOSPC names the file; EACCES reads "permission denied"', () => {
    const dir = tmp();
    const outputs = new RunOutputs(dir);
    symlinkSync('/dev/full', outputs.metricsPath); // every write to it fails with ENOSPC
    assert.throws(
      () => outputs.appendSteps([{ step: 0, loss: 1, acc: 0, lr: 0.1, momentum: 0.9 }], 1),
      (e: Error) => e.message === `${outputs.metricsPath}: cannot append to: no space left on device (ENOSPC)`,
    );
    const eacces = Object.assign(new Error("EACCES: permission denied, open 'x'"), { code: 'EACCES' });
    assert.equal(describeFsError(eacces, '/r/metrics.jsonl', 'write').message, '/r/metrics.jsonl: cannot write: permission denied (EACCES)');
  });

  it('a full disk during a checkpoint and during training: ENOSPC names the file, the previous checkpoint stays (a 64 KiB tmpfs; skipped where mounting is not allowed)', async (t) => {
    const mnt = tmp();
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { encoding: 'utf8' });
    if (mounted.status !== 0) {
      t.skip(`cannot mount a small tmpfs here (${(mounted.stderr || mounted.error?.message || '').trim()})`);
      return;
    }
    try {
      const root = join(mnt, 'checkpoints');
      await saveCheckpoint(root, { tensors: { w: { shape: [4], data: new Float32Array(4) } }, sidecar: {}, step: 1 });
      await assert.rejects(saveCheckpoint(root, { tensors: { w: { shape: [32768], data: new Float32Array(32768) } }, sidecar: {}, step: 2 }), (e: Error) => {
        assert.equal(e.message, `${join(root, 'ckpt-000002', 'model.safetensors')}: cannot write the checkpoint: no space left on device (ENOSPC)`);
        return true;
      });
      assert.deepEqual(readdirSync(root).sort(), ['ckpt-000001', 'latest'], 'no partial checkpoint left');
      assert.equal((await loadCheckpoint(root)).step, 1);
      rmSync(root, { recursive: true });
      // a real run on a nearly full disk
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(60 * 1024));
      const r = await cli(['train', ...TINY, '--iterations', '40', '--log-every', '1', '--quiet', '--out', join(mnt, 'run')]);
      assertRefused(r, new RegExp(`${mnt}/run/\\S+: cannot [a-z ]+: no space left on device \\(ENOSPC\\)`), 'a full disk');
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('a read-only output folder: "permission denied" naming the folder, as a real process (run as nobody when the tests run as root)', async () => {
    const dir = tmp();
    const ro = join(dir, 'read-only');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    chmodSync(dir, 0o755);
    // root writes anywhere: the child runs as nobody then
    const as = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined;
    for (const out of [ro, join(ro, 'sub')]) {
      const r = await start(['train', ...TINY, '--iterations', '4', '--quiet', '--out', out], undefined, as).done;
      assertRefused(r, new RegExp(`${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot (write to the run folder|create the output folder): permission denied \\(EACCES\\)`), out);
    }
  });

  it('a crash between the first checkpoint folder and its `latest` pointer still resumes from that checkpoint', async () => {
    const run = tmp();
    const first = await runTraining(tinyConfig(run, { checkpointEvery: 0, iterations: 12 }), { device, quiet: true, log: () => {}, stopAtStep: 4 });
    assert.equal(first.result.steps, 4);
    rmSync(join(run, 'checkpoints', 'latest'));
    const logs: string[] = [];
    const r = await runTraining(tinyConfig(run, { checkpointEvery: 0, iterations: 12 }), { device, quiet: true, log: (s) => logs.push(s), resume: true });
    assert.equal(r.result.steps, 12);
    assert.ok(logs.some((l) => /resuming .*ckpt-000001 at step 4\/12/.test(l)), logs.join('\n'));
  });
});

// ------------------------------------------------------------------ fuzzing: checkpoints and recipes

/** Invalid values for each kind of setting (every one must be refused). */
const notJsonSafe = (v: unknown): boolean => Object.is(v, -0);
const wrongTypes = fc.oneof(fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.string(), fc.integer(), { maxKeys: 2 }));
const outside = (lo: number, hi: number): fc.Arbitrary<number> =>
  fc.oneof(fc.double({ max: lo, noNaN: true, maxExcluded: true }), fc.double({ min: hi, noNaN: true, minExcluded: true })).filter((v) => !notJsonSafe(v) && Number.isFinite(v));
const badInt = (lo: number, hi: number): fc.Arbitrary<unknown> =>
  fc.oneof(wrongTypes, outside(lo, hi), fc.double({ min: lo, max: hi, noNaN: true }).filter((v) => !Number.isInteger(v)));
const badNumber = (lo: number, hi: number): fc.Arbitrary<unknown> => fc.oneof(fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), outside(lo, hi));
const badChoice = (allowed: string[]): fc.Arbitrary<unknown> => fc.oneof(fc.string().filter((s) => !allowed.includes(s)), fc.integer(), fc.boolean(), fc.constant(null));
const badBool = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant('true'));
const badPath = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.constant(''), fc.array(fc.string(), { maxLength: 2 }));

const BAD_SETTING: Record<string, fc.Arbitrary<unknown>> = {
  model: badChoice(['resnet8', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'resnet9', 'smallcnn']),
  dataset: badChoice(['synthetic', 'cifar10', 'cifar100']),
  schedule: badChoice(['one-cycle', 'step', 'constant', 'clr']),
  preset: badChoice(['smith', 'pytorch', 'fastai']),
  clrMode: badChoice(['triangular', 'triangular2', 'exp_range']),
  imageSize: badInt(1, LIMITS.imageSize),
  syntheticTrain: badInt(1, LIMITS.syntheticTrain),
  syntheticTest: badInt(1, LIMITS.syntheticTest),
  batchSize: badInt(1, LIMITS.batchSize),
  width: badInt(1, LIMITS.width),
  epochs: badInt(1, LIMITS.epochs),
  iterations: badInt(1, LIMITS.iterations),
  trainSubset: badInt(1, LIMITS.trainSubset),
  testSubset: badInt(1, LIMITS.testSubset),
  evalEvery: badInt(0, LIMITS.evalEvery),
  checkpointEvery: badInt(0, LIMITS.checkpointEvery),
  logEvery: badInt(1, LIMITS.logEvery),
  clrStepSize: badInt(1, LIMITS.clrStepSize),
  cutout: badInt(0, LIMITS.imageSize),
  seed: badInt(0, LIMITS.seed),
  valSplit: badNumber(0, 0.9),
  gamma: badNumber(0, 1),
  weightDecay: badNumber(0, 1),
  momentum: badNumber(0, 1),
  minMomentum: badNumber(0, 1),
  bnMomentum: badNumber(0, 1),
  labelSmoothing: badNumber(0, 1),
  divergenceFactor: badNumber(1, 1e9),
  annihilationFraction: badNumber(0, 1),
  minLr: badNumber(0, 1e3),
  maxLr: fc.oneof(fc.string().filter((s) => s !== 'auto'), fc.constant(null), fc.boolean(), outside(0, 1e3), fc.constant(0)),
  cycleMomentum: badBool,
  nesterov: badBool,
  augment: badBool,
  out: badPath,
  data: badPath,
  milestones: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant([-1]), fc.constant([1.5]), fc.constant(['10']), fc.constant([1e12])),
};

describe('fuzz: recipes with a wrong type or range', () => {
  it('every key covered by the generator is a recipe key, and every recipe key is covered', () => {
    const keys = Object.keys(DEFAULTS).concat(['width', 'data', 'trainSubset', 'testSubset', 'epochs', 'iterations', 'minLr', 'annihilationFraction', 'clrStepSize']);
    assert.deepEqual(Object.keys(BAD_SETTING).sort(), [...new Set(keys)].sort());
  });

  it('each is refused with one line naming the recipe file and the key', () => {
    const dir = tmp();
    let n = 0;
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(BAD_SETTING)).chain((key) => fc.tuple(fc.constant(key), BAD_SETTING[key]!)), ([key, value]) => {
        const path = join(dir, `r${n++}.json`);
        writeFileSync(path, JSON.stringify({ description: 'fuzz', [key]: value }));
        let message = '';
        try {
          parseTrainArgs(['--recipe', path]);
        } catch (e) {
          assert.ok(!(e instanceof TypeError), `a TypeError: ${(e as Error).message}`);
          message = (e as Error).message;
        }
        assert.ok(message, `${key} = ${JSON.stringify(value)} was accepted`);
        assert.ok(!message.includes('\n'), `one line: ${message}`);
        assert.ok(message.startsWith(`${path}: ${key}`) || (key === 'dataset' && message.startsWith(`${path}: dataset`)), `names ${path} and ${key}: ${message}`);
      }),
      { numRuns: 300, seed: 17 },
    );
  });
});

describe('fuzz: corrupted checkpoints', () => {
  let model: Module;
  let optimizer: SGD;
  let loader: BatchLoader;
  let config: TrainConfig;
  before(async () => {
    config = tinyConfig(base);
    const data = await loadDatasets(config);
    model = await modelFor(device, config, data.train);
    optimizer = new SGD({ params: model.namedParameters(), lr: 0.1, momentum: 0.9 });
    loader = new BatchLoader(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, dropLast: true });
  });
  after(() => {
    optimizer.dispose();
    model.dispose();
  });

  /** What `train --resume` does with a checkpoint before its first step. */
  async function resumeChecks(run: string): Promise<void> {
    const ck = await loadTrainingCheckpoint(join(run, 'checkpoints'));
    if (!ck) throw new Error('no checkpoint');
    applyCheckpoint(ck, model, optimizer, loader, config);
  }

  type Damage = { describe: string; apply(ckptDir: string): void; file: 'state.json' | 'model.safetensors' };
  const weightsOf = (dir: string): Buffer => readFileSync(join(dir, 'model.safetensors'));
  const decoded = (dir: string) => decodeSafetensors(weightsOf(dir));

  const sidecarFields: [string, fc.Arbitrary<unknown>][] = [
    ...Object.entries(BAD_SETTING).map(([k, arb]): [string, fc.Arbitrary<unknown>] => [`config.${k}`, arb]),
    ['maxLr', badNumber(Number.MIN_VALUE, 1e3)],
    ['totalSteps', badInt(1, LIMITS.iterations)],
    ['optimizer.step', fc.oneof(badInt(0, 8), fc.integer({ min: 9, max: 2e9 }))],
    ['optimizer.velocities', fc.oneof(fc.constant(null), fc.string(), fc.constant([]), fc.constant([1, 2]), fc.array(fc.constant('AAAA'), { minLength: 1, maxLength: 8 }))],
    ['loader.position', fc.oneof(badInt(0, 2 ** 53), fc.constant(7), fc.constant(256))],
    ['loader.seed', fc.oneof(badInt(0, 2 ** 53), fc.constant(4))],
    ['loader.size', fc.oneof(badInt(0, 2 ** 53), fc.constant(255))],
    ['loader.batchSize', fc.oneof(badInt(0, 2 ** 53), fc.constant(16))],
    ['loader.shuffle', fc.oneof(badBool, fc.constant(false))],
    ['config', fc.oneof(fc.constant(null), fc.integer(), fc.string())],
    ['optimizer', fc.oneof(fc.constant(null), fc.constant({}))],
  ];

  const damage: fc.Arbitrary<Damage> = fc.oneof(
    // a flipped byte anywhere in the weights
    fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, x]): Damage => ({
      describe: `flip byte ${at} ^ ${x}`,
      file: 'model.safetensors',
      apply: (d) => {
        const b = weightsOf(d);
        b[at % b.length]! ^= x;
        writeFileSync(join(d, 'model.safetensors'), b);
      },
    })),
    // truncation of either file
    fc.tuple(fc.constantFrom('model.safetensors' as const, 'state.json' as const), fc.double({ min: 0, max: 0.999, noNaN: true })).map(([file, f]): Damage => ({
      describe: `truncate ${file} to ${f}`,
      file,
      apply: (d) => {
        const b = readFileSync(join(d, file));
        writeFileSync(join(d, file), b.subarray(0, Math.floor(b.length * f)));
      },
    })),
    // header edits re-encoded with matching size and SHA-256: shape, dtype, a missing or renamed tensor, a NaN
    fc.tuple(fc.constantFrom('reshape', 'dtype', 'drop', 'rename', 'nan', 'inf'), fc.nat(), fc.nat()).map(([kind, which, at]): Damage => ({
      describe: `header ${kind} #${which} @${at}`,
      file: 'model.safetensors',
      apply: (d) => {
        const st = decoded(d);
        const names = Object.keys(st.tensors).filter((k) => st.tensors[k]!.dtype === 'F32' && st.tensors[k]!.shape.length > 1);
        const name = names[which % names.length]!;
        const t = st.tensors[name]!;
        const tensors: Record<string, TensorEntry> = {};
        for (const [k, v] of Object.entries(st.tensors)) tensors[k] = { shape: v.shape, data: v.data, dtype: v.dtype };
        if (kind === 'reshape') tensors[name] = { ...tensors[name]!, shape: [t.shape.reduce((a, b) => a * b, 1)] };
        if (kind === 'dtype') tensors[name] = { shape: t.shape, data: new Int32Array((t.data as Float32Array).slice().buffer), dtype: 'I32' };
        if (kind === 'drop') delete tensors[name];
        if (kind === 'rename') {
          tensors[`${name}_`] = tensors[name]!;
          delete tensors[name];
        }
        if (kind === 'nan' || kind === 'inf') (t.data as Float32Array)[at % t.data.length] = kind === 'nan' ? NaN : -Infinity;
        replaceWeights(d, encodeSafetensors(tensors, st.metadata));
      },
    })),
    // raw header text edits (a digit or quote changed) with matching size and SHA-256, outside
    // __metadata__ (free-form strings that nothing reads back)
    fc.tuple(fc.nat(), fc.constantFrom('0', '9', '"', '[', ' ')).map(([at, ch]): Damage => ({
      describe: `header byte ${at} := ${ch}`,
      file: 'model.safetensors',
      apply: (d) => {
        const b = weightsOf(d);
        const headerLen = Number(b.readBigUInt64LE(0));
        const header = b.subarray(8, 8 + headerLen).toString('latin1');
        const m0 = header.indexOf('"__metadata__"');
        const m1 = header.indexOf('}', m0) + 1;
        const free = headerLen - (m1 - m0);
        let i = at % free;
        if (i >= m0) i += m1 - m0;
        i += 8;
        if (b[i] === ch.charCodeAt(0)) b[i] = ch === '0' ? 0x31 : 0x30;
        else b[i] = ch.charCodeAt(0);
        replaceWeights(d, b);
      },
    })),
    // wrong types and ranges in the sidecar
    fc.constantFrom(...sidecarFields).chain(([path, arb]) =>
      arb.map((value): Damage => ({
        describe: `sidecar.${path} = ${JSON.stringify(value)}`,
        file: 'state.json',
        apply: (d) =>
          editState(d, (s) => {
            const parts = path.split('.');
            let o = s.sidecar as Record<string, unknown>;
            for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
            o[parts[parts.length - 1]!] = value;
          }),
      })),
    ),
  );

  it('every damaged checkpoint is refused with one line naming the file, before anything is loaded', async () => {
    const template = copyRun(base);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(damage, async (dmg) => {
        const run = join(template, `case-${n++}`);
        mkdirSync(run);
        cpSync(join(template, 'checkpoints'), join(run, 'checkpoints'), { recursive: true });
        const dir = latestDir(run);
        dmg.apply(dir);
        let error: Error | null = null;
        try {
          await resumeChecks(run);
        } catch (e) {
          error = e as Error;
        }
        rmSync(run, { recursive: true, force: true });
        assert.ok(error, `${dmg.describe}: accepted`);
        assert.ok(!(error instanceof TypeError), `${dmg.describe}: ${error.stack}`);
        assert.ok(!error.message.includes('\n'), `${dmg.describe}: one line: ${error.message}`);
        const named = [join(dir, 'state.json'), join(dir, 'model.safetensors')];
        assert.ok(named.some((p) => error.message.startsWith(`${p}: cannot load checkpoint: `)), `${dmg.describe}: names the file: ${error.message}`);
      }),
      { numRuns: 250, seed: 17 },
    );
  });

  it('through the CLI (a few real processes): exit 1, one line, the file named', async () => {
    const samples = fc.sample(damage, { numRuns: 3, seed: 5 });
    for (const dmg of samples) {
      const run = copyRun(base);
      dmg.apply(latestDir(run));
      // eval reads the weights and settings (not the optimizer or loader state); train --resume reads everything
      const commands = [['train', '--resume', '--out', run, '--quiet']];
      if (dmg.file === 'model.safetensors') commands.push(['eval', '--checkpoint', run, '--quiet']);
      for (const args of commands) {
        const r = await cli(args);
        assertRefused(r, /(state\.json|model\.safetensors): cannot load checkpoint: /, `${args[0]}: ${dmg.describe}`);
      }
    }
  });
});
