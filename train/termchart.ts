/**
 * A compact line chart for the terminal, exactly `width` columns by `height` rows:
 *
 *   [title row]                      optional
 *   <y label>┤<plot area>            height - 2 (- 1 with a title) rows
 *            └<axis, ┴ at markers>
 *   <x min>   <decades…>    <x max>
 *
 * The plot area is drawn in braille (2 x 4 dots per cell, the finest; the default), half blocks
 * (1 x 2: ▀ ▄ █) or plain ASCII ('*', '|', '-', '+', '^'). Lines join consecutive finite points
 * and are clipped to the y range; markers are dotted columns (┊ or ':') wherever the curve is not.
 */
import { axisMap, clipSegment, formatTick, logTicks } from './plot.ts';

export interface TermSeries {
  readonly xs: ArrayLike<number>;
  readonly ys: ArrayLike<number>;
}

export interface TermMarker {
  readonly x: number;
}

export interface TermChartOptions {
  /** Columns and rows of the whole chart; defaults 60 x 12, at least 24 x 6. */
  readonly width?: number;
  readonly height?: number;
  readonly logX?: boolean;
  readonly mode?: 'braille' | 'block' | 'ascii';
  readonly title?: string;
  readonly markers?: readonly TermMarker[];
  /** Fixed y range [lo, hi]; default the finite ys' range. */
  readonly yClip?: readonly [number, number];
}

const NAME = 'termChart';
// Braille dot bits by (column, row) within a cell: U+2800 + sum of bits.
const BRAILLE = [
  [0x01, 0x02, 0x04, 0x40],
  [0x08, 0x10, 0x20, 0x80],
] as const;

