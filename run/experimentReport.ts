// Aggregation of a folder of training-run folders (an experiment's output, or any
// folder of `train` runs such as experiments/h200-2026-12-04/runs): runs grouped
// into arms by their name minus the `-sN` seed suffix; per arm the mean ± sample
// std, min and max over seeds of the final and best test accuracy, epochs, wall
// time and images/s; results.json, results.md and two SVG charts (test accuracy
// against epoch, mean line and min–max band per arm; final accuracy with error bars).
// Only completed runs enter the statistics; interrupted, unfinished and diverged
// runs are listed with their state.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type TrainConfig, totalIterations } from './config.ts';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { type ChartBand, type ChartSeries, PALETTE, errorBarChart, lineChart } from '../train/plot.ts';

/** completed: summary says so; diverged: stopped by the divergence check; interrupted: summary says so; unfinished: no summary. */
export type RunState = 'completed' | 'diverged' | 'interrupted' | 'unfinished';

export interface CurvePoint {
  step: number;
  acc: number;
}

export interface RunRecord {
  /** the run folder's name */
  name: string;
  arm: string;
  seed: number | null;
  state: RunState;
  /** steps done */
  steps: number;
  totalSteps: number | null;
  /** training-set images / batch size (dropLast), when the configuration says */
  stepsPerEpoch: number | null;
  /** the run's planned length in epochs (totalSteps / stepsPerEpoch) */
  epochs: number | null;
  /** test accuracy at the end (summary.testAccuracy, else the last test evaluation) */
  finalAcc: number | null;
  /** highest test accuracy of any evaluation, and its step */
  bestAcc: number | null;
  bestStep: number | null;
  /** summary.json's seconds: the training loop's time in the session that ended the run */
  seconds: number | null;
  /** median of the logged training throughput (metrics.jsonl), evaluation excluded */
  imagesPerSec: number | null;
  /** test evaluations in step order */
  curve: CurvePoint[];
  config: Partial<TrainConfig> | null;
}

export interface Stats {
  n: number;
  mean: number;
  /** sample standard deviation (n − 1); 0 when n = 1 */
  std: number;
  min: number;
  max: number;
}

export interface ArmCurvePoint {
  step: number;
  /** step / steps per epoch, or the step when that is unknown */
  x: number;
  mean: number;
  min: number;
  max: number;
  n: number;
}

export interface ArmResult {
  arm: string;
  /** every run folder of the arm, in seed order */
  runs: string[];
  /** completed runs: the ones the statistics are over */
  included: string[];
  excluded: { name: string; state: RunState }[];
  seeds: number[];
  finalAcc: Stats | null;
  bestAcc: Stats | null;
  epochs: number | null;
  steps: number | null;
  wallSeconds: Stats | null;
  imagesPerSec: Stats | null;
  /** settings in which the arms differ (seed, out, data, epochs and the logging intervals left out) */
  settings: Record<string, unknown>;
  curve: ArmCurvePoint[];
}

export interface ExperimentResults {
  folder: string;
  /** 'epoch' when every arm's steps per epoch are known, else 'step' */
  xAxis: 'epoch' | 'step';
  arms: ArmResult[];
  runs: Omit<RunRecord, 'curve' | 'config'>[];
  /** sub-folders that are not training runs (no summary.json and no metrics.jsonl) */
  skipped: string[];
  /** an experiment's planned runs that have no folder yet */
  notStarted: string[];
}

const SEED_SUFFIX = /^(.*)-s(\d+)$/;

/** 'oc8-lr0.19-s2' → arm 'oc8-lr0.19', seed 2; a name without the suffix is its own arm. */
export function armOf(name: string): { arm: string; seed: number | null } {
  const m = SEED_SUFFIX.exec(name);
  return m ? { arm: m[1]!, seed: Number(m[2]) } : { arm: name, seed: null };
}

