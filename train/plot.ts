/**
 * A small dependency-free SVG line-chart writer (loss curves, schedules, range tests).
 *
 *   lineChart      series of (x, y) polylines on linear or log axes, with 1-2-5 ticks (decades on
 *                  log axes), a legend, labelled vertical markers and a y range that can be clipped
 *                  (`yClip`, or `yMaxQuantile` to ignore a blow-up). NaN / Infinity (and values <= 0
 *                  on a log axis) leave gaps. Lines are clipped to the plot area geometrically
 *                  (Liang–Barsky), so a loss of 1e30 costs no giant coordinates.
 *                  `bands` shade a range (min–max over seeds) under the lines.
 *   errorBarChart  one row per group (experiment arms): the mean as a dot, ±std as a thick bar,
 *                  min–max as a whisker and each value as a small ring, on a shared x axis.
 *
 * Output is standalone SVG 1.1 text with every label escaped; no ids, so charts can be inlined
 * together in one HTML page.
 */

export interface ChartSeries {
  readonly name: string;
  readonly xs: ArrayLike<number>;
  readonly ys: ArrayLike<number>;
  /** Any SVG colour; defaults cycle through PALETTE. */
  readonly color?: string;
  readonly dashed?: boolean;
  /** Stroke width in px, default 1.75. */
  readonly width?: number;
  /** Stroke opacity in (0, 1], default 1. */
  readonly opacity?: number;
}

/** A shaded range between two curves (e.g. min and max over seeds), drawn under the lines. */
export interface ChartBand {
  readonly xs: ArrayLike<number>;
  readonly lo: ArrayLike<number>;
  readonly hi: ArrayLike<number>;
  readonly color?: string;
  /** Fill opacity, default 0.15. */
  readonly opacity?: number;
}

export interface ChartMarker {
  readonly x: number;
  readonly label: string;
  readonly color?: string;
}

export interface LineChartOptions {
  readonly title?: string;
  readonly xLabel?: string;
  readonly yLabel?: string;
  readonly series: readonly ChartSeries[];
  /** Shaded ranges; band k takes series k's colour unless it names one. */
  readonly bands?: readonly ChartBand[];
  readonly logX?: boolean;
  readonly logY?: boolean;
  readonly markers?: readonly ChartMarker[];
  /** Pixels, defaults 720 x 420, at least 160 x 120. */
  readonly width?: number;
  readonly height?: number;
  /** Fixed y range [lo, hi]; lines leaving it are clipped. */
  readonly yClip?: readonly [number, number];
  /** Without yClip: the top of the y range is this quantile (0, 1] of the finite ys, e.g. 0.95 so a blow-up cannot flatten the rest. */
  readonly yMaxQuantile?: number;
  /** Text for the SVG <desc> element (screen readers, tooltips). */
  readonly description?: string;
}

export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'] as const;

const NAME = 'lineChart';
const MARGIN = { left: 68, right: 20, top: 40, bottom: 52 } as const;

