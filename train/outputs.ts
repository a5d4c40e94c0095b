// A run's output folder: metrics.jsonl (one JSON object per step and per
// evaluation), summary.json, and SVG plots of loss, accuracy, LR and momentum
// against steps. Checkpoints live in its `checkpoints/` subfolder.
import { appendFileSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isTempName, tempPathFor, writeFileAtomic } from '../engine/io/atomic.ts';
import { withPath, withPathAsync } from '../engine/io/fsErrors.ts';
import { LOCK_FILE } from './runLock.ts';
import { type ChartSeries, lineChart } from './plot.ts';
import type { EvalRecord, StepRecord } from './fit.ts';

export type MetricLine = ({ kind: 'step' } & StepRecord & { imagesPerSec?: number }) | ({ kind: 'eval'; split: string } & EvalRecord);

/** What a run folder may hold: `--overwrite` deletes these and refuses to touch a folder holding anything else. */
export const RUN_OUTPUTS = [
  'metrics.jsonl', 'summary.json', 'loss.svg', 'accuracy.svg', 'lr.svg', 'momentum.svg', 'checkpoints', 'eval.json',
  'range-test.json', 'range-test.csv', 'range-test.svg', 'model.onnx', 'model.safetensors', LOCK_FILE,
];

export class RunOutputs {
  readonly dir: string;
  readonly metricsPath: string;
  readonly checkpointDir: string;

  constructor(dir: string) {
    this.dir = dir;
    withPath(dir, 'create the output folder', () => mkdirSync(dir, { recursive: true }));
    this.metricsPath = join(dir, 'metrics.jsonl');
    this.checkpointDir = join(dir, 'checkpoints');
  }

  /**
   * A fresh run: the folder must be empty (a previous run is continued with
   * --resume or replaced with --overwrite, never mixed in silently); then an
   * empty metrics file. `--overwrite` deletes only a run's own outputs and
   * refuses a folder that holds anything else.
   */
  startFresh(overwrite: boolean, log: (s: string) => void = () => {}): void {
    // an empty metrics file is what a fresh run that failed before its first step leaves: not a run
    const emptyMetrics = existsSync(this.metricsPath) && statSync(this.metricsPath).size === 0;
    const present = readdirSync(this.dir).filter((n) => n !== LOCK_FILE && !isTempName(n) && !(n === 'metrics.jsonl' && emptyMetrics));
    if (present.length) {
      const shown = present.slice(0, 4).join(', ') + (present.length > 4 ? `, … (${present.length} entries)` : '');
      if (!overwrite) {
        const isRun = present.includes('metrics.jsonl') || present.includes('checkpoints');
        throw new Error(
          `--out ${this.dir}: the folder is not empty (${shown}); ` +
            (isRun ? 'continue that run with --resume, or replace it with --overwrite' : 'choose an empty or new folder'),
        );
      }
      const foreign = present.filter((n) => !RUN_OUTPUTS.includes(n));
      if (foreign.length) {
        throw new Error(`--overwrite: ${this.dir} holds files that are not a run's outputs (${foreign.slice(0, 4).join(', ')}); delete them yourself or choose another --out`);
      }
      for (const n of present) withPath(join(this.dir, n), 'delete', () => rmSync(join(this.dir, n), { recursive: true, force: true }));
      log(`--overwrite: deleted the previous run in ${this.dir} (${shown})`);
    }
    withPath(this.metricsPath, 'write', () => writeFileSync(this.metricsPath, ''));
  }

  /**
   * A resumed run: keeps the lines before the checkpoint's step (evaluations at
   * that step too, except `redoneEvalStep`'s, which the resumed run repeats), so
   * the file reads as one uninterrupted run. Rewritten atomically.
   */
  truncateAfter(step: number, redoneEvalStep: number | null, log: (s: string) => void = () => {}): void {
    const kept = this.readMetrics(log).filter((m) => (m.kind === 'step' ? m.step < step : m.step < step || (m.step === step && m.step !== redoneEvalStep)));
    writeTextAtomicSync(this.metricsPath, kept.map((m) => JSON.stringify(m)).join('\n') + (kept.length ? '\n' : ''));
  }

  appendSteps(records: StepRecord[], imagesPerSec: number): void {
    const lines = records.map((r) => JSON.stringify({ kind: 'step', ...r, imagesPerSec: Math.round(imagesPerSec * 10) / 10 }));
    withPath(this.metricsPath, 'append to', () => appendFileSync(this.metricsPath, lines.join('\n') + '\n'));
  }

  appendEval(r: EvalRecord, split: string): void {
    withPath(this.metricsPath, 'append to', () => appendFileSync(this.metricsPath, JSON.stringify({ kind: 'eval', split, ...r }) + '\n'));
  }