/** n, mean, sample std (n − 1; 0 for n = 1), min, max; null for no values. */
export function stats(values: readonly number[]): Stats | null {
  const n = values.length;
  if (n === 0) return null;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, std, min: Math.min(...values), max: Math.max(...values) };
}

/** Training images per epoch as the configuration gives them (no data read), or null. */
export function trainImages(c: Partial<TrainConfig>): number | null {
  let n: number;
  if (c.dataset === 'synthetic') {
    if (typeof c.syntheticTrain !== 'number') return null;
    n = c.syntheticTrain;
  } else if (c.dataset === 'cifar10' || c.dataset === 'cifar100') n = 50_000;
  else return null;
  if (typeof c.trainSubset === 'number') n = Math.min(n, c.trainSubset);
  if (typeof c.valSplit === 'number' && c.valSplit > 0) n -= c.valSplit < 1 ? Math.round(n * c.valSplit) : c.valSplit;
  return n;
}

/** Steps per epoch (dropLast, as the loader does), or null when the configuration does not say. */
export function stepsPerEpoch(c: Partial<TrainConfig> | null): number | null {
  if (!c || typeof c.batchSize !== 'number') return null;
  const n = trainImages(c);
  return n === null ? null : Math.max(1, Math.floor(n / c.batchSize));
}

/** The steps a configuration trains for, or null when unknown. */
export function plannedSteps(c: TrainConfig): number | null {
  const n = trainImages(c);
  if (c.iterations) return c.iterations;
  return n === null ? null : totalIterations(c, n);
}

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface SummaryFile {
  end?: string;
  steps?: number;
  totalSteps?: number;
  seconds?: number;
  testAccuracy?: number | null;
  finalEval?: { step: number; acc: number } | null;
  config?: Partial<TrainConfig>;
}

function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** The latest checkpoint's step and sidecar configuration (state.json only; the weights are not read), or null. */
export function checkpointInfo(runDir: string): { step: number; totalSteps: number | null; config: Partial<TrainConfig> | null } | null {
  const root = join(runDir, 'checkpoints');
  let name: string;
  try {
    name = readFileSync(join(root, 'latest'), 'utf8').trim();
  } catch {
    return null;
  }
  const state = readJson<{ step?: number; sidecar?: { totalSteps?: number; config?: Partial<TrainConfig> } }>(join(root, name, 'state.json'));
  if (!state || typeof state.step !== 'number') return null;
  return { step: state.step, totalSteps: state.sidecar?.totalSteps ?? null, config: state.sidecar?.config ?? null };
}

