// Experiments: a file of arms (a base configuration plus per-arm overrides) × seeds,
// run one after another in-process through `train`'s own runTraining (same
// checkpoints, resume and metrics), each in OUT/ARM-sSEED. Resumable at any point:
// a completed (or diverged) run is skipped, a run with a checkpoint is resumed
// from it, anything else starts afresh; Ctrl-C stops after the current run has
// written its checkpoint. At the end (and on a stop) the report is written.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { DEFAULTS, KEYS, type TrainConfig, readRecipe, validateConfig } from './config.ts';
import { type MaxLrResolver, runTraining } from './train.ts';
import type { Device } from '../gpu/device.ts';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { type ExperimentResults, checkpointInfo, plannedSteps, readRun, writeReport } from './experimentReport.ts';

export interface ExperimentArm {
  name: string;
  overrides: Partial<TrainConfig>;
}

export interface PlannedRun {
  /** ARM-sSEED, the run's folder name */
  name: string;
  arm: string;
  seed: number;
  dir: string;
  /** the merged, validated configuration (out = dir, seed = seed) */
  config: TrainConfig;
}

export interface Experiment {
  name: string;
  /** the experiment file */
  file: string;
  out: string;
  arms: ExperimentArm[];
  seeds: number[];
  /** seed-major: every arm at the first seed, then every arm at the next */
  runs: PlannedRun[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const TOP_KEYS = new Set(['name', 'description', 'base', 'arms', 'seeds', 'out']);

function fail(file: string, msg: string): never {
  throw new Error(`${file}: ${msg}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** TrainConfig keys of `obj` (comments: keys starting with // and 'description'); unknown keys, seed and out refused. */
function configKeys(file: string, where: string, obj: Record<string, unknown>, allowRecipe: boolean): Partial<TrainConfig> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k.startsWith('//') || k === 'description' || (allowRecipe && k === 'recipe')) continue;
    if (k === 'seed') fail(file, `${where}.seed: seeds come from the experiment's "seeds" list`);
    if (k === 'out') fail(file, `${where}.out: run folders are OUT/ARM-sSEED (set the experiment's "out" instead)`);
    if (!KEYS.has(k)) fail(file, `${where}: unknown configuration key '${k}'`);
    out[k] = v;
  }
  return out as Partial<TrainConfig>;
}

/**
 * Reads and validates an experiment file; every run's merged configuration
 * (defaults ← recipe ← base ← arm overrides ← seed, out) passes train's validation.
 * `outOverride` replaces the file's "out" (default runs/experiments/NAME), `dataOverride` base's "data".
 */
export function readExperiment(file: string, outOverride?: string, dataOverride?: string): Experiment {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    fail(file, `cannot read experiment file: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    fail(file, `not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(obj)) fail(file, 'an experiment file must be a JSON object');
  for (const k of Object.keys(obj)) if (!TOP_KEYS.has(k) && !k.startsWith('//')) fail(file, `unknown key '${k}' (one of ${[...TOP_KEYS].join(', ')})`);
  const name = obj.name;
  if (typeof name !== 'string' || !NAME_RE.test(name)) fail(file, `name must be a folder-safe string (letters, digits, . _ -), got ${JSON.stringify(name)}`);
  const base = obj.base ?? {};
  if (!isObject(base)) fail(file, 'base must be an object of train settings (and optionally "recipe": "path.json")');
  let recipe: Partial<TrainConfig> = {};
  if (base.recipe !== undefined) {
    if (typeof base.recipe !== 'string') fail(file, `base.recipe must be a path, got ${JSON.stringify(base.recipe)}`);
    const candidates = isAbsolute(base.recipe) ? [base.recipe] : [resolve(base.recipe), resolve(dirname(file), base.recipe)];
    const found = candidates.find((p) => existsSync(p));
    if (!found) fail(file, `base.recipe: ${base.recipe} not found (looked at ${[...new Set(candidates)].join(', ')})`);
    recipe = readRecipe(found);
    delete (recipe as Record<string, unknown>).seed;
    delete (recipe as Record<string, unknown>).out;
  }
  const baseConfig = configKeys(file, 'base', base, true);
  // where the data lives differs between machines (a GPU machine's staged copy, say)
  if (dataOverride !== undefined) baseConfig.data = dataOverride;
  if (!Array.isArray(obj.arms) || obj.arms.length === 0) fail(file, 'arms must be a non-empty array of { "name", "overrides" }');
  const arms: ExperimentArm[] = [];
  obj.arms.forEach((a: unknown, i: number) => {
    const where = `arms[${i}]`;
    if (!isObject(a)) fail(file, `${where} must be an object { "name", "overrides" }`);
    for (const k of Object.keys(a)) if (!['name', 'overrides', 'description'].includes(k) && !k.startsWith('//')) fail(file, `${where}: unknown key '${k}' (name, overrides, description)`);
    if (typeof a.name !== 'string' || !NAME_RE.test(a.name)) fail(file, `${where}.name must be a folder-safe string (letters, digits, . _ -), got ${JSON.stringify(a.name)}`);
    if (/-s\d+$/.test(a.name)) fail(file, `${where}.name '${a.name}' ends like a seed suffix (-sN), which the report strips`);
    if (arms.some((b) => b.name === a.name)) fail(file, `${where}.name '${a.name}' is used twice`);
    const overrides = a.overrides ?? {};
    if (!isObject(overrides)) fail(file, `${where}.overrides must be an object of train settings`);
    arms.push({ name: a.name, overrides: configKeys(file, `${where}.overrides`, overrides, false) });
  });
  const seeds = obj.seeds ?? [0];
  if (!Array.isArray(seeds) || seeds.length === 0 || seeds.some((s) => typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s > 0xffffffff)) {
    fail(file, `seeds must be a non-empty array of non-negative integers, got ${JSON.stringify(seeds)}`);
  }
  if (new Set(seeds).size !== seeds.length) fail(file, `seeds has duplicates: ${JSON.stringify(seeds)}`);
  const outRaw = outOverride ?? obj.out ?? join('runs', 'experiments', name);
  if (typeof outRaw !== 'string' || !outRaw) fail(file, `out must be a folder path, got ${JSON.stringify(outRaw)}`);
  const out = outRaw;
  const runs: PlannedRun[] = [];
  for (const seed of seeds as number[]) {
    for (const arm of arms) {
      const runName = `${arm.name}-s${seed}`;
      const dir = join(out, runName);
      const merged = { ...DEFAULTS, ...recipe, ...baseConfig, ...arm.overrides, seed, out: dir } as TrainConfig;
      const config = validateConfig(merged, `${file}: arm '${arm.name}' (seed ${seed})`);
      runs.push({ name: runName, arm: arm.name, seed, dir, config });
    }
  }
  return { name, file, out, arms, seeds: seeds as number[], runs };
}

/**
 * The experiment restricted to some of its seeds (`experiment FILE --seeds 3,4`): to add
 * seeds to a finished experiment on another machine or day, or split one across machines,
 * without redoing the others. Every seed must be one of the file's.
 */
export function onlySeeds(exp: Experiment, seeds: number[]): Experiment {
  if (seeds.length === 0) throw new Error(`${exp.file}: --seeds names no seed`);
  const unknown = seeds.filter((s) => !exp.seeds.includes(s));
  if (unknown.length) throw new Error(`${exp.file}: --seeds ${unknown.join(',')} not among the file's seeds (${exp.seeds.join(', ')})`);
  return { ...exp, seeds: exp.seeds.filter((s) => seeds.includes(s)), runs: exp.runs.filter((r) => seeds.includes(r.seed)) };
}

/**
 * The experiment restricted to some of its arms (`experiment FILE --arms a,b`): to run an
 * arm added later, or one arm alone, without the rest. Every arm must be one of the file's.
 */
export function onlyArms(exp: Experiment, arms: string[]): Experiment {
  if (arms.length === 0) throw new Error(`${exp.file}: --arms names no arm`);
  const names = exp.arms.map((a) => a.name);
  const unknown = arms.filter((a) => !names.includes(a));
  if (unknown.length) throw new Error(`${exp.file}: --arms ${unknown.join(',')} not among the file's arms (${names.join(', ')})`);
  return { ...exp, arms: exp.arms.filter((a) => arms.includes(a.name)), runs: exp.runs.filter((r) => arms.includes(r.arm)) };
}

// ------------------------------------------------------------------ plan

export type PlanStatus = 'done' | 'diverged' | 'partial' | 'todo';

export interface PlanEntry {
  run: PlannedRun;
  status: PlanStatus;
  /** steps already trained and kept (done: all; partial: the checkpoint's step; todo: 0) */
  stepsDone: number;
  totalSteps: number | null;
  /** why a todo run has leftovers that will be removed, if it has */
  note?: string;
  /** estimated seconds left for this run, or null when unknown */
  secondsLeft: number | null;
}

export interface Plan {
  experiment: Experiment;
  entries: PlanEntry[];
  /** where the seconds-per-step figures came from, per speed key */
  speedSources: string[];
  secondsLeft: number | null;
  stepsLeft: number;
  stepsTotal: number;
}

/** What makes runs train at the same speed. */
const speedKey = (c: Partial<TrainConfig>): string => JSON.stringify([c.model, c.width ?? null, c.dataset, c.imageSize, c.batchSize]);

/** A run folder's settings must be the ones the experiment now asks for (out and data may differ). */
function checkSameSettings(run: PlannedRun, saved: Partial<TrainConfig> | null, what: string): void {
  if (!saved) return;
  const norm = (c: Partial<TrainConfig>): Record<string, string> => {
    const o: Record<string, string> = {};
    for (const [k, v] of Object.entries(c)) if (v !== undefined && k !== 'out' && k !== 'data') o[k] = JSON.stringify(v);
    return o;
  };
  const a = norm(saved);
  const b = norm(run.config);
  // a key only one side has (a setting added or removed since) counts when its value is not the default
  const def = (k: string): string | undefined => {
    const v = (DEFAULTS as unknown as Record<string, unknown>)[k];
    return v === undefined ? undefined : JSON.stringify(v);
  };
  const diffs = [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .filter((k) => (a[k] ?? def(k)) !== (b[k] ?? def(k)))
    .map((k) => `${k} ${a[k] ?? 'unset'} → ${b[k] ?? 'unset'}`);
  if (diffs.length) {
    throw new Error(
      `${run.dir}: its ${what} was made with other settings than the experiment now gives (${diffs.join('; ')}); ` +
        'restore the experiment file, or use another --out (or delete that run folder) to run the new settings',
    );
  }
}

/** The status of one planned run from its folder (summary.json, checkpoints/latest). */
export function runStatus(run: PlannedRun): Omit<PlanEntry, 'secondsLeft'> {
  const planned = plannedSteps(run.config);
  if (!existsSync(run.dir)) return { run, status: 'todo', stepsDone: 0, totalSteps: planned };
  const rec = readRun(run.dir, run.name);
  if (rec && (rec.state === 'completed' || rec.state === 'diverged')) {
    checkSameSettings(run, rec.config, 'summary.json');
    return { run, status: rec.state === 'completed' ? 'done' : 'diverged', stepsDone: rec.steps, totalSteps: rec.totalSteps ?? planned };
  }
  const ck = checkpointInfo(run.dir);
  if (ck) {
    checkSameSettings(run, ck.config, 'checkpoint');
    return { run, status: 'partial', stepsDone: ck.step, totalSteps: ck.totalSteps ?? planned };
  }
  const leftovers = rec !== null;
  return { run, status: 'todo', stepsDone: 0, totalSteps: planned, ...(leftovers ? { note: 'no checkpoint: starts again' } : {}) };
}

/** Seconds per step measured by completed runs under `out` with the same speed key (median), per key. */
function measuredSpeeds(exp: Experiment): Map<string, { secPerStep: number; from: string }> {
  const out = new Map<string, { secPerStep: number; from: string }>();
  const samples = new Map<string, { v: number; name: string }[]>();
  for (const run of exp.runs) {
    if (!existsSync(join(run.dir, 'summary.json'))) continue;
    const rec = readRun(run.dir, run.name);
    if (!rec || rec.state !== 'completed' || !rec.seconds || !rec.steps || !rec.config) continue;
    const k = speedKey(rec.config);
    samples.set(k, [...(samples.get(k) ?? []), { v: rec.seconds / rec.steps, name: rec.name }]);
  }
  for (const [k, xs] of samples) {
    const s = xs.map((x) => x.v).sort((a, b) => a - b);
    out.set(k, { secPerStep: s[s.length >> 1]!, from: `${xs.length} finished run${xs.length > 1 ? 's' : ''} (${xs.map((x) => x.name).join(', ')})` });
  }
  return out;
}

/**
 * The plan: each run's status and the time left, estimated from the seconds per
 * step of finished runs in this experiment with the same model, width, dataset,
 * image size and batch size; else from `probe` (a short measured run per such
 * setting) when given; else unknown.
 */
export async function planExperiment(
  exp: Experiment,
  o: { probe?: (config: TrainConfig) => Promise<number> } = {},
): Promise<Plan> {
  const statuses = exp.runs.map(runStatus);
  const speeds = measuredSpeeds(exp);
  if (o.probe) {
    for (const s of statuses) {
      if (s.status === 'done' || s.status === 'diverged') continue;
      const k = speedKey(s.run.config);
      if (speeds.has(k)) continue;
      const secPerStep = await o.probe(s.run.config);
      speeds.set(k, { secPerStep, from: `a probe of ${s.run.name}'s settings (training steps only, evaluation not counted)` });
    }
  }
  let secondsLeft: number | null = 0;
  let stepsLeft = 0;
  let stepsTotal = 0;
  const entries = statuses.map((s): PlanEntry => {
    const total = s.totalSteps;
    const left = s.status === 'done' || s.status === 'diverged' ? 0 : total === null ? null : total - s.stepsDone;
    stepsTotal += total ?? 0;
    stepsLeft += left ?? 0;
    const sp = speeds.get(speedKey(s.run.config));
    const sec = left === 0 ? 0 : left !== null && sp ? left * sp.secPerStep : null;
    if (sec === null) secondsLeft = null;
    else if (secondsLeft !== null) secondsLeft += sec;
    return { ...s, secondsLeft: sec };
  });
  const speedSources = [...speeds.entries()].map(([k, v]) => {
    const [model, width, dataset, imageSize, batchSize] = JSON.parse(k) as unknown[];
    return `${model}${width !== null ? ` width ${width}` : ''} on ${dataset} ${imageSize}px, batch ${batchSize}: ${v.secPerStep.toFixed(3)} s/step (${(Number(batchSize) / v.secPerStep).toFixed(1)} images/s) from ${v.from}`;
  });
  return { experiment: exp, entries, speedSources, secondsLeft, stepsLeft, stepsTotal };
}

export function formatDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return 'unknown';
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatPlan(p: Plan): string {
  const w = Math.max(3, ...p.entries.map((e) => e.run.name.length));
  const lines = [
    `experiment '${p.experiment.name}' (${p.experiment.file}): ${p.experiment.arms.length} arm${p.experiment.arms.length > 1 ? 's' : ''} × ${p.experiment.seeds.length} seed${p.experiment.seeds.length > 1 ? 's' : ''} = ${p.entries.length} runs in ${p.experiment.out}`,
    '',
    `${'run'.padEnd(w)}  status    steps            estimate`,
  ];
  for (const e of p.entries) {
    const steps = `${e.stepsDone}/${e.totalSteps ?? '?'}`;
    const est = e.status === 'done' || e.status === 'diverged' ? '-' : formatDuration(e.secondsLeft);
    lines.push(`${e.run.name.padEnd(w)}  ${e.status.padEnd(8)}  ${steps.padEnd(15)}  ${est}${e.note ? `  (${e.note})` : ''}`);
  }
  const counts = (['done', 'diverged', 'partial', 'todo'] as const).map((s) => [s, p.entries.filter((e) => e.status === s).length] as const).filter(([, n]) => n > 0);
  lines.push('');
  lines.push(`${counts.map(([s, n]) => `${n} ${s}`).join(', ')} · ${p.stepsLeft} of ${p.stepsTotal} steps left · estimated time left: ${formatDuration(p.secondsLeft)}`);
  if (p.speedSources.length) lines.push(...p.speedSources.map((s) => `  speed: ${s}`));
  if (p.secondsLeft === null) lines.push('  (no measured speed for some settings: none of their runs has finished here; --probe measures a few steps)');
  return lines.join('\n');
}

// ------------------------------------------------------------------ run

/** A run killed before its first checkpoint starts again: its folder goes, but only if it looks like a run's. */
function removeLeftovers(dir: string): void {
  if (!statSync(dir).isDirectory()) throw new Error(`${dir}: in the way of a run folder (not a folder)`);
  const names = readdirSync(dir);
  const runFiles = new Set(['metrics.jsonl', 'summary.json', 'checkpoints', 'loss.svg', 'accuracy.svg', 'lr.svg', 'momentum.svg']);
  const foreign = names.filter((n) => !runFiles.has(n) && !n.startsWith('.'));
  if (names.length > 0 && foreign.length === names.length) {
    throw new Error(`${dir}: holds files that are not a training run's (${foreign.slice(0, 3).join(', ')}); move them, the experiment needs this folder`);
  }
  rmSync(dir, { recursive: true, force: true });
}

export interface ExperimentRunOptions {
  /** the device every run trains on, or a function making it when the first run starts (none is made when all are done) */
  device?: Device | (() => Promise<Device>);
  quiet?: boolean;
  log?: (s: string) => void;
  resolveMaxLr?: MaxLrResolver;
  /** tests: stop (as on Ctrl-C) after this many runs have been started in this call */
  stopAfterRuns?: number;
}

export interface ExperimentRunResult {
  /** 'completed': every run is done (or diverged); 'interrupted': stopped by Ctrl-C, resumable */
  end: 'completed' | 'interrupted';
  trained: string[];
  skipped: string[];
  results: ExperimentResults;
  reportFiles: string[];
}

/** Runs every run of the experiment that is not done, one after another, then writes the report. */
export async function runExperiment(exp: Experiment, o: ExperimentRunOptions = {}): Promise<ExperimentRunResult> {
  const log = o.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const plan = await planExperiment(exp);
  await writeFileAtomic(
    join(exp.out, 'experiment.json'),
    `${JSON.stringify({ name: exp.name, file: exp.file, arms: exp.arms, seeds: exp.seeds, runs: exp.runs.map((r) => ({ name: r.name, arm: r.arm, seed: r.seed, config: r.config })) }, null, 2)}\n`,
  );
  let stop = false;
  const onSigint = (): void => {
    if (stop) process.exit(130);
    stop = true;
    log(`experiment '${exp.name}': interrupt: the current run saves a checkpoint, then the experiment stops (Ctrl-C again to quit at once)`);
  };
  process.on('SIGINT', onSigint);
  const trained: string[] = [];
  const skipped: string[] = [];
  const t0 = performance.now();
  let stepsTrained = 0;
  let stepsDone = plan.entries.reduce((a, e) => a + e.stepsDone, 0);
  const stepsTotal = plan.stepsTotal;
  let started = 0;
  const n = plan.entries.length;
  const overall = (): string => {
    const elapsed = (performance.now() - t0) / 1000;
    const pctDone = stepsTotal ? ((100 * stepsDone) / stepsTotal).toFixed(1) : '?';
    const eta = stepsTrained > 0 ? ((stepsTotal - stepsDone) * elapsed) / stepsTrained : plan.secondsLeft;
    return `${stepsDone}/${stepsTotal} steps (${pctDone}%) · elapsed ${formatDuration(elapsed)} · ETA ${formatDuration(eta)}`;
  };
  let interrupted = false;
  try {
    for (const [i, entry] of plan.entries.entries()) {
      const run = entry.run;
      const tag = `[${exp.name} ${i + 1}/${n} ${run.name}]`;
      const now = runStatus(run); // the folder may have changed since the plan
      if (now.status === 'done' || now.status === 'diverged') {
        skipped.push(run.name);
        log(`${tag} ${now.status}, skipped · ${overall()}`);
        continue;
      }
      if (stop || (o.stopAfterRuns !== undefined && started >= o.stopAfterRuns)) {
        interrupted = true;
        break;
      }
      started++;
      const resume = now.status === 'partial';
      if (!resume && existsSync(run.dir)) removeLeftovers(run.dir);
      log(`${tag} ${resume ? `resuming at step ${now.stepsDone}` : 'starting'} · ${overall()}`);
      const before = now.stepsDone;
      const device = typeof o.device === 'function' ? await o.device() : o.device;
      const r = await runTraining(run.config, {
        resume,
        quiet: o.quiet ?? false,
        log: (s) => log(`${tag} ${s}`),
        ...(device ? { device } : {}),
        ...(o.resolveMaxLr ? { resolveMaxLr: o.resolveMaxLr } : {}),
      });
      stepsTrained += r.result.steps - before;
      stepsDone += r.result.steps - before;
      if (r.result.end === 'interrupted') {
        interrupted = true;
        log(`${tag} interrupted at step ${r.result.steps}; run the same command again to continue · ${overall()}`);
        break;
      }
      trained.push(run.name);
      const acc = r.testAccuracy !== null ? `test accuracy ${(100 * r.testAccuracy).toFixed(2)}%` : r.result.message;
      log(`${tag} ${r.result.end}: ${acc} · ${overall()}`);
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  const { results, files } = await writeReport(exp.out, { title: `Experiment ${exp.name}`, order: exp.arms.map((a) => a.name), planned: exp.runs.map((r) => r.name) });
  return { end: interrupted ? 'interrupted' : 'completed', trained, skipped, results, reportFiles: files };
}

/** A short run of `config` to measure seconds per training step (evaluation not counted). */
export async function probeSpeed(config: TrainConfig, o: { device?: Device; steps?: number } = {}): Promise<number> {
  const steps = o.steps ?? 15;
  const dir = mkdtempSync(join(tmpdir(), 'onecycle-probe-'));
  try {
    const c: TrainConfig = { ...config, out: dir, evalEvery: 0, checkpointEvery: 0, logEvery: 5, testSubset: Math.min(config.testSubset ?? 256, 256) };
    await runTraining(c, { quiet: true, log: () => {}, stopAtStep: steps, ...(o.device ? { device: o.device } : {}) });
    const ips = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"kind":"step"'))
      .map((l) => JSON.parse(l) as { step: number; imagesPerSec?: number })
      .filter((m) => m.step >= 5 && typeof m.imagesPerSec === 'number')
      .map((m) => m.imagesPerSec!);
    if (!ips.length) throw new Error('probe: no throughput was logged');
    const mean = ips.reduce((a, b) => a + b, 0) / ips.length;
    return config.batchSize / mean;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
