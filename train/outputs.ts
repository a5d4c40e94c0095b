// A run's output folder: metrics.jsonl (one JSON object per step and per
// evaluation), summary.json, and SVG plots of loss, accuracy, LR and momentum
// against steps. Checkpoints live in its `checkpoints/` subfolder.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { type ChartSeries, lineChart } from './plot.ts';
import type { EvalRecord, StepRecord } from './fit.ts';

export type MetricLine = ({ kind: 'step' } & StepRecord & { imagesPerSec?: number }) | ({ kind: 'eval'; split: string } & EvalRecord);

export class RunOutputs {
  readonly dir: string;
  readonly metricsPath: string;
  readonly checkpointDir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    this.metricsPath = join(dir, 'metrics.jsonl');
    this.checkpointDir = join(dir, 'checkpoints');
  }

  /** A fresh run: an empty metrics file. */
  startFresh(): void {
    writeFileSync(this.metricsPath, '');
  }

  /** A resumed run: keeps the lines up to the checkpoint's step, so the file reads as one uninterrupted run. */
  truncateAfter(step: number): void {
    const kept = this.readMetrics().filter((m) => (m.kind === 'step' ? m.step < step : m.step <= step));
    writeFileSync(this.metricsPath, kept.map((m) => JSON.stringify(m)).join('\n') + (kept.length ? '\n' : ''));
  }

  appendSteps(records: StepRecord[], imagesPerSec: number): void {
    const lines = records.map((r) => JSON.stringify({ kind: 'step', ...r, imagesPerSec: Math.round(imagesPerSec * 10) / 10 }));
    appendFileSync(this.metricsPath, lines.join('\n') + '\n');
  }

  appendEval(r: EvalRecord, split: string): void {
    appendFileSync(this.metricsPath, JSON.stringify({ kind: 'eval', split, ...r }) + '\n');
  }

  readMetrics(): MetricLine[] {
    if (!existsSync(this.metricsPath)) return [];
    return readFileSync(this.metricsPath, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as MetricLine);
  }

  async writeSummary(summary: Record<string, unknown>): Promise<void> {
    await writeFileAtomic(join(this.dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
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
      await writeFileAtomic(p, svg);
      written.push(p);
    }
    return written;
  }
}