/** Reads one run folder, or null when it holds neither summary.json nor metrics.jsonl. */
export function readRun(dir: string, name: string): RunRecord | null {
  const summaryPath = join(dir, 'summary.json');
  const metricsPath = join(dir, 'metrics.jsonl');
  const hasSummary = existsSync(summaryPath);
  if (!hasSummary && !existsSync(metricsPath)) return null;
  const summary = hasSummary ? readJson<SummaryFile>(summaryPath) : null;
  const curve: CurvePoint[] = [];
  const ips: number[] = [];
  let lastStep = -1;
  if (existsSync(metricsPath)) {
    for (const line of readFileSync(metricsPath, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let m: { kind?: string; split?: string; step?: number; acc?: number; imagesPerSec?: number };
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        continue; // a torn last line (a killed run)
      }
      if (typeof m.step !== 'number') continue;
      if (m.kind === 'eval' && m.split === 'test' && typeof m.acc === 'number') {
        const prev = curve[curve.length - 1];
        if (prev && prev.step === m.step) prev.acc = m.acc; // a re-evaluation of the same step replaces it
        else curve.push({ step: m.step, acc: m.acc });
      } else if (m.kind === 'step') {
        lastStep = Math.max(lastStep, m.step);
        // the first logged block carries the pipelines' compilation
        if (typeof m.imagesPerSec === 'number' && m.step >= 10) ips.push(m.imagesPerSec);
      }
    }
  }
  curve.sort((a, b) => a.step - b.step);
  const ckpt = hasSummary ? null : checkpointInfo(dir);
  const config = summary?.config ?? ckpt?.config ?? null;
  const state: RunState = !summary
    ? 'unfinished'
    : summary.end === 'completed'
      ? 'completed'
      : summary.end === 'diverged'
        ? 'diverged'
        : 'interrupted';
  const steps = summary?.steps ?? Math.max(ckpt?.step ?? 0, lastStep + 1);
  const totalSteps = summary?.totalSteps ?? ckpt?.totalSteps ?? (config && 'model' in config ? plannedSteps({ ...(config as TrainConfig) }) : null);
  const spe = stepsPerEpoch(config);
  let finalAcc: number | null = null;
  if (summary) {
    if (typeof summary.testAccuracy === 'number') finalAcc = summary.testAccuracy;
    else if (curve.length && curve[curve.length - 1]!.step === steps) finalAcc = curve[curve.length - 1]!.acc;
  }
  let best: CurvePoint | null = null;
  for (const p of curve) if (!best || p.acc > best.acc) best = p;
  const { arm, seed } = armOf(name);
  return {
    name,
    arm,
    seed,
    state,
    steps,
    totalSteps,
    stepsPerEpoch: spe,
    epochs: spe !== null && totalSteps !== null ? totalSteps / spe : null,
    finalAcc,
    bestAcc: best?.acc ?? null,
    bestStep: best?.step ?? null,
    seconds: typeof summary?.seconds === 'number' ? summary.seconds : null,
    imagesPerSec: median(ips),
    curve,
    config,
  };
}

/** Natural order with decimal numbers: lr0.05 < lr0.1 < lr0.19 < lr1.2, oc8 < oc16, wd3e-5 < wd5e-4. */
export function compareNames(a: string, b: string): number {
  const tokens = (s: string): (string | number)[] => s.split(/(\d+(?:\.\d+)?(?:e-?\d+)?)/).filter((t) => t !== '').map((t) => (/^\d/.test(t) ? Number(t) : t));
  const ta = tokens(a);
  const tb = tokens(b);
  for (let i = 0; i < Math.min(ta.length, tb.length); i++) {
    const x = ta[i]!;
    const y = tb[i]!;
    if (typeof x === 'number' && typeof y === 'number') {
      if (x !== y) return x - y;
    } else if (x !== y) return String(x) < String(y) ? -1 : 1;
  }
  return ta.length - tb.length || (a < b ? -1 : a > b ? 1 : 0);
}
const natural = compareNames;

/** Every run folder directly under `folder`, in natural name order. */
export function collectRuns(folder: string): { runs: RunRecord[]; skipped: string[] } {
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new Error(`${folder}: not a folder`);
  const runs: RunRecord[] = [];
  const skipped: string[] = [];
  for (const name of readdirSync(folder).sort(natural)) {
    const dir = join(folder, name);
    if (!statSync(dir).isDirectory()) continue;
    const r = readRun(dir, name);
    if (r) runs.push(r);
    else skipped.push(name);
  }
  return { runs, skipped };
}

/** Keys whose values differ between the arms' configurations (seed, out, data never count). */
function differingSettings(configs: (Partial<TrainConfig> | null)[]): string[] {
  // bookkeeping, not factors (epochs has its own column)
  const ignore = new Set(['seed', 'out', 'data', 'epochs', 'evalEvery', 'logEvery', 'checkpointEvery']);
  const known = configs.filter((c): c is Partial<TrainConfig> => c !== null);
  if (known.length < 2) return [];
  const keys = new Set(known.flatMap((c) => Object.keys(c)));
  const out: string[] = [];
  for (const k of keys) {
    if (ignore.has(k)) continue;
    const vals = new Set(known.map((c) => JSON.stringify((c as Record<string, unknown>)[k] ?? null)));
    if (vals.size > 1) out.push(k);
  }
  return out;
}