export function termChart(series: TermSeries | readonly TermSeries[], options: TermChartOptions = {}): string {
  const list: readonly TermSeries[] = Array.isArray(series) ? series : [series as TermSeries];
  const width = options.width ?? 60;
  const height = options.height ?? 12;
  const mode = options.mode ?? 'braille';
  const title = options.title;
  if (!(Number.isInteger(width) && width >= 24 && Number.isInteger(height) && height >= 6)) {
    throw new RangeError(`${NAME}: width and height must be integers of at least 24 x 6, got ${width} x ${height}`);
  }
  if (!['braille', 'block', 'ascii'].includes(mode)) throw new RangeError(`${NAME}: unknown mode '${String(mode)}'`);
  list.forEach((s, i) => {
    if (s.xs.length !== s.ys.length) throw new RangeError(`${NAME}: series ${i} has ${s.xs.length} xs but ${s.ys.length} ys`);
  });
  const logX = options.logX ?? false;
  const okX = (x: number): boolean => Number.isFinite(x) && (!logX || x > 0);
  const ascii = mode === 'ascii';

  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of list) {
    for (let i = 0; i < s.xs.length; i++) {
      if (!okX(s.xs[i]!)) continue;
      xs.push(s.xs[i]!);
      if (Number.isFinite(s.ys[i])) ys.push(s.ys[i]!);
    }
  }
  for (const m of options.markers ?? []) if (okX(m.x)) xs.push(m.x);
  let xDomain: [number, number] = xs.length > 0 ? [Math.min(...xs), Math.max(...xs)] : logX ? [1, 10] : [0, 1];
  if (!(xDomain[0] < xDomain[1])) xDomain = logX ? [xDomain[0] / 2, xDomain[0] * 2] : [xDomain[0] - 1, xDomain[0] + 1];
  let yDomain: [number, number] = options.yClip ? [options.yClip[0], options.yClip[1]] : ys.length > 0 ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (!(Number.isFinite(yDomain[0]) && Number.isFinite(yDomain[1]))) throw new RangeError(`${NAME}: yClip must be finite`);
  if (!(yDomain[0] < yDomain[1])) yDomain = [yDomain[0] - (Math.abs(yDomain[0]) * 0.1 || 1), yDomain[1] + (Math.abs(yDomain[1]) * 0.1 || 1)];

  // Layout.
  const rows = height - 2 - (title !== undefined ? 1 : 0);
  const yLabels = [formatTick(yDomain[1]), formatTick((yDomain[0] + yDomain[1]) / 2), formatTick(yDomain[0])];
  const gutter = Math.max(...yLabels.map((l) => l.length));
  const cols = width - gutter - 1;
  const [sx, sy] = mode === 'braille' ? [2, 4] : mode === 'block' ? [1, 2] : [1, 1];
  const dotsW = cols * sx;
  const dotsH = rows * sy;
  const dots = Array.from({ length: dotsH }, () => new Uint8Array(dotsW));
  const fx = axisMap(xDomain, logX);
  const fy = axisMap(yDomain, false);
  const box = { x0: 0, y0: 0, x1: dotsW - 1, y1: dotsH - 1 };
  const toDot = (x: number, y: number): [number, number] => [
    bound(fx(x) * (dotsW - 1), dotsW),
    bound((1 - fy(y)) * (dotsH - 1), dotsH),
  ];
  const set = (x: number, y: number): void => {
    const c = Math.round(x);
    const r = Math.round(y);
    if (c >= 0 && c < dotsW && r >= 0 && r < dotsH) dots[r]![c] = 1;
  };

  for (const s of list) {
    let prev: [number, number] | null = null;
    for (let i = 0; i < s.xs.length; i++) {
      const cur = okX(s.xs[i]!) && Number.isFinite(s.ys[i]) ? toDot(s.xs[i]!, s.ys[i]!) : null;
      if (cur !== null && prev === null) {
        if (cur[1] >= 0 && cur[1] <= dotsH - 1) set(cur[0], cur[1]);
      } else if (cur !== null && prev !== null) {
        const c = clipSegment(prev, cur, box);
        if (c !== null) {
          const [a, b] = c;
          const n = Math.max(1, Math.ceil(Math.max(Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]))));
          for (let k = 0; k <= n; k++) set(a[0] + ((b[0] - a[0]) * k) / n, a[1] + ((b[1] - a[1]) * k) / n);
        }
      }
      prev = cur;
    }
  }

  // Cells.
  const grid: string[][] = Array.from({ length: rows }, (_, r) =>
    Array.from({ length: cols }, (_, c) => {
      if (mode === 'braille') {
        let code = 0;
        for (let dx = 0; dx < 2; dx++) for (let dy = 0; dy < 4; dy++) if (dots[r * 4 + dy]![c * 2 + dx]) code |= BRAILLE[dx]![dy]!;
        return code === 0 ? ' ' : String.fromCodePoint(0x2800 + code);
      }
      if (mode === 'block') {
        const top = dots[r * 2]![c]!;
        const bottom = dots[r * 2 + 1]![c]!;
        return top && bottom ? '█' : top ? '▀' : bottom ? '▄' : ' ';
      }
      return dots[r]![c] ? '*' : ' ';
    }),
  );
  const markerCols = new Set<number>();
  for (const m of options.markers ?? []) {
    if (!okX(m.x)) continue;
    const c = Math.round(fx(m.x) * (cols - 1));
    if (c < 0 || c >= cols) continue;
    markerCols.add(c);
    for (let r = 0; r < rows; r++) if (grid[r]![c] === ' ') grid[r]![c] = ascii ? ':' : '┊';
  }

  const lines: string[] = [];
  if (title !== undefined) lines.push(fit(title, width));
  for (let r = 0; r < rows; r++) {
    const label = r === 0 ? yLabels[0]! : r === rows - 1 ? yLabels[2]! : r === Math.floor((rows - 1) / 2) && rows >= 5 ? yLabels[1]! : '';
    const tick = label !== '' ? (ascii ? '+' : '┤') : ascii ? '|' : '│';
    lines.push(label.padStart(gutter) + tick + grid[r]!.join(''));
  }
  const axis = Array.from({ length: cols }, (_, c) => (markerCols.has(c) ? (ascii ? '^' : '┴') : ascii ? '-' : '─'));
  lines.push(' '.repeat(gutter) + (ascii ? '+' : '└') + axis.join(''));
  lines.push(xLabelRow(xDomain, logX, fx, gutter + 1, cols, width));
  return lines.join('\n');
}

/** x min at the left, x max at the right, decade (or linear) ticks between where they fit. */
function xLabelRow(domain: [number, number], log: boolean, fx: (v: number) => number, offset: number, cols: number, width: number): string {
  const row = new Array<string>(width).fill(' ');
  const put = (text: string, start: number): boolean => {
    if (start < 0 || start + text.length > width) return false;
    for (let k = Math.max(0, start - 1); k < Math.min(width, start + text.length + 1); k++) if (row[k] !== ' ') return false;
    for (let k = 0; k < text.length; k++) row[start + k] = text[k]!;
    return true;
  };
  const left = formatTick(domain[0]);
  const right = formatTick(domain[1]);
  put(left, Math.max(0, offset - Math.floor(left.length / 2)));
  put(right, width - right.length);
  const ticks = log ? logTicks(domain[0], domain[1]) : [];
  for (const t of ticks) {
    const text = formatTick(t);
    put(text, offset + Math.round(fx(t) * (cols - 1)) - Math.floor(text.length / 2));
  }
  return row.join('');
}

function fit(text: string, width: number): string {
  const chars = [...text];
  return chars.length > width ? chars.slice(0, width - 1).join('') + '…' : text.padEnd(width);
}

const bound = (v: number, size: number): number => (v > 4 * size ? 4 * size : v < -4 * size ? -4 * size : v);
