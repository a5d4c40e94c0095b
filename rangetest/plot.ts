// The range test's charts: the SVG plot of `range-test` (loss against log lr, raw and
// smoothed, the suggestion and the divergence point marked) and its terminal chart,
// drawn with the project's generic charts (train/plot.ts, train/termchart.ts).
import { type ChartMarker, lineChart, quantile } from '../train/plot.ts';
import { type TermChartOptions, type TermMarker, termChart } from '../train/termchart.ts';
import { median } from './smooth.ts';
import { type LrSuggestion, type RangeTestCurve, formatLr } from './suggest.ts';

/** Loss vs log lr: raw and smoothed loss, suggested max / min lr and the divergence point marked. */
export function rangeTestPlot(
  curve: RangeTestCurve,
  suggestion: LrSuggestion,
  options: { readonly title?: string; readonly width?: number; readonly height?: number } = {},
): string {
  const raw: number[] = [];
  for (let i = 0; i < curve.losses.length; i++) if (Number.isFinite(curve.losses[i])) raw.push(curve.losses[i]!);
  const sm = suggestion.smoothed;
  const div = suggestion.divergenceLr ?? Number.POSITIVE_INFINITY;
  const before = sm.losses.filter((_, i) => sm.lrs[i]! <= div);
  // y range: from the lowest loss to the starting level, so the blow-up runs off the top.
  const start = raw.length > 0 ? median(raw.slice(0, Math.max(3, Math.round(raw.length / 10)))) : 1;
  const lo = Math.min(...(before.length > 0 ? before : [start]), quantile(raw, 0.02));
  const hi = Math.max(start, ...(before.length > 0 ? before : [start]));
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  const markers: ChartMarker[] = [
    { x: suggestion.maxLr, label: `max lr ${formatLr(suggestion.maxLr)}`, color: '#d62728' },
    { x: suggestion.minLr, label: `min lr ${formatLr(suggestion.minLr)}`, color: '#2ca02c' },
  ];
  if (suggestion.divergenceLr !== null) {
    markers.push({ x: suggestion.divergenceLr, label: `diverges ${formatLr(suggestion.divergenceLr)}`, color: '#7f7f7f' });
  }
  return lineChart({
    title:
      options.title ??
      `LR range test: max lr ${formatLr(suggestion.maxLr)} (${suggestion.method}, confidence ${suggestion.confidence.toFixed(2)})`,
    xLabel: 'learning rate (log scale)',
    yLabel: 'loss',
    logX: true,
    series: [
      { name: 'loss (raw)', xs: curve.lrs, ys: curve.losses, color: '#9ecae1', width: 1 },
      { name: `loss (smoothed, ${suggestion.method})`, xs: sm.lrs, ys: sm.losses, color: '#1f77b4', width: 2 },
    ],
    markers,
    yClip: [lo - pad, hi + pad],
    description: suggestion.reason,
    ...(options.width !== undefined ? { width: options.width } : {}),
    ...(options.height !== undefined ? { height: options.height } : {}),
  });
}

/** The range-test summary: smoothed loss against log lr, with the max lr, min lr and divergence columns marked. */
export function rangeTestTermChart(
  curve: RangeTestCurve,
  suggestion: LrSuggestion,
  options: Omit<TermChartOptions, 'logX' | 'markers'> = {},
): string {
  const sm = suggestion.smoothed;
  const div = suggestion.divergenceLr ?? Number.POSITIVE_INFINITY;
  const before = sm.losses.filter((v, i) => sm.lrs[i]! <= div && Number.isFinite(v));
  const lo = Math.min(...before);
  const hi = Math.max(...before);
  const markers: TermMarker[] = [{ x: suggestion.maxLr }, { x: suggestion.minLr }];
  if (suggestion.divergenceLr !== null) markers.push({ x: suggestion.divergenceLr });
  const xs = curve.lrs;
  return termChart([{ xs: sm.lrs, ys: sm.losses }], {
    ...options,
    title:
      options.title ??
      `loss vs lr: max ${formatLr(suggestion.maxLr)}, min ${formatLr(suggestion.minLr)}` +
        (suggestion.divergenceLr !== null ? `, diverges ${formatLr(suggestion.divergenceLr)}` : `, no divergence to ${formatLr(xs[xs.length - 1]!)}`),
    logX: true,
    markers,
    ...(before.length > 1 && lo < hi ? { yClip: [lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)] as const } : {}),
  });
}
