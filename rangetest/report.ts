// A range test's outputs: range-test.json (the curve, the suggestion, how it
// stopped), range-test.csv, range-test.svg (loss against log LR, raw and
// smoothed, suggested max/min LR marked), and a compact chart for the terminal.
import { join } from 'node:path';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { rangeTestPlot, rangeTestTermChart } from './plot.ts';
import type { RangeTestResult } from './sweep.ts';

export async function writeRangeTestReport(dir: string, r: RangeTestResult, context: Record<string, unknown> = {}): Promise<string[]> {
  const json = join(dir, 'range-test.json');
  const csv = join(dir, 'range-test.csv');
  const svg = join(dir, 'range-test.svg');
  await writeFileAtomic(
    json,
    JSON.stringify(
      {
        ...context,
        mode: r.mode,
        startLr: r.startLr,
        endLr: r.endLr,
        steps: r.steps,
        stoppedEarly: r.stoppedEarly,
        stopReason: r.stopReason,
        seconds: Math.round(r.seconds * 10) / 10,
        suggestion: r.suggestion ? { ...r.suggestion, smoothed: undefined } : null,
        suggestionError: r.suggestionError,
        lrs: r.lrs,
        losses: r.losses,
        smoothed: r.smoothed,
      },
      null,
      1,
    ) + '\n',
  );
  const rows = r.lrs.map((lr, i) => `${i},${lr},${r.losses[i]},${r.smoothed[i]}`);
  await writeFileAtomic(csv, ['step,lr,loss,smoothed_loss', ...rows].join('\n') + '\n');
  const written = [json, csv];
  if (r.suggestion) {
    await writeFileAtomic(svg, rangeTestPlot({ lrs: r.lrs, losses: r.losses }, r.suggestion, { title: `LR range test (${r.steps} steps)` }));
    written.push(svg);
  }
  return written;
}

/** The terminal summary: chart, suggestion, reason. */
export function rangeTestSummary(r: RangeTestResult): string {
  if (!r.suggestion) return `range test: ${r.stopReason}; no suggestion: ${r.suggestionError}`;
  const s = r.suggestion;
  return [
    rangeTestTermChart({ lrs: r.lrs, losses: r.losses }, s, { width: 60, height: 12 }),
    `range test: ${r.stopReason}`,
    `suggested max LR ${s.maxLr.toPrecision(3)}, min LR ${s.minLr.toPrecision(3)} (${s.method}, confidence ${s.confidence.toFixed(2)})`,
    s.reason,
  ].join('\n');
}