/** Per-arm statistics over completed runs. `order` fixes the arms' order (an experiment's), else natural order. */
export function aggregate(runs: readonly RunRecord[], order?: readonly string[]): { arms: ArmResult[]; xAxis: 'epoch' | 'step' } {
  const byArm = new Map<string, RunRecord[]>();
  for (const r of runs) byArm.set(r.arm, [...(byArm.get(r.arm) ?? []), r]);
  const names = [...byArm.keys()].sort((a, b) => {
    const ia = order?.indexOf(a) ?? -1;
    const ib = order?.indexOf(b) ?? -1;
    if (ia >= 0 || ib >= 0) return (ia < 0 ? Infinity : ia) - (ib < 0 ? Infinity : ib);
    return natural(a, b);
  });
  const configOf = (rs: RunRecord[]): Partial<TrainConfig> | null => rs.find((r) => r.state === 'completed' && r.config)?.config ?? rs.find((r) => r.config)?.config ?? null;
  const diff = differingSettings(names.map((a) => configOf(byArm.get(a)!)));
  const xAxis: 'epoch' | 'step' = runs.filter((r) => r.state === 'completed').every((r) => r.stepsPerEpoch !== null) ? 'epoch' : 'step';
  const arms = names.map((arm): ArmResult => {
    const rs = [...byArm.get(arm)!].sort((a, b) => (a.seed ?? -1) - (b.seed ?? -1) || natural(a.name, b.name));
    const ok = rs.filter((r) => r.state === 'completed');
    const num = (xs: (number | null)[]): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));
    const cfg = configOf(rs);
    const settings: Record<string, unknown> = {};
    for (const k of diff) settings[k] = cfg ? ((cfg as Record<string, unknown>)[k] ?? null) : null;
    // curve: evaluation steps that every completed run has
    const curve: ArmCurvePoint[] = [];
    if (ok.length) {
      const common = ok[0]!.curve.map((p) => p.step).filter((s) => ok.every((r) => r.curve.some((p) => p.step === s)));
      const spe = ok[0]!.stepsPerEpoch;
      for (const s of common) {
        const accs = ok.map((r) => r.curve.find((p) => p.step === s)!.acc);
        const st = stats(accs)!;
        curve.push({ step: s, x: xAxis === 'epoch' && spe ? s / spe : s, mean: st.mean, min: st.min, max: st.max, n: st.n });
      }
    }
    const epochs = num(ok.map((r) => r.epochs));
    const steps = num(ok.map((r) => r.steps));
    return {
      arm,
      runs: rs.map((r) => r.name),
      included: ok.map((r) => r.name),
      excluded: rs.filter((r) => r.state !== 'completed').map((r) => ({ name: r.name, state: r.state })),
      seeds: rs.map((r) => r.seed).filter((s): s is number => s !== null),
      finalAcc: stats(num(ok.map((r) => r.finalAcc))),
      bestAcc: stats(num(ok.map((r) => r.bestAcc))),
      epochs: epochs.length ? Math.max(...epochs) : null,
      steps: steps.length ? Math.max(...steps) : null,
      wallSeconds: stats(num(ok.map((r) => r.seconds))),
      imagesPerSec: stats(num(ok.map((r) => r.imagesPerSec))),
      settings,
      curve,
    };
  });
  return { arms, xAxis };
}

