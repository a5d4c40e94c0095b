// Experiments (run/experiment.ts, run/experimentReport.ts, `experiment` command):
// the report's numbers on a hand-made folder of runs (exact mean, sample std, min,
// max; interrupted, unfinished and diverged runs listed but not counted), experiment
// files refused with the file and key named, the plan's statuses and time estimate,
// experiments/smoke.json end to end, and resume after `kill -9` of a real child
// process (finished runs skipped, the results equal to an uninterrupted run's).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Device } from '../gpu/device.ts';
import { formatPlan, onlyArms, onlySeeds, planExperiment, probeSpeed, readExperiment, runExperiment } from '../run/experiment.ts';
import { type ExperimentResults, aggregate, buildResults, compareNames, stats, writeReport } from '../run/experimentReport.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const SMOKE = join(ROOT, 'experiments', 'smoke.json');
const tmp = (): string => mkdtempSync(join(tmpdir(), 'onecycle-exp-'));
const quiet = { quiet: true, log: (): void => {} };

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], onStart?: (child: ChildProcess) => void): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    onStart?.(child);
  });
}
const show = (r: Ran): string => `exit ${r.code} ${r.signal ?? ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

// ------------------------------------------------------------------ fixture

interface FakeRun {
  name: string;
  end?: 'completed' | 'interrupted' | 'diverged';
  /** test evaluations: [step, acc] */
  evals: [number, number][];
  seconds?: number;
  maxLr?: number;
}

/** A run folder as `train` writes it: summary.json (unless unfinished) and metrics.jsonl with step and test-eval lines. */
function fakeRun(root: string, r: FakeRun): void {
  const dir = join(root, r.name);
  mkdirSync(dir, { recursive: true });
  const config = { model: 'resnet8', dataset: 'synthetic', syntheticTrain: 100, batchSize: 10, epochs: 3, maxLr: r.maxLr ?? 0.1, seed: 1 };
  const lines: string[] = [];
  const last = r.evals.length ? r.evals[r.evals.length - 1]![0] : 0;
  for (let s = 0; s < Math.max(last, 1); s++) lines.push(JSON.stringify({ kind: 'step', step: s, loss: 1, acc: 0.5, lr: 0.1, momentum: 0.9, imagesPerSec: 100 + s }));
  for (const [step, acc] of r.evals) lines.push(JSON.stringify({ kind: 'eval', split: 'test', step, loss: 1, acc, images: 50 }));
  writeFileSync(join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);
  if (r.end) {
    const final = r.end === 'diverged' ? null : r.evals[r.evals.length - 1]!;
    writeFileSync(
      join(dir, 'summary.json'),
      JSON.stringify({
        end: r.end,
        steps: last,
        totalSteps: 30,
        seconds: r.seconds ?? 10,
        finalEval: final ? { step: final[0], acc: final[1] } : null,
        testAccuracy: final ? final[1] : null,
        config,
      }),
    );
  }
}

function fixture(): string {
  const root = tmp();
  // arm a: three completed seeds (final 0.5, 0.6, 0.7; best 0.55, 0.6, 0.75) and an interrupted one that must not count
  fakeRun(root, { name: 'a-s1', end: 'completed', evals: [[10, 0.3], [20, 0.55], [30, 0.5]], seconds: 10 });
  fakeRun(root, { name: 'a-s2', end: 'completed', evals: [[10, 0.2], [20, 0.4], [30, 0.6]], seconds: 20 });
  fakeRun(root, { name: 'a-s3', end: 'completed', evals: [[10, 0.4], [20, 0.75], [30, 0.7]], seconds: 30 });
  fakeRun(root, { name: 'a-s4', end: 'interrupted', evals: [[10, 0.99], [20, 0.99]] });
  // arm b (another max LR): one completed seed (n = 1: std 0), one unfinished (no summary), one diverged
  fakeRun(root, { name: 'b-s1', end: 'completed', evals: [[10, 0.25], [20, 0.5], [30, 0.8]], maxLr: 1 });
  fakeRun(root, { name: 'b-s2', evals: [[10, 0.9]], maxLr: 1 });
  fakeRun(root, { name: 'b-s3', end: 'diverged', evals: [], maxLr: 1 });
  // not a training run
  mkdirSync(join(root, 'rt-s1'));
  writeFileSync(join(root, 'rt-s1', 'range-test.json'), '{}');
  return root;
}

describe('experiment report: aggregation', () => {
  it('sample std (n − 1), n = 1 gives std 0, nothing for no values', () => {
    assert.deepEqual(stats([]), null);
    assert.deepEqual(stats([0.4]), { n: 1, mean: 0.4, std: 0, min: 0.4, max: 0.4 });
    const s = stats([1, 2, 3, 4])!;
    close(s.mean, 2.5, 'mean');
    close(s.std, Math.sqrt(5 / 3), 'std');
    assert.deepEqual(['lr0.1', 'lr1.2', 'lr0.05', 'oc16', 'oc8', 'wd5e-4', 'wd3e-5', 'lr0.19'].sort(compareNames), ['lr0.05', 'lr0.1', 'lr0.19', 'lr1.2', 'oc8', 'oc16', 'wd3e-5', 'wd5e-4']);
  });

  it('groups NAME-sN by arm; exact mean/std/min/max of final and best accuracy over completed runs only', () => {
    const { results } = buildResults(fixture());
    assert.deepEqual(results.arms.map((a) => a.arm), ['a', 'b']);
    assert.deepEqual(results.skipped, ['rt-s1']);
    const [a, b] = results.arms as [ExperimentResults['arms'][0], ExperimentResults['arms'][0]];
    assert.deepEqual(a.included, ['a-s1', 'a-s2', 'a-s3']);
    assert.deepEqual(a.excluded, [{ name: 'a-s4', state: 'interrupted' }]);
    assert.equal(a.finalAcc!.n, 3);
    close(a.finalAcc!.mean, 0.6, 'a final mean');
    close(a.finalAcc!.std, 0.1, 'a final std');
    close(a.finalAcc!.min, 0.5, 'a final min');
    close(a.finalAcc!.max, 0.7, 'a final max');
    close(a.bestAcc!.mean, (0.55 + 0.6 + 0.75) / 3, 'a best mean');
    close(a.bestAcc!.std, Math.sqrt(((0.55 - 19 / 30) ** 2 + (0.6 - 19 / 30) ** 2 + (0.75 - 19 / 30) ** 2) / 2), 'a best std');
    close(a.bestAcc!.min, 0.55, 'a best min');
    close(a.bestAcc!.max, 0.75, 'a best max');
    close(a.wallSeconds!.mean, 20, 'a wall mean');
    assert.equal(a.epochs, 3, '30 steps of 10 over 100 images');
    // the curve: epochs on x (steps per epoch 100 / 10), mean and min-max over the three seeds
    assert.deepEqual(a.curve.map((p) => p.x), [1, 2, 3]);
    close(a.curve[1]!.mean, (0.55 + 0.4 + 0.75) / 3, 'curve mean');
    assert.equal(a.curve[1]!.min, 0.4);
    assert.equal(a.curve[1]!.max, 0.75);
    assert.equal(b.finalAcc!.n, 1);
    assert.equal(b.finalAcc!.std, 0);
    assert.equal(b.finalAcc!.mean, 0.8);
    assert.deepEqual(b.excluded, [{ name: 'b-s2', state: 'unfinished' }, { name: 'b-s3', state: 'diverged' }]);
    assert.deepEqual(a.settings, { maxLr: 0.1 });
    assert.deepEqual(b.settings, { maxLr: 1 });
    assert.equal(results.xAxis, 'epoch');
    // an explicit order (an experiment's arms) wins over the name order
    assert.deepEqual(aggregate(buildResults(fixture()).records, ['b', 'a']).arms.map((x) => x.arm), ['b', 'a']);
  });

  it('writes results.json, results.md and the two charts; `experiment report` reads FOLDER/runs and writes beside it', async () => {
    const root = fixture();
    const { files } = await writeReport(root, { title: 'fixture' });
    assert.deepEqual(files.map((f) => f.slice(root.length + 1)), ['results.json', 'results.md', 'test-accuracy.svg', 'final-accuracy.svg']);
    const md = readFileSync(join(root, 'results.md'), 'utf8');
    assert.match(md, /\| a \| 0\.1 \| 3 \| 60\.00 ± 10\.00 \| 50\.00 \| 70\.00 \|/);
    assert.match(md, /\| b \| 1 \| 1 \| 80\.00 ± 0\.00 \|.*b-s2 \(unfinished\), b-s3 \(diverged\)/);
    assert.match(md, /a-s4 \| interrupted/);
    const curve = readFileSync(join(root, 'test-accuracy.svg'), 'utf8');
    assert.match(curve, /^<svg[\s\S]*data-band="0"[\s\S]*data-series="a \(n=3\)"[\s\S]*<\/svg>\s*$/);
    assert.match(readFileSync(join(root, 'final-accuracy.svg'), 'utf8'), /data-row="a \(n=3\)"[\s\S]*data-row="b \(n=1\)"/);
    const json = JSON.parse(readFileSync(join(root, 'results.json'), 'utf8')) as ExperimentResults;
    assert.equal(json.runs.length, 7);

    const parent = tmp();
    const { cpSync } = await import('node:fs');
    cpSync(root, join(parent, 'runs'), { recursive: true });
    const r = await cli(['experiment', 'report', parent]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^a\s+3\s+60\.00 ± 10\.00/m);
    for (const f of ['results.json', 'results.md', 'test-accuracy.svg', 'final-accuracy.svg']) assert.ok(existsSync(join(parent, f)), f);
  });
});

// ------------------------------------------------------------------ experiment files

describe('experiment files', () => {
  const write = (obj: unknown): string => {
    const p = join(tmp(), 'exp.json');
    writeFileSync(p, typeof obj === 'string' ? obj : JSON.stringify(obj));
    return p;
  };
  const ok = { name: 'e', base: { model: 'resnet8', dataset: 'synthetic' }, arms: [{ name: 'x', overrides: {} }], seeds: [1] };

  it('merges defaults ← recipe ← base ← overrides ← seed and out; seed-major order', () => {
    const out = tmp();
    const e = readExperiment(write({ ...ok, base: { recipe: 'recipes/quickstart.json', iterations: 7 }, arms: [{ name: 'x', overrides: { maxLr: 0.3 } }, { name: 'y' }], seeds: [3, 4] }), out);
    assert.deepEqual(e.runs.map((r) => r.name), ['x-s3', 'y-s3', 'x-s4', 'y-s4']);
    const x3 = e.runs[0]!.config;
    assert.equal(x3.model, 'resnet8'); // from the recipe
    assert.equal(x3.iterations, 7); // base over the recipe
    assert.equal(x3.maxLr, 0.3); // override
    assert.equal(e.runs[1]!.config.maxLr, 0.8); // the recipe's
    assert.equal(x3.seed, 3);
    assert.equal(x3.out, join(out, 'x-s3'));
    assert.equal(readExperiment(write(ok)).out, join('runs', 'experiments', 'e'));
    // --data: every run reads the data from another folder (a GPU machine's staged copy)
    const moved = readExperiment(write({ ...ok, base: { ...ok.base, data: 'here' } }), out, '/elsewhere');
    assert.deepEqual(moved.runs.map((r) => r.config.data), ['/elsewhere']);
    // --seeds: a subset of the file's seeds, in the file's order; a seed not in the file is refused
    const some = onlySeeds(readExperiment(write({ ...ok, arms: [{ name: 'x' }, { name: 'y' }], seeds: [1, 2, 3, 4] }), out), [4, 3]);
    assert.deepEqual(some.seeds, [3, 4]);
    assert.deepEqual(some.runs.map((r) => r.name), ['x-s3', 'y-s3', 'x-s4', 'y-s4']);
    assert.throws(() => onlySeeds(e, [5]), /--seeds 5 not among the file's seeds \(3, 4\)/);
    // --arms: a subset of the file's arms, in the file's order, at every seed (or those --seeds kept)
    const two = readExperiment(write({ ...ok, arms: [{ name: 'x' }, { name: 'y' }, { name: 'z' }], seeds: [1, 2] }), out);
    const armed = onlyArms(two, ['z', 'x']);
    assert.deepEqual(armed.arms.map((a) => a.name), ['x', 'z']);
    assert.deepEqual(armed.runs.map((r) => r.name), ['x-s1', 'z-s1', 'x-s2', 'z-s2']);
    assert.deepEqual(onlyArms(onlySeeds(two, [2]), ['y']).runs.map((r) => r.name), ['y-s2']);
    assert.throws(() => onlyArms(two, ['w']), /--arms w not among the file's arms \(x, y, z\)/);
    assert.throws(() => onlyArms(two, []), /--arms names no arm/);
  });

  it('the committed experiment files are valid (every run of every arm passes train\'s validation)', () => {
    for (const f of ['experiments/smoke.json', 'experiments/cifar10-10k-resnet20.json']) {
      const e = readExperiment(f, tmp());
      assert.ok(e.runs.length >= e.arms.length, f);
    }
  });

  it('refuses bad files naming the file and the key', () => {
    const cases: [unknown, RegExp][] = [
      ['{"name":', /exp\.json: not valid JSON/],
      [{ ...ok, extra: 1 }, /exp\.json: unknown key 'extra'/],
      [{ ...ok, name: 'a b' }, /exp\.json: name must be a folder-safe string/],
      [{ ...ok, arms: [] }, /exp\.json: arms must be a non-empty array/],
      [{ ...ok, arms: [{ name: 'x', overrides: { learningRate: 1 } }] }, /exp\.json: arms\[0\]\.overrides: unknown configuration key 'learningRate'/],
      [{ ...ok, arms: [{ name: 'x', overrides: { batchSize: 0 } }] }, /exp\.json: arm 'x' \(seed 1\).*batchSize/],
      [{ ...ok, arms: [{ name: 'x', overrides: { seed: 2 } }] }, /exp\.json: arms\[0\]\.overrides\.seed: seeds come from/],
      [{ ...ok, base: { out: 'x' } }, /exp\.json: base\.out: run folders are OUT\/ARM-sSEED/],
      [{ ...ok, arms: [{ name: 'x' }, { name: 'x' }] }, /exp\.json: arms\[1\]\.name 'x' is used twice/],
      [{ ...ok, arms: [{ name: 'lr-s2' }] }, /exp\.json: arms\[0\]\.name 'lr-s2' ends like a seed suffix/],
      [{ ...ok, seeds: [1, 1] }, /exp\.json: seeds has duplicates/],
      [{ ...ok, seeds: [-1] }, /exp\.json: seeds must be a non-empty array of non-negative integers/],
      [{ ...ok, base: { recipe: 'nowhere.json' } }, /exp\.json: base\.recipe: nowhere\.json not found/],
      [{ ...ok, base: { dataset: 'cifar10' } }, /exp\.json: arm 'x' \(seed 1\).*dataset 'cifar10' needs --data/],
    ];
    for (const [obj, re] of cases) assert.throws(() => readExperiment(write(obj)), re, JSON.stringify(obj));
    assert.throws(() => readExperiment(join(tmp(), 'absent.json')), /absent\.json: cannot read experiment file/);
  });
});

// ------------------------------------------------------------------ plan

describe('experiment plan (--dry-run)', () => {
  it('done / partial / todo from the run folders; time left from finished runs’ speed; changed settings refused', async () => {
    const out = tmp();
    const e = readExperiment(SMOKE, out);
    const [r1, r2, r3] = e.runs as [(typeof e.runs)[0], (typeof e.runs)[0], (typeof e.runs)[0]];
    // r1 completed in 4 s (0.1 s per step)
    mkdirSync(r1.dir, { recursive: true });
    writeFileSync(join(r1.dir, 'summary.json'), JSON.stringify({ end: 'completed', steps: 40, totalSteps: 40, seconds: 4, testAccuracy: 0.5, config: r1.config }));
    // r2 has a checkpoint at step 16
    mkdirSync(join(r2.dir, 'checkpoints', 'ckpt-000002'), { recursive: true });
    writeFileSync(join(r2.dir, 'checkpoints', 'latest'), 'ckpt-000002\n');
    writeFileSync(join(r2.dir, 'checkpoints', 'ckpt-000002', 'state.json'), JSON.stringify({ step: 16, sidecar: { totalSteps: 40, config: r2.config } }));
    // r3 was killed before its first checkpoint: it starts again
    mkdirSync(r3.dir, { recursive: true });
    writeFileSync(join(r3.dir, 'metrics.jsonl'), '{"kind":"step","step":0,"loss":2,"acc":0.1,"lr":0.1,"momentum":0.9}\n');
    const plan = await planExperiment(e);
    assert.deepEqual(plan.entries.map((x) => [x.run.name, x.status, x.stepsDone, x.totalSteps]), [
      ['onecycle-s1', 'done', 40, 40],
      ['constant-s1', 'partial', 16, 40],
      ['onecycle-s2', 'todo', 0, 40],
      ['constant-s2', 'todo', 0, 40],
    ]);
    assert.equal(plan.entries[2]!.note, 'no checkpoint: starts again');
    assert.equal(plan.stepsLeft, 24 + 40 + 40);
    close(plan.secondsLeft!, 10.4, 'seconds left at 0.1 s/step');
    const text = formatPlan(plan);
    assert.match(text, /constant-s1\s+partial\s+16\/40/);
    assert.match(text, /1 done, 1 partial, 2 todo · 104 of 160 steps left · estimated time left: 10 s/);
    assert.match(text, /0\.100 s\/step \(320\.0 images\/s\) from 1 finished run \(onecycle-s1\)/);

    // through the command line
    const r = await cli(['experiment', SMOKE, '--dry-run', '--out', out]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /onecycle-s1\s+done\s+40\/40/);
    assert.match(r.stdout, /onecycle-s2\s+todo\s+0\/40\s+4 s\s+\(no checkpoint: starts again\)/);

    // no finished run: the estimate is unknown, and says so
    const fresh = await planExperiment(readExperiment(SMOKE, tmp()));
    assert.equal(fresh.secondsLeft, null);
    assert.match(formatPlan(fresh), /estimated time left: unknown/);

    // a run folder made with other settings is refused, naming the folder and the setting
    writeFileSync(join(r1.dir, 'summary.json'), JSON.stringify({ end: 'completed', steps: 40, totalSteps: 40, seconds: 4, config: { ...r1.config, maxLr: 0.5 } }));
    await assert.rejects(planExperiment(e), /onecycle-s1: its summary\.json was made with other settings .*maxLr 0\.5 → 0\.8/);
  });
});

// ------------------------------------------------------------------ running

describe('experiment: running', () => {
  // created by the first test that trains, not in a before hook: a device created and destroyed at
  // once (every test here filtered out by --test-name-pattern) sometimes aborts lavapipe's threads
  // ("The futex facility returned an unexpected error code")
  let device: Device;
  let made = false;
  const dev = async (): Promise<Device> => {
    device = await testDevice();
    made = true;
    return device;
  };
  after(async () => {
    if (made) await destroyTestDevice();
  });

  const stepLosses = (dir: string): number[] =>
    readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"kind":"step"'))
      .map((l) => (JSON.parse(l) as { loss: number }).loss);
  let reference: { out: string; results: ExperimentResults } | null = null;

  it('experiments/smoke.json end to end: 4 runs, report, then a rerun skips them all', async () => {
    const out = tmp();
    const exp = readExperiment(SMOKE, out);
    const r = await runExperiment(exp, { device: await dev(), ...quiet });
    assert.equal(r.end, 'completed');
    assert.deepEqual(r.trained, ['onecycle-s1', 'constant-s1', 'onecycle-s2', 'constant-s2']);
    assert.deepEqual(r.results.arms.map((a) => [a.arm, a.finalAcc?.n, a.epochs]), [['onecycle', 2, 5], ['constant', 2, 5]]);
    for (const a of r.results.arms) assert.deepEqual(a.curve.map((p) => p.x), [1, 2, 3, 4, 5]);
    for (const f of ['results.json', 'results.md', 'test-accuracy.svg', 'final-accuracy.svg', 'experiment.json']) assert.ok(existsSync(join(out, f)), f);
    for (const run of exp.runs) assert.equal((JSON.parse(readFileSync(join(run.dir, 'summary.json'), 'utf8')) as { end: string }).end, 'completed');
    const again = await runExperiment(exp, { device, ...quiet });
    assert.deepEqual(again.trained, []);
    assert.equal(again.skipped.length, 4);
    assert.deepEqual(again.results.arms, r.results.arms);
    reference = { out, results: r.results };
  });

  it('resumes after kill -9 of the command: finished runs skipped, the killed run resumed, results as uninterrupted', async () => {
    assert.ok(reference, 'needs the end-to-end run');
    const out = tmp();
    const exp = readExperiment(SMOKE, out);
    const victim = exp.runs[1]!; // constant-s1: killed after a checkpoint, before its end
    let killedAt = -1;
    const r = await cli(['experiment', SMOKE, '--out', out, '--quiet'], (child) => {
      const poll = setInterval(() => {
        try {
          const latest = readFileSync(join(victim.dir, 'checkpoints', 'latest'), 'utf8').trim();
          const step = (JSON.parse(readFileSync(join(victim.dir, 'checkpoints', latest, 'state.json'), 'utf8')) as { step: number }).step;
          if (step > 0 && step < 40 && !existsSync(join(victim.dir, 'summary.json'))) {
            killedAt = step;
            child.kill('SIGKILL');
            clearInterval(poll);
          }
        } catch {
          // not there yet
        }
      }, 15);
      child.on('close', () => clearInterval(poll));
    });
    assert.equal(r.signal, 'SIGKILL', `the child was to be killed mid-run: ${show(r)}`);
    const plan = await planExperiment(exp);
    assert.deepEqual(plan.entries.map((x) => x.status), ['done', 'partial', 'todo', 'todo']);
    assert.ok(plan.entries[1]!.stepsDone >= killedAt);
    const firstSummary = join(exp.runs[0]!.dir, 'summary.json');
    const before = readFileSync(firstSummary, 'utf8');
    const mtime = statSync(firstSummary).mtimeMs;

    const lines: string[] = [];
    const resumed = await runExperiment(exp, { device: await dev(), quiet: true, log: (s) => lines.push(s) });
    assert.equal(resumed.end, 'completed');
    assert.deepEqual(resumed.skipped, ['onecycle-s1']);
    assert.deepEqual(resumed.trained, ['constant-s1', 'onecycle-s2', 'constant-s2']);
    assert.ok(lines.some((l) => /\[smoke 2\/4 constant-s1\] resuming at step \d+/.test(l)), lines.join('\n'));
    assert.equal(readFileSync(firstSummary, 'utf8'), before, 'the finished run is left alone');
    assert.equal(statSync(firstSummary).mtimeMs, mtime);
    // the engine is deterministic on one adapter: the same losses and accuracies as the uninterrupted experiment
    for (const run of exp.runs) assert.deepEqual(stepLosses(run.dir), stepLosses(join(reference.out, run.name)), run.name);
    const strip = (x: ExperimentResults): unknown => x.arms.map((a) => ({ arm: a.arm, finalAcc: a.finalAcc, bestAcc: a.bestAcc, curve: a.curve, included: a.included }));
    assert.deepEqual(strip(resumed.results), strip(reference.results));
  });

  it('a run folder holding files that are not a run\'s is refused, not deleted', async () => {
    const out = tmp();
    const exp = readExperiment(SMOKE, out);
    mkdirSync(exp.runs[0]!.dir, { recursive: true });
    writeFileSync(join(exp.runs[0]!.dir, 'notes.txt'), 'mine');
    await assert.rejects(runExperiment(exp, { device: await dev(), ...quiet }), /onecycle-s1: holds files that are not a training run's \(notes\.txt\)/);
    assert.ok(existsSync(join(exp.runs[0]!.dir, 'notes.txt')));
  });

  it('--dry-run --probe: a few measured steps give the estimate when no run has finished', async () => {
    const out = tmp();
    const plan = await planExperiment(readExperiment(SMOKE, out), { probe: async (c) => probeSpeed(c, { device: await dev() }) });
    assert.ok(plan.secondsLeft !== null && plan.secondsLeft > 0 && Number.isFinite(plan.secondsLeft), String(plan.secondsLeft));
    assert.equal(plan.speedSources.length, 1, 'one probe: both arms train at the same speed');
    assert.match(plan.speedSources[0]!, /from a probe of onecycle-s1's settings/);
    assert.ok(!existsSync(join(out, 'onecycle-s1')), 'the probe leaves the experiment folder alone');
  });

  it('Ctrl-C stops the experiment resumably (exit 130)', async () => {
    const out = tmp();
    const exp = readExperiment(SMOKE, out);
    const r = await cli(['experiment', SMOKE, '--out', out, '--quiet'], (child) => {
      let sent = false;
      child.stderr!.on('data', (d: Buffer) => {
        if (!sent && d.toString().includes('[smoke 1/4 onecycle-s1] resnet8')) {
          sent = true;
          setTimeout(() => child.kill('SIGINT'), 300);
        }
      });
    });
    assert.equal(r.code, 130, show(r));
    assert.match(r.stdout, /experiment 'smoke' stopped; run the same command again to continue/);
    assert.match(readFileSync(join(out, 'results.md'), 'utf8'), /Planned but not started: constant-s1, onecycle-s2, constant-s2\./);
    const plan = await planExperiment(exp);
    assert.ok(['partial', 'done'].includes(plan.entries[0]!.status), plan.entries[0]!.status);
    assert.deepEqual(plan.entries.slice(1).map((x) => x.status), ['todo', 'todo', 'todo']);
  });
});