export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 420;
  if (!(Number.isFinite(width) && width >= 160 && Number.isFinite(height) && height >= 120)) {
    throw new RangeError(`${NAME}: width and height must be at least 160 x 120, got ${width} x ${height}`);
  }
  if (!Array.isArray(options.series)) throw new TypeError(`${NAME}: series must be an array`);
  options.series.forEach((s, i) => {
    if (s.xs.length !== s.ys.length) {
      throw new RangeError(`${NAME}: series ${i} ('${s.name}') has ${s.xs.length} xs but ${s.ys.length} ys`);
    }
  });
  const logX = options.logX ?? false;
  const logY = options.logY ?? false;
  const okX = (x: number): boolean => Number.isFinite(x) && (!logX || x > 0);
  const okY = (y: number): boolean => Number.isFinite(y) && (!logY || y > 0);

  // Domains.
  const xsAll: number[] = [];
  const ysAll: number[] = [];
  for (const s of options.series) {
    for (let i = 0; i < s.xs.length; i++) {
      if (!okX(s.xs[i]!)) continue;
      xsAll.push(s.xs[i]!);
      if (okY(s.ys[i]!)) ysAll.push(s.ys[i]!);
    }
  }
  for (const b of options.bands ?? []) {
    if (b.xs.length !== b.lo.length || b.xs.length !== b.hi.length) throw new RangeError(`${NAME}: a band's xs, lo and hi differ in length`);
    for (let i = 0; i < b.xs.length; i++) {
      if (!okX(b.xs[i]!)) continue;
      xsAll.push(b.xs[i]!);
      for (const y of [b.lo[i]!, b.hi[i]!]) if (okY(y)) ysAll.push(y);
    }
  }
  for (const m of options.markers ?? []) if (okX(m.x)) xsAll.push(m.x);
  const xDomain = padDomain(xsAll.length > 0 ? [Math.min(...xsAll), Math.max(...xsAll)] : logX ? [1, 10] : [0, 1], logX);
  let yDomain: [number, number];
  if (options.yClip !== undefined) {
    const [lo, hi] = options.yClip;
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi && (!logY || lo > 0))) {
      throw new RangeError(`${NAME}: yClip must be finite [lo, hi] with lo < hi${logY ? ' and lo > 0' : ''}, got [${lo}, ${hi}]`);
    }
    yDomain = [lo, hi];
  } else {
    const q = options.yMaxQuantile ?? 1;
    if (!(q > 0 && q <= 1)) throw new RangeError(`${NAME}: yMaxQuantile must be in (0, 1], got ${q}`);
    const sorted = [...ysAll].sort((a, b) => a - b);
    const range: [number, number] =
      sorted.length > 0 ? [sorted[0]!, sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!] : logY ? [1, 10] : [0, 1];
    yDomain = padDomain(range, logY);
    if (!logY) yDomain = niceDomain(yDomain);
  }

  // Legend: rows of swatch + name under the title, outside the data, wrapped to the width.
  const legend: { x: number; row: number; series: ChartSeries; k: number }[] = [];
  let lx = MARGIN.left;
  let row = 0;
  options.series.forEach((s, k) => {
    const w = 34 + s.name.length * 6.6;
    if (lx + w > width - MARGIN.right && lx > MARGIN.left) {
      row++;
      lx = MARGIN.left;
    }
    legend.push({ x: lx, row, series: s, k });
    lx += w + 12;
  });
  const legendRows = legend.length > 0 ? row + 1 : 0;
  const top = (options.title !== undefined ? MARGIN.top : 14) + 18 * legendRows;
  const plot = { x0: MARGIN.left, y0: top, x1: width - MARGIN.right, y1: height - MARGIN.bottom };
  if (!(plot.y1 - plot.y0 >= 40)) throw new RangeError(`${NAME}: height ${height} leaves no room for the plot under ${legendRows} legend rows`);
  const fx = axisMap(xDomain, logX);
  const fy = axisMap(yDomain, logY);
  const px = (x: number): number => plot.x0 + fx(x) * (plot.x1 - plot.x0);
  const py = (y: number): number => plot.y1 - fy(y) * (plot.y1 - plot.y0);

  const out = svgOpening(width, height, options);

  // Grid, ticks, labels.
  const xTicks = logX ? logTicks(xDomain[0], xDomain[1]) : niceTicks(xDomain[0], xDomain[1]);
  const yTicks = logY ? logTicks(yDomain[0], yDomain[1]) : niceTicks(yDomain[0], yDomain[1]);
  out.push('<g stroke="#e5e5e5" stroke-width="1">');
  for (const t of xTicks) out.push(`<line x1="${f(px(t))}" y1="${f(plot.y0)}" x2="${f(px(t))}" y2="${f(plot.y1)}"/>`);
  for (const t of yTicks) out.push(`<line x1="${f(plot.x0)}" y1="${f(py(t))}" x2="${f(plot.x1)}" y2="${f(py(t))}"/>`);
  out.push('</g>');
  out.push(
    `<rect x="${f(plot.x0)}" y="${f(plot.y0)}" width="${f(plot.x1 - plot.x0)}" height="${f(plot.y1 - plot.y0)}" fill="none" stroke="#333333" stroke-width="1"/>`,
  );
  out.push('<g fill="#333333">');
  for (const t of xTicks) out.push(`<text x="${f(px(t))}" y="${f(plot.y1 + 16)}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
  for (const t of yTicks) {
    out.push(`<text x="${f(plot.x0 - 6)}" y="${f(py(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`);
  }
  out.push('</g>');
  if (options.title !== undefined) {
    out.push(`<text x="${f(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(options.title)}</text>`);
  }
  if (options.xLabel !== undefined) {
    out.push(`<text x="${f((plot.x0 + plot.x1) / 2)}" y="${f(height - 12)}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  }
  if (options.yLabel !== undefined) {
    const cy = (plot.y0 + plot.y1) / 2;
    out.push(`<text x="16" y="${f(cy)}" text-anchor="middle" transform="rotate(-90 16 ${f(cy)})">${escapeXml(options.yLabel)}</text>`);
  }

  // Bands: polygons along hi and back along lo, points clamped into the plot area.
  (options.bands ?? []).forEach((b, k) => {
    const pts: [number, number][] = [];
    const back: [number, number][] = [];
    const clamp = (t: number): number => Math.min(1, Math.max(0, t));
    for (let i = 0; i < b.xs.length; i++) {
      const x = b.xs[i]!;
      if (!okX(x) || !okY(b.lo[i]!) || !okY(b.hi[i]!)) continue;
      pts.push([clamp(fx(x)), clamp(fy(b.hi[i]!))]);
      back.push([clamp(fx(x)), clamp(fy(b.lo[i]!))]);
    }
    if (pts.length < 2) return;
    const ring = [...pts, ...back.reverse()].map((p) => toPx(p, plot));
    const color = escapeXml(b.color ?? options.series[k]?.color ?? PALETTE[k % PALETTE.length]!);
    out.push(`<path data-band="${k}" d="M${ring.join('L')}Z" fill="${color}" fill-opacity="${f(b.opacity ?? 0.15)}" stroke="none"/>`);
  });

  // Series.
  const box = { x0: 0, y0: 0, x1: 1, y1: 1 };
  options.series.forEach((s, k) => {
    const color = escapeXml(s.color ?? PALETTE[k % PALETTE.length]!);
    const segments: string[] = [];
    const dots: string[] = [];
    let pen: [number, number] | null = null;
    let prev: [number, number] | null = null;
    for (let i = 0; i < s.xs.length; i++) {
      const x = s.xs[i]!;
      const y = s.ys[i]!;
      const cur: [number, number] | null = okX(x) && okY(y) ? [bound(fx(x)), bound(fy(y))] : null;
      if (cur !== null && prev === null && !(i + 1 < s.xs.length && okX(s.xs[i + 1]!) && okY(s.ys[i + 1]!))) {
        // An isolated point between gaps: a dot, if visible.
        if (cur[0] >= 0 && cur[0] <= 1 && cur[1] >= 0 && cur[1] <= 1) dots.push(toPx(cur, plot));
      }
      if (cur !== null && prev !== null) {
        const c = clipSegment(prev, cur, box);
        if (c !== null) {
          const [a, b] = c;
          if (pen === null || pen[0] !== a[0] || pen[1] !== a[1]) segments.push(`M${toPx(a, plot)}`);
          segments.push(`L${toPx(b, plot)}`);
          pen = b;
        }
      }
      if (cur === null) pen = null;
      prev = cur;
    }
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    const opacity = s.opacity !== undefined ? ` stroke-opacity="${f(s.opacity)}"` : '';
    if (segments.length > 0) {
      out.push(
        `<path data-series="${escapeXml(s.name)}" d="${segments.join('')}" fill="none" stroke="${color}" stroke-width="${f(s.width ?? 1.75)}" ` +
          `stroke-linejoin="round" stroke-linecap="round"${dash}${opacity}/>`,
      );
    }
    for (const d of dots) {
      const [cx, cy] = d.split(',');
      out.push(`<circle data-series="${escapeXml(s.name)}" cx="${cx}" cy="${cy}" r="2" fill="${color}"/>`);
    }
  });

  // Markers: dashed vertical lines with staggered labels.
  (options.markers ?? []).forEach((m, i) => {
    if (!okX(m.x)) return;
    const t = fx(m.x);
    if (t < 0 || t > 1) return;
    const x = px(m.x);
    const color = escapeXml(m.color ?? '#444444');
    const ly = plot.y0 + 14 + 14 * (i % 3);
    const right = t > 0.8;
    out.push(
      `<g data-marker="${escapeXml(m.label)}"><line x1="${f(x)}" y1="${f(plot.y0)}" x2="${f(x)}" y2="${f(plot.y1)}" stroke="${color}" stroke-width="1.25" stroke-dasharray="3 3"/>` +
        `<text x="${f(right ? x - 4 : x + 4)}" y="${f(ly)}" fill="${color}" text-anchor="${right ? 'end' : 'start'}">${escapeXml(m.label)}</text></g>`,
    );
  });

  if (legend.length > 0) {
    out.push('<g data-legend="">');
    const legendTop = options.title !== undefined ? MARGIN.top - 6 : 14;
    for (const { x, row: r, series: s, k } of legend) {
      const y = legendTop + 18 * r;
      const color = escapeXml(s.color ?? PALETTE[k % PALETTE.length]!);
      const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
      out.push(`<line x1="${f(x)}" y1="${f(y)}" x2="${f(x + 24)}" y2="${f(y)}" stroke="${color}" stroke-width="2.5"${dash}/>`);
      out.push(`<text x="${f(x + 30)}" y="${f(y + 4)}">${escapeXml(s.name)}</text>`);
    }
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export interface ErrorBarRow {
  readonly label: string;
  readonly mean: number;
  readonly std: number;
  readonly min: number;
  readonly max: number;
  /** the individual values (seeds), drawn as small rings */
  readonly values?: readonly number[];
  readonly color?: string;
}

/**
 * Groups (experiment arms) as rows, values on the x axis: mean (dot), mean ± std (thick bar),
 * min–max (whisker with end caps) and the individual values (rings); row labels on the left.
 * The height grows with the number of rows.
 */
export function errorBarChart(options: {
  readonly title?: string;
  readonly xLabel?: string;
  readonly rows: readonly ErrorBarRow[];
  readonly width?: number;
  /** Fixed x range; default: the values' range, widened to ticks. */
  readonly xRange?: readonly [number, number];
  readonly description?: string;
}): string {
  const name = 'errorBarChart';
  const width = options.width ?? 720;
  if (!(Number.isFinite(width) && width >= 240)) throw new RangeError(`${name}: width must be at least 240, got ${width}`);
  const rows = options.rows;
  const rowH = 22;
  const labelW = Math.min(width * 0.45, 12 + 6.6 * Math.max(4, ...rows.map((r) => r.label.length)));
  const top = options.title !== undefined ? 40 : 14;
  const height = top + rowH * Math.max(1, rows.length) + 52;
  const plot = { x0: labelW + 10, y0: top, x1: width - 20, y1: top + rowH * Math.max(1, rows.length) };
  const all: number[] = [];
  for (const r of rows) for (const v of [r.mean, r.min, r.max, r.mean - r.std, r.mean + r.std, ...(r.values ?? [])]) if (Number.isFinite(v)) all.push(v);
  let domain: [number, number];
  if (options.xRange !== undefined) {
    const [lo, hi] = options.xRange;
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi)) throw new RangeError(`${name}: xRange must be finite [lo, hi] with lo < hi`);
    domain = [lo, hi];
  } else {
    domain = niceDomain(padDomain(all.length > 0 ? [Math.min(...all), Math.max(...all)] : [0, 1], false));
  }
  const fx = axisMap(domain, false);
  const px = (v: number): number => plot.x0 + Math.min(1, Math.max(0, fx(v))) * (plot.x1 - plot.x0);
  const out = svgOpening(width, height, options);
  const ticks = niceTicks(domain[0], domain[1]);
  out.push('<g stroke="#e5e5e5" stroke-width="1">');
  for (const t of ticks) out.push(`<line x1="${f(px(t))}" y1="${f(plot.y0)}" x2="${f(px(t))}" y2="${f(plot.y1)}"/>`);
  out.push('</g>');
  out.push(
    `<rect x="${f(plot.x0)}" y="${f(plot.y0)}" width="${f(plot.x1 - plot.x0)}" height="${f(plot.y1 - plot.y0)}" fill="none" stroke="#333333" stroke-width="1"/>`,
  );
  out.push('<g fill="#333333">');
  for (const t of ticks) out.push(`<text x="${f(px(t))}" y="${f(plot.y1 + 16)}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
  out.push('</g>');
  if (options.title !== undefined) {
    out.push(`<text x="${f(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(options.title)}</text>`);
  }
  if (options.xLabel !== undefined) {
    out.push(`<text x="${f((plot.x0 + plot.x1) / 2)}" y="${f(height - 12)}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  }
  rows.forEach((r, k) => {
    const cy = plot.y0 + rowH * (k + 0.5);
    const color = escapeXml(r.color ?? PALETTE[k % PALETTE.length]!);
    const parts: string[] = [`<g data-row="${escapeXml(r.label)}">`];
    parts.push(`<text x="${f(plot.x0 - 8)}" y="${f(cy + 4)}" text-anchor="end" fill="#333333">${escapeXml(r.label)}</text>`);
    if ([r.mean, r.min, r.max, r.std].every(Number.isFinite)) {
      parts.push(`<line x1="${f(px(r.min))}" y1="${f(cy)}" x2="${f(px(r.max))}" y2="${f(cy)}" stroke="${color}" stroke-width="1.25"/>`);
      for (const v of [r.min, r.max]) parts.push(`<line x1="${f(px(v))}" y1="${f(cy - 5)}" x2="${f(px(v))}" y2="${f(cy + 5)}" stroke="${color}" stroke-width="1.25"/>`);
      parts.push(`<line x1="${f(px(r.mean - r.std))}" y1="${f(cy)}" x2="${f(px(r.mean + r.std))}" y2="${f(cy)}" stroke="${color}" stroke-width="5" stroke-opacity="0.5"/>`);
      for (const v of r.values ?? []) {
        if (Number.isFinite(v)) parts.push(`<circle cx="${f(px(v))}" cy="${f(cy)}" r="3" fill="none" stroke="${color}" stroke-width="1"/>`);
      }
      parts.push(`<circle cx="${f(px(r.mean))}" cy="${f(cy)}" r="4" fill="${color}"/>`);
    }
    parts.push('</g>');
    out.push(parts.join(''));
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Axes
// ---------------------------------------------------------------------------------------------

/** Ticks at multiples of a 1-2-5 step (times a power of ten), about `target` of them, inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi)) return Number.isFinite(lo) ? [lo] : [];
  const step = niceStep((hi - lo) / Math.max(1, target));
  const out: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(clean(k * step));
  return out;
}

/** Decades when the range spans at least two (every 2nd, 5th... when there are many), else 1-2-5 within the decade(s), else linear ticks. */
export function logTicks(lo: number, hi: number, target = 8): number[] {
  if (!(lo > 0 && hi > lo && Number.isFinite(hi))) return [];
  const e0 = Math.ceil(Math.log10(lo) - 1e-9);
  const e1 = Math.floor(Math.log10(hi) + 1e-9);
  if (e1 - e0 >= 1) {
    const every = Math.max(1, Math.ceil((e1 - e0 + 1) / target));
    const out: number[] = [];
    for (let e = e0; e <= e1; e++) if ((e - e0) % every === 0) out.push(clean(10 ** e));
    return out;
  }
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = clean(m * 10 ** e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    }
  }
  return out.length >= 2 ? out : niceTicks(lo, hi, 4);
}

function niceStep(raw: number): number {
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

/** Strip binary noise (0.30000000000000004 -> 0.3). */
const clean = (v: number): number => Number(v.toPrecision(12));

/** Short tick text: 0.001, 250, 1e-5, 2e6. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) {
    const [m, e] = v.toExponential(3).split('e');
    return `${m!.replace(/\.?0+$/, '')}e${Number(e)}`;
  }
  return String(clean(Number(v.toPrecision(4))));
}

function padDomain([lo, hi]: [number, number], log: boolean): [number, number] {
  if (lo < hi) return [lo, hi];
  if (log) return [lo / 2, hi * 2];
  const d = Math.abs(lo) * 0.1 || 1;
  return [lo - d, hi + d];
}

/** Widen a linear domain out to its outermost ticks. */
function niceDomain([lo, hi]: [number, number]): [number, number] {
  const step = niceStep((hi - lo) / 6);
  return [clean(Math.floor(lo / step + 1e-9) * step), clean(Math.ceil(hi / step - 1e-9) * step)];
}

/** Value -> fraction of the axis (0 at lo, 1 at hi), linear or log. */
export function axisMap([lo, hi]: readonly [number, number], log: boolean): (v: number) => number {
  if (log) {
    const a = Math.log10(lo);
    const span = Math.log10(hi) - a;
    return (v) => (Math.log10(v) - a) / span;
  }
  return (v) => (v - lo) / (hi - lo);
}

/** Keep fractions finite and moderate; far outside the box only the direction matters. */
const bound = (t: number): number => (t > 1e6 ? 1e6 : t < -1e6 ? -1e6 : t);

/**
 * Liang–Barsky: the part of segment a-b inside the box, or null. Used by the SVG and terminal
 * charts so points far outside the y range still draw the right visible piece.
 */
export function clipSegment(
  a: readonly [number, number],
  b: readonly [number, number],
  box: { readonly x0: number; readonly y0: number; readonly x1: number; readonly y1: number },
): [[number, number], [number, number]] | null {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  let t0 = 0;
  let t1 = 1;
  const edges: [number, number][] = [
    [-dx, a[0] - box.x0],
    [dx, box.x1 - a[0]],
    [-dy, a[1] - box.y0],
    [dy, box.y1 - a[1]],
  ];
  for (const [p, q] of edges) {
    if (p === 0) {
      if (q < 0) return null;
      continue;
    }
    const r = q / p;
    if (p < 0) {
      if (r > t1) return null;
      if (r > t0) t0 = r;
    } else {
      if (r < t0) return null;
      if (r < t1) t1 = r;
    }
  }
  return [
    t0 === 0 ? [a[0], a[1]] : [a[0] + t0 * dx, a[1] + t0 * dy],
    t1 === 1 ? [b[0], b[1]] : [a[0] + t1 * dx, a[1] + t1 * dy],
  ];
}

function toPx(p: readonly [number, number], plot: { x0: number; y0: number; x1: number; y1: number }): string {
  return `${f(plot.x0 + p[0] * (plot.x1 - plot.x0))},${f(plot.y1 - p[1] * (plot.y1 - plot.y0))}`;
}

/** Two decimals, no trailing zeros, never "-0". */
function f(v: number): string {
  const s = (Math.round(v * 100) / 100).toString();
  return s === '-0' ? '0' : s;
}

/** The chart's <svg> element, its title and description for screen readers, and the white ground. */
function svgOpening(width: number, height: number, o: { readonly title?: string | undefined; readonly description?: string | undefined }): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`,
  ];
  if (o.title !== undefined) out.push(`<title>${escapeXml(o.title)}</title>`);
  if (o.description !== undefined) out.push(`<desc>${escapeXml(o.description)}</desc>`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  return out;
}

export function escapeXml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    // Characters XML 1.0 forbids (C0 controls except tab, newline, carriage return; lone surrogates).
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** The q-quantile of xs (linear between order statistics). */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.POSITIVE_INFINITY;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.floor(q * (s.length - 1))))]!;
}