export function buildResults(
  folder: string,
  order?: readonly string[],
  planned: readonly string[] = [],
  only?: readonly string[],
): { results: ExperimentResults; records: RunRecord[] } {
  const collected = collectRuns(folder);
  const skipped = collected.skipped;
  // only these arms, in this order (a focused chart of a larger experiment)
  const runs = only ? collected.runs.filter((r) => only.includes(armOf(r.name).arm)) : collected.runs;
  if (only) {
    const missing = only.filter((a) => !runs.some((r) => armOf(r.name).arm === a));
    if (missing.length) throw new Error(`${folder}: no runs of arm${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
    order = only;
  }
  const { arms, xAxis } = aggregate(runs, order);
  const notStarted = planned.filter((name) => !runs.some((r) => r.name === name));
  return {
    results: { folder, xAxis, arms, runs: runs.map(({ curve: _c, config: _k, ...rest }) => rest), skipped, notStarted },
    records: runs,
  };
}

const pct = (x: number | null | undefined, digits = 2): string => (x === null || x === undefined ? '–' : `${(100 * x).toFixed(digits)}`);
const statCell = (s: Stats | null): string => (s ? `${pct(s.mean)} ± ${pct(s.std)}` : '–');
const num = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined ? '–' : x.toFixed(digits));
const settingText = (v: unknown): string => (Array.isArray(v) ? v.join(',') || 'none' : String(v));

export function resultsMarkdown(r: ExperimentResults, title: string): string {
  const lines: string[] = [`# ${title}`, ''];
  lines.push(
    'Test accuracy in %, over the completed runs of each arm (a run folder NAME-sN is seed N of arm NAME): mean ± sample std (n − 1; 0 when n = 1), min and max; ' +
      '"final" is the accuracy at the end of training, "best" the highest of any evaluation. ' +
      'Wall s: the training loop\'s seconds (summary.json) of the session that finished the run; img/s: median logged training throughput (evaluation excluded). ' +
      'Interrupted, unfinished and diverged runs are listed but not counted.',
    '',
  );
  const keys = [...new Set(r.arms.flatMap((a) => Object.keys(a.settings)))];
  const head = ['arm', ...keys, 'n', 'final mean ± std', 'final min', 'final max', 'best mean ± std', 'best min', 'best max', 'epochs', 'wall s', 'img/s', 'not counted'];
  lines.push(`| ${head.join(' | ')} |`, `|${head.map((h) => (h === 'arm' || keys.includes(h) || h === 'not counted' ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const a of r.arms) {
    const cells = [
      a.arm,
      ...keys.map((k) => settingText(a.settings[k])),
      String(a.finalAcc?.n ?? 0),
      statCell(a.finalAcc),
      pct(a.finalAcc?.min),
      pct(a.finalAcc?.max),
      statCell(a.bestAcc),
      pct(a.bestAcc?.min),
      pct(a.bestAcc?.max),
      a.epochs === null ? '–' : String(Math.round(a.epochs * 100) / 100),
      num(a.wallSeconds?.mean),
      num(a.imagesPerSec?.mean, 0),
      a.excluded.map((e) => `${e.name} (${e.state})`).join(', ') || '',
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('', '## Runs', '');
  lines.push('| run | state | steps | final % | best % (step) | wall s | img/s |', '| --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const run of r.runs) {
    lines.push(
      `| ${run.name} | ${run.state} | ${run.steps}${run.totalSteps !== null ? `/${run.totalSteps}` : ''} | ${pct(run.finalAcc)} | ` +
        `${run.bestAcc === null ? '–' : `${pct(run.bestAcc)} (${run.bestStep})`} | ${num(run.seconds)} | ${num(run.imagesPerSec, 0)} |`,
    );
  }
  if (r.notStarted.length) lines.push('', `Planned but not started: ${r.notStarted.join(', ')}.`);
  if (r.skipped.length) lines.push('', `Not training runs (no summary.json or metrics.jsonl): ${r.skipped.join(', ')}.`);
  lines.push('', '![test accuracy against epoch per arm](test-accuracy.svg)', '', '![final test accuracy per arm](final-accuracy.svg)', '');
  return lines.join('\n');
}

const colorOf = (k: number): { color: string; dashed: boolean } => ({ color: PALETTE[k % PALETTE.length]!, dashed: Math.floor(k / PALETTE.length) % 2 === 1 });

export function accuracyCurveChart(r: ExperimentResults, title: string): string {
  const arms = r.arms.filter((a) => a.curve.length > 0);
  const series: ChartSeries[] = [];
  const bands: ChartBand[] = [];
  arms.forEach((a, k) => {
    const { color, dashed } = colorOf(k);
    series.push({ name: `${a.arm} (n=${a.curve[0]!.n})`, xs: a.curve.map((p) => p.x), ys: a.curve.map((p) => p.mean), color, dashed });
    bands.push({ xs: a.curve.map((p) => p.x), lo: a.curve.map((p) => p.min), hi: a.curve.map((p) => p.max), color, opacity: 0.12 });
  });
  const width = 900;
  let rows = 1;
  let lx = 68;
  for (const s of series) {
    const w = 34 + s.name.length * 6.6;
    if (lx + w > width - 20 && lx > 68) {
      rows++;
      lx = 68;
    }
    lx += w + 12;
  }
  return lineChart({
    title,
    xLabel: r.xAxis,
    yLabel: 'test accuracy',
    series,
    bands,
    width,
    height: 440 + 18 * rows,
    description: 'Mean test accuracy over the completed seeds of each arm; the shaded band spans min to max.',
  });
}

export function finalAccuracyChart(r: ExperimentResults, title: string): string {
  const rows = r.arms
    .filter((a) => a.finalAcc !== null)
    .map((a, k) => ({
      label: `${a.arm} (n=${a.finalAcc!.n})`,
      mean: 100 * a.finalAcc!.mean,
      std: 100 * a.finalAcc!.std,
      min: 100 * a.finalAcc!.min,
      max: 100 * a.finalAcc!.max,
      values: a.included.map((name) => r.runs.find((x) => x.name === name)?.finalAcc).filter((v): v is number => typeof v === 'number').map((v) => 100 * v),
      color: colorOf(k).color,
    }));
  return errorBarChart({
    title,
    xLabel: 'final test accuracy (%): dot mean, bar ± std, whisker min–max, rings seeds',
    rows,
    width: 900,
  });
}

/** Writes results.json, results.md, test-accuracy.svg and final-accuracy.svg into `outDir` (default: the folder). */
export async function writeReport(
  folder: string,
  o: { outDir?: string; title?: string; order?: readonly string[]; planned?: readonly string[]; arms?: readonly string[] } = {},
): Promise<{ results: ExperimentResults; files: string[] }> {
  const { results } = buildResults(folder, o.order, o.planned, o.arms);
  const outDir = o.outDir ?? folder;
  const title = o.title ?? `Results: ${folder}`;
  const files: [string, string][] = [
    ['results.json', `${JSON.stringify(results, null, 2)}\n`],
    ['results.md', resultsMarkdown(results, title)],
    ['test-accuracy.svg', accuracyCurveChart(results, `Test accuracy against ${results.xAxis} (mean, min–max band over seeds)`)],
    ['final-accuracy.svg', finalAccuracyChart(results, 'Final test accuracy per arm')],
  ];
  const written: string[] = [];
  for (const [name, text] of files) {
    const p = join(outDir, name);
    await writeFileAtomic(p, text);
    written.push(p);
  }
  return { results, files: written };
}

/** A one-line-per-arm text table for the terminal. */
export function resultsTable(r: ExperimentResults): string {
  const w = Math.max(3, ...r.arms.map((a) => a.arm.length));
  const lines = [`${'arm'.padEnd(w)}  n  final %          best %           wall s   img/s`];
  for (const a of r.arms) {
    lines.push(
      `${a.arm.padEnd(w)}  ${String(a.finalAcc?.n ?? 0).padStart(1)}  ${statCell(a.finalAcc).padEnd(15)}  ${statCell(a.bestAcc).padEnd(15)}  ${num(a.wallSeconds?.mean).padStart(6)}  ${num(a.imagesPerSec?.mean, 0).padStart(6)}` +
        (a.excluded.length ? `  (not counted: ${a.excluded.map((e) => `${e.name} ${e.state}`).join(', ')})` : ''),
    );
  }
  return lines.join('\n');
}
