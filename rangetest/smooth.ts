/**
 * Smoothing for LR range-test curves (pure, float64, no GPU).
 *
 *   emaSmooth      debiased exponential moving average, the smoothing fastai's Recorder
 *                  (AvgSmoothLoss, beta 0.98) applies before its suggestions. Causal, so it lags:
 *                  a feature appears about beta / (1 - beta) samples late (49 at beta 0.98).
 *   medianFilter   centred running median: removes isolated spikes, commutes with any increasing
 *                  map of the values (so with scaling and shifting the loss).
 *   savitzkyGolay  centred least-squares polynomial fit (Savitzky & Golay 1964): zero phase (no lag),
 *                  keeps the height and position of a minimum better than a moving average of the
 *                  same width, and gives the derivative from the same fit. Edges use the fit of the
 *                  first / last full window evaluated off-centre (scipy's mode='interp').
 *
 * All three are affine-equivariant: smoothing a * y + b gives a * smooth(y) + b (a > 0).
 */

/** avg_i = beta * avg_{i-1} + (1 - beta) * y_i (avg_{-1} = 0); out_i = avg_i / (1 - beta^(i+1)). beta = 0 returns a copy. */
export function emaSmooth(values: ArrayLike<number>, beta = 0.98): number[] {
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) {
    throw new RangeError(`emaSmooth: beta must be a number in [0, 1), got ${String(beta)}`);
  }
  const out = new Array<number>(values.length);
  let avg = 0;
  let power = 1;
  for (let i = 0; i < values.length; i++) {
    avg = beta * avg + (1 - beta) * values[i]!;
    power *= beta;
    out[i] = avg / (1 - power);
  }
  return out;
}

/** Running median over an odd `window`, shrinking (still centred) at the edges. */
export function medianFilter(values: ArrayLike<number>, window: number): number[] {
  if (!Number.isInteger(window) || window < 1 || window % 2 === 0) {
    throw new RangeError(`medianFilter: window must be an odd integer >= 1, got ${String(window)}`);
  }
  const n = values.length;
  const half = (window - 1) / 2;
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const h = Math.min(half, i, n - 1 - i);
    const slice: number[] = [];
    for (let j = i - h; j <= i + h; j++) slice.push(values[j]!);
    out[i] = median(slice);
  }
  return out;
}

/** Median of a non-empty list (mean of the two middle values for even length). Does not modify `xs`. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median: empty list');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface SavitzkyGolayOptions {
  /** Odd number of samples in each fit, > order, <= values.length. */
  readonly window: number;
  /** Polynomial order, default 2. */
  readonly order?: number;
  /** 0: smoothed values (default); 1: first derivative per unit of `delta`. */
  readonly derivative?: 0 | 1;
  /** Sample spacing for the derivative, default 1. */
  readonly delta?: number;
}

/** Savitzky–Golay filter of equally spaced, finite samples. */
export function savitzkyGolay(values: ArrayLike<number>, options: SavitzkyGolayOptions): number[] {
  const n = values.length;
  const { window } = options;
  const order = options.order ?? 2;
  const derivative = options.derivative ?? 0;
  const delta = options.delta ?? 1;
  const b = 'savitzkyGolay';
  if (!Number.isInteger(order) || order < 0) throw new RangeError(`${b}: order must be an integer >= 0, got ${String(order)}`);
  if (!Number.isInteger(window) || window % 2 === 0 || window <= order) {
    throw new RangeError(`${b}: window must be an odd integer > order (${order}), got ${String(window)}`);
  }
  if (window > n) throw new RangeError(`${b}: window (${window}) is longer than the ${n} samples`);
  if (derivative !== 0 && derivative !== 1) throw new RangeError(`${b}: derivative must be 0 or 1, got ${String(derivative)}`);
  if (!(delta > 0 && Number.isFinite(delta))) throw new RangeError(`${b}: delta must be a finite number > 0, got ${String(delta)}`);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(values[i])) throw new RangeError(`${b}: sample ${i} is not finite (${String(values[i])})`);
  }

  const half = (window - 1) / 2;
  const centre = sgWeights(window, order, 0, derivative);
  const out = new Array<number>(n);
  const apply = (w: readonly number[], start: number): number => {
    let acc = 0;
    for (let j = 0; j < window; j++) acc += w[j]! * values[start + j]!;
    return derivative === 1 ? acc / delta : acc;
  };
  for (let i = half; i < n - half; i++) out[i] = apply(centre, i - half);
  for (let i = 0; i < half; i++) {
    out[i] = apply(sgWeights(window, order, i - half, derivative), 0);
    out[n - 1 - i] = apply(sgWeights(window, order, half - i, derivative), n - window);
  }
  return out;
}

/**
 * Weights w such that sum_j w_j * y_j is the value (derivative 0) or slope per sample (derivative 1)
 * at offset t from the window centre of the order-`order` least-squares polynomial through the
 * `window` samples. Abscissae are scaled to [-1, 1] so the normal equations stay well conditioned.
 */
export function sgWeights(window: number, order: number, t: number, derivative: 0 | 1): number[] {
  const half = (window - 1) / 2;
  const scale = Math.max(half, 1);
  const k = order + 1;
  const x = Array.from({ length: window }, (_, j) => (j - half) / scale);
  // Normal matrix M = A^T A with A[j][p] = x_j^p.
  const m = Array.from({ length: k }, (_, p) => Array.from({ length: k }, (_, q) => x.reduce((s, xj) => s + xj ** (p + q), 0)));
  // e: the row that evaluates the polynomial (or its derivative) at t.
  const ts = t / scale;
  const e = Array.from({ length: k }, (_, p) => (derivative === 0 ? ts ** p : p === 0 ? 0 : (p * ts ** (p - 1)) / scale));
  const z = solve(m, e); // M is symmetric, so e^T M^-1 A^T y = (A M^-1 e)^T y.
  return x.map((xj) => z.reduce((s, zp, p) => s + zp * xj ** p, 0));
}

/** Gaussian elimination with partial pivoting on a small dense system. */
function solve(a: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const m = a.map((row, i) => [...row, rhs[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r;
    [m[c], m[p]] = [m[p]!, m[c]!];
    const pivot = m[c]![c]!;
    if (pivot === 0) throw new RangeError('savitzkyGolay: singular fit (window too small for the order)');
    for (let r = c + 1; r < n; r++) {
      const f = m[r]![c]! / pivot;
      for (let q = c; q <= n; q++) m[r]![q]! -= f * m[c]![q]!;
    }
  }
  const out = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r]![n]!;
    for (let q = r + 1; q < n; q++) s -= m[r]![q]! * out[q]!;
    out[r] = s / m[r]![r]!;
  }
  return out;
}