  /**
   * The metrics lines. A last line cut short (a crash or a full disk
   * mid-append) is dropped with a message to `log`; a damaged line anywhere
   * else is an error naming the file and the line.
   */
  readMetrics(log: (s: string) => void = () => {}): MetricLine[] {
    if (!existsSync(this.metricsPath)) return [];
    const text = withPath(this.metricsPath, 'read', () => readFileSync(this.metricsPath, 'utf8'));
    const lines = text.split('\n');
    const out: MetricLine[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (!line.trim()) continue;
      let m: unknown;
      try {
        m = JSON.parse(line);
      } catch {
        m = null;
      }
      const ok = typeof m === 'object' && m !== null && ((m as MetricLine).kind === 'step' || (m as MetricLine).kind === 'eval') && Number.isInteger((m as MetricLine).step);
      if (ok) {
        out.push(m as MetricLine);
        continue;
      }
      const last = lines.slice(i + 1).every((l) => !l.trim());
      if (last && !text.endsWith('\n')) {
        log(`${this.metricsPath}: dropped a torn last line (${JSON.stringify(line.slice(0, 40))}, ${line.length} bytes: a crash or a full disk cut it)`);
        continue;
      }
      throw new Error(`${this.metricsPath}: line ${i + 1} is not a metrics record (${JSON.stringify(line.slice(0, 40))}); the file is damaged`);
    }
    return out;
  }

  async writeSummary(summary: Record<string, unknown>): Promise<void> {
    const path = join(this.dir, 'summary.json');
    await withPathAsync(path, 'write', () => writeFileAtomic(path, JSON.stringify(summary, null, 2) + '\n'));
  }

  /** loss.svg, accuracy.svg, lr.svg, momentum.svg from the whole metrics file. */
  async writePlots(): Promise<string[]> {
    const m = this.readMetrics();
    const steps = m.filter((x): x is Extract<MetricLine, { kind: 'step' }> => x.kind === 'step');
    const evals = m.filter((x): x is Extract<MetricLine, { kind: 'eval' }> => x.kind === 'eval');
    const xs = steps.map((s) => s.step + 1);
    const smooth = (ys: number[]): number[] => {
      let avg = 0;
      return ys.map((y, i) => {
        avg = 0.98 * avg + 0.02 * y;
        return avg / (1 - 0.98 ** (i + 1));
      });
    };
    const evalSeries = (key: 'loss' | 'acc'): ChartSeries[] => {
      const splits = [...new Set(evals.map((e) => e.split))];
      return splits.map((split) => {
        const es = evals.filter((e) => e.split === split);
        return { name: `${split} ${key}`, xs: es.map((e) => e.step), ys: es.map((e) => e[key]) };
      });
    };
    const charts: [string, string][] = [
      [
        'loss.svg',
        lineChart({
          title: 'Loss',
          xLabel: 'step',
          yLabel: 'cross-entropy',
          series: [
            { name: 'train (per step)', xs, ys: steps.map((s) => s.loss), opacity: 0.35, width: 1 },
            { name: 'train (smoothed)', xs, ys: smooth(steps.map((s) => s.loss)) },
            ...evalSeries('loss'),
          ],
          yMaxQuantile: 0.98,
        }),
      ],
      [
        'accuracy.svg',
        lineChart({
          title: 'Accuracy',
          xLabel: 'step',
          yLabel: 'accuracy',
          series: [{ name: 'train (smoothed)', xs, ys: smooth(steps.map((s) => s.acc)) }, ...evalSeries('acc')],
          yClip: [0, 1],
        }),
      ],
      ['lr.svg', lineChart({ title: 'Learning rate', xLabel: 'step', yLabel: 'LR', series: [{ name: 'lr', xs, ys: steps.map((s) => s.lr) }] })],
      [
        'momentum.svg',
        lineChart({ title: 'Momentum', xLabel: 'step', yLabel: 'momentum', series: [{ name: 'momentum', xs, ys: steps.map((s) => s.momentum) }] }),
      ],
    ];
    const written: string[] = [];
    for (const [name, svg] of charts) {
      const p = join(this.dir, name);
      await withPathAsync(p, 'write', () => writeFileAtomic(p, svg));
      written.push(p);
    }
    return written;
  }
}

/** Replaces `path` with `text` atomically (temporary file, fsync, rename), synchronously. */
function writeTextAtomicSync(path: string, text: string): void {
  const tmp = tempPathFor(path);
  withPath(path, 'write', () => {
    try {
      const fd = openSync(tmp, 'wx');
      try {
        writeSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  });
}
