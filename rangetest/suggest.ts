/**
 * Learning-rate suggestions from an LR range test (Smith 2015 sec. 3.3; Smith 2018): pure
 * functions of the recorded curve, no GPU. The curve is what the sweep recorded, one raw loss per
 * iteration with the lr increasing; it may end in a blow-up and NaN / Infinity.
 *
 * Methods (docs/lr-suggestion.md compares them on synthetic curves):
 *   auto      (default) the largest lr at which the loss is still low and stable, clearly before
 *             divergence; Smith's reading of the plot. Works in log10(lr) on a uniform grid with a
 *             zero-phase Savitzky–Golay smoother, so no lag and no dependence on sweep spacing.
 *   steepest  most negative slope of the EMA-smoothed loss per decade of lr. pytorch-lr-finder and
 *             Lightning take np.gradient per *index*, which is only right for exponential sweeps.
 *   minimum   lr at the minimum of the EMA-smoothed loss, divided by 10 (fastai's `minimum`).
 *   valley    fastai's `valley`: the longest decreasing subsequence of the EMA-smoothed loss, then
 *             the point about halfway along it (see `valleyIndex`).
 * The EMA methods see the same smoothing fastai's Recorder applies (beta 0.98, debiased) and the
 * curve cut at the divergence point that `auto` detects, so none of them can pick an lr past it.
 *
 * Every method is equivariant to the natural symmetries of the problem: scaling the loss by a > 0
 * or shifting it leaves the answer unchanged, and multiplying every lr by c multiplies it by c.
 */
import { emaSmooth, median, medianFilter, savitzkyGolay } from './smooth.ts';

export interface RangeTestCurve {
  /** Strictly increasing, finite, > 0. */
  readonly lrs: ArrayLike<number>;
  /** Raw losses, one per lr; a NaN / Infinity marks divergence (everything after it is ignored). */
  readonly losses: ArrayLike<number>;
}

export type SuggestMethod = 'auto' | 'steepest' | 'minimum' | 'valley';

export interface SuggestOptions {
  /** Default 'auto'. */
  readonly method?: SuggestMethod;
  /** minLr = maxLr / minLrDivisor; default 10 (Smith: min lr a tenth of max, 3-4x also common). */
  readonly minLrDivisor?: number;
  /** Fewest finite losses (before the first NaN / Infinity) accepted; default 10, at least 5. */
  readonly minPoints?: number;
  /** EMA beta for steepest / minimum / valley; default 0.98 (fastai); 0 uses the raw losses. */
  readonly beta?: number;
  /** auto: Savitzky–Golay window in grid points (odd, >= 5); default about 8% of the points. */
  readonly window?: number;
  /** Divergence: the smoothed loss climbs back above min + divergenceFraction * fall; default 0.5. */
  readonly divergenceFraction?: number;
  /** auto: the low-loss valley is where the smoothed loss is within valleyFraction * fall of its minimum; default 0.15. */
  readonly valleyFraction?: number;
  /** auto: the answer stays at least this many decades below the divergence point; default 0.3 (a factor of 2). */
  readonly marginDecades?: number;
  /**
   * auto: a curve whose fall is under this many noise stds is read by its blow-up instead of its
   * valley (real one-epoch sweeps: the fall drowns in batch noise, the blow-up does not); default 8.
   */
  readonly clearFallSnr?: number;
  /** auto, blow-up reading: the loss has blown up where it stays this many noise stds above its start; default 4. */
  readonly blowupSigmas?: number;
  /** auto, blow-up reading: the answer is this many decades below the blow-up; default 1 (a tenth). */
  readonly blowupDecades?: number;
  /**
   * auto: the answer is at most noiseLrScale / noise² (noise: the batch-loss std, which scales as
   * 1/sqrt(batch size)): the noise-limited lr, proportional to the batch size as the linear
   * scaling rule has it, which a sweep's blow-up does not see. It has the loss's units, so it is
   * off by default (0); for a classifier's cross-entropy in nats, CROSS_ENTROPY_NOISE_LR_SCALE
   * (what this engine's range test passes).
   */
  readonly noiseLrScale?: number;
}

export interface LrSuggestion {
  readonly maxLr: number;
  readonly minLr: number;
  readonly method: SuggestMethod;
  /** In [0, 1]: how clearly the curve shows a fall, a valley and a divergence (see confidenceOf). */
  readonly confidence: number;
  readonly reason: string;
  /** Where the loss diverged (smoothed loss back above the divergence level, or the first NaN / Infinity); null if it never did. */
  readonly divergenceLr: number | null;
  /** Std of the raw losses about the smoothed curve (from second differences, robust to spikes): the batch noise. */
  readonly noise: number;
  /** The smoothed curve the method read, for plots: auto, the Savitzky–Golay curve on its log-lr grid; the others, the EMA at the recorded lrs. */
  readonly smoothed: { readonly lrs: number[]; readonly losses: number[] };
}

/**
 * noiseLrScale for a softmax cross-entropy loss in nats, SGD with momentum 0.9-0.95 and One
 * Cycle after the sweep: fitted on the lr grids of test/fixtures/lr-grid (seven CIFAR-10
 * settings, batch 32-128), tested out of sample on two at batch 8 (docs/lr-suggestion.md
 * "Against ground truth").
 */
export const CROSS_ENTROPY_NOISE_LR_SCALE = 1e-3;

const NAME = 'suggestLr';
const METHODS: readonly SuggestMethod[] = ['auto', 'steepest', 'minimum', 'valley'];
const OPTION_KEYS = [
  'method',
  'minLrDivisor',
  'minPoints',
  'beta',
  'window',
  'divergenceFraction',
  'valleyFraction',
  'marginDecades',
  'clearFallSnr',
  'blowupSigmas',
  'blowupDecades',
  'noiseLrScale',
] as const;
/** Grid size cap: longer sweeps are binned (median per bin) onto this many log-lr points. */
const MAX_GRID = 2000;

export function suggestLr(curve: RangeTestCurve, options: SuggestOptions = {}): LrSuggestion {
  const opts = checkOptions(options);
  const data = prepare(curve, opts.minPoints);
  const a = analyse(data, opts);
  switch (opts.method) {
    case 'auto':
      return auto(data, a, opts);
    case 'steepest':
    case 'minimum':
    case 'valley':
      return emaMethod(opts.method, data, a, opts);
  }
}

// ---------------------------------------------------------------------------------------------
// Input checking
// ---------------------------------------------------------------------------------------------

interface Options {
  readonly method: SuggestMethod;
  readonly minLrDivisor: number;
  readonly minPoints: number;
  readonly beta: number;
  readonly window: number | undefined;
  readonly divergenceFraction: number;
  readonly valleyFraction: number;
  readonly marginDecades: number;
  readonly clearFallSnr: number;
  readonly blowupSigmas: number;
  readonly blowupDecades: number;
  readonly noiseLrScale: number;
}

function checkOptions(options: SuggestOptions): Options {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${NAME}: options must be an object`);
  }
  for (const key of Object.keys(options)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      throw new RangeError(`${NAME}: unknown option '${key}' (allowed: ${OPTION_KEYS.join(', ')})`);
    }
  }
  const num = (key: (typeof OPTION_KEYS)[number], value: unknown, ok: (v: number) => boolean, must: string): number => {
    if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) {
      throw new RangeError(`${NAME}: option '${key}' must be ${must}, got ${String(value)}`);
    }
    return value;
  };
  const method = options.method ?? 'auto';
  if (!METHODS.includes(method)) {
    throw new RangeError(`${NAME}: option 'method' must be one of ${METHODS.map((m) => `'${m}'`).join(' | ')}, got ${String(method)}`);
  }
  const divergenceFraction = num('divergenceFraction', options.divergenceFraction ?? 0.5, (v) => v > 0, 'a number > 0');
  return {
    method,
    minLrDivisor: num('minLrDivisor', options.minLrDivisor ?? 10, (v) => v >= 1, 'a number >= 1'),
    minPoints: num('minPoints', options.minPoints ?? 10, (v) => Number.isInteger(v) && v >= 5, 'an integer >= 5'),
    beta: num('beta', options.beta ?? 0.98, (v) => v >= 0 && v < 1, 'a number in [0, 1)'),
    window:
      options.window === undefined
        ? undefined
        : num('window', options.window, (v) => Number.isInteger(v) && v >= 5 && v % 2 === 1, 'an odd integer >= 5'),
    divergenceFraction,
    valleyFraction: num(
      'valleyFraction',
      options.valleyFraction ?? 0.15,
      (v) => v > 0 && v < divergenceFraction,
      `a number in (0, divergenceFraction = ${divergenceFraction})`,
    ),
    marginDecades: num('marginDecades', options.marginDecades ?? 0.3, (v) => v >= 0, 'a number >= 0'),
    clearFallSnr: num('clearFallSnr', options.clearFallSnr ?? 8, (v) => v >= 0, 'a number >= 0'),
    blowupSigmas: num('blowupSigmas', options.blowupSigmas ?? 4, (v) => v > 0, 'a number > 0'),
    blowupDecades: num('blowupDecades', options.blowupDecades ?? 1, (v) => v >= 0, 'a number >= 0'),
    noiseLrScale: num('noiseLrScale', options.noiseLrScale ?? 0, (v) => v >= 0, 'a number >= 0'),
  };
}

/** The recorded curve up to (not including) the first non-finite loss, in u = log10(lr). */
interface Data {
  readonly lrs: readonly number[];
  readonly u: readonly number[];
  readonly losses: readonly number[];
  /** lr of the first NaN / Infinity loss, or null. */
  readonly badLr: number | null;
}

function prepare(curve: RangeTestCurve, minPoints: number): Data {
  if (typeof curve !== 'object' || curve === null) throw new TypeError(`${NAME}: curve must be an object { lrs, losses }`);
  const { lrs, losses } = curve;
  if (!isArrayLike(lrs) || !isArrayLike(losses)) {
    throw new TypeError(`${NAME}: curve.lrs and curve.losses must be arrays of numbers`);
  }
  if (lrs.length !== losses.length) {
    throw new RangeError(`${NAME}: curve.lrs has ${lrs.length} values but curve.losses has ${losses.length}`);
  }
  if (lrs.length < minPoints) {
    throw new RangeError(`${NAME}: curve too short: ${lrs.length} points, need at least ${minPoints}`);
  }
  for (let i = 0; i < lrs.length; i++) {
    const lr = lrs[i];
    if (typeof lr !== 'number' || !Number.isFinite(lr) || !(lr > 0)) {
      throw new RangeError(`${NAME}: curve.lrs[${i}] must be a finite number > 0, got ${String(lr)}`);
    }
    if (i > 0 && !(lr > lrs[i - 1]!)) {
      throw new RangeError(`${NAME}: curve.lrs must be strictly increasing, but lrs[${i}] = ${lr} <= lrs[${i - 1}] = ${lrs[i - 1]}`);
    }
    if (typeof losses[i] !== 'number') throw new TypeError(`${NAME}: curve.losses[${i}] must be a number, got ${typeof losses[i]}`);
  }
  let end = 0;
  while (end < losses.length && Number.isFinite(losses[end])) end++;
  if (end === 0 && Array.prototype.every.call(losses, (l: number) => !Number.isFinite(l))) {
    throw new RangeError(`${NAME}: every loss is NaN or infinite`);
  }
  if (end < minPoints) {
    throw new RangeError(
      `${NAME}: only ${end} finite losses before the NaN / Infinity at index ${end} (lr ${lrs[end]}); need at least ${minPoints}`,
    );
  }
  const kept = Array.from({ length: end }, (_, i) => lrs[i]!);
  return {
    lrs: kept,
    u: kept.map(Math.log10),
    losses: Array.from({ length: end }, (_, i) => losses[i]!),
    badLr: end < lrs.length ? lrs[end]! : null,
  };
}

function isArrayLike(x: unknown): x is ArrayLike<unknown> {
  return Array.isArray(x) || ArrayBuffer.isView(x);
}

// ---------------------------------------------------------------------------------------------
// Shared analysis: uniform log-lr grid, robust smoothing, levels, divergence
// ---------------------------------------------------------------------------------------------

interface Analysis {
  /** Grid abscissae (log10 lr), uniform with step h. */
  readonly u: number[];
  readonly h: number;
  /** Savitzky–Golay smoothed loss and its slope per decade on the grid. */
  readonly smooth: number[];
  readonly slope: number[];
  readonly iMin: number;
  /** Smoothed minimum, starting level, fall = start - min, and the noise std of the raw losses. */
  readonly min: number;
  readonly start: number;
  readonly fall: number;
  readonly noise: number;
  /** max(fall, 4 * noise): the unit of every level below, so a flat curve does not have levels at 0. */
  readonly scale: number;
  readonly uDiv: number | null;
  readonly divergedBy: 'level' | 'nonfinite' | null;
  /** Where the fall starts (smoothed loss 10% of the way down) and the valley [lo, hi] within valleyFraction of the minimum. */
  readonly uDescent: number;
  readonly uValleyLo: number;
  readonly uValleyHi: number;
  /** Steepest descent of the smoothed curve before its minimum. */
  readonly uSteep: number;
  /**
   * Where the spike-free (median of 5) loss rises blowupSigmas noise stds above its start and
   * stays there (a tenth of the grid), or the first NaN / Infinity; null if neither happens.
   */
  readonly uBlowup: number | null;
}

function analyse(data: Data, opts: Options): Analysis {
  const { u: raw } = data;
  const n = raw.length;
  const g = Math.min(n, MAX_GRID);
  const u0 = raw[0]!;
  const span = raw[n - 1]! - u0;
  const h = span / (g - 1);
  const u = Array.from({ length: g }, (_, k) => (k === g - 1 ? raw[n - 1]! : u0 + k * h));
  const y = resample(raw, data.losses, g);

  // Noise std from second differences (they cancel any locally linear trend): Var(d2) = 6 sigma^2.
  const d2 = y.slice(1, -1).map((v, i) => y[i]! - 2 * v + y[i + 2]!);
  const noise = (1.4826 * mad(d2)) / Math.sqrt(6);

  // Spikes out (median of 5). Then smooth only up to where that curve has clearly diverged: the
  // blow-up is another regime, and a linear smoother run across its near-step rings back into the
  // valley (an order-2 Savitzky–Golay undershoots a unit step by 0.08-0.09). Past the
  // cut the median curve, capped half a fall above the start, stands in for plots.
  const med = medianFilter(y, 5);
  const head = Math.max(3, Math.round(0.05 * g));
  const start0 = median(med.slice(0, head));
  let iMin0 = 0;
  for (let k = 1; k < g; k++) if (med[k]! < med[iMin0]!) iMin0 = k;
  const scale0 = Math.max(start0 - med[iMin0]!, 4 * noise);
  const cap = start0 + 0.5 * scale0;
  let cut = g - 1;
  for (let k = iMin0 + 1; k < g; k++) {
    if (med[k]! > med[iMin0]! + opts.divergenceFraction * scale0) {
      cut = k;
      break;
    }
  }
  const head0 = med.slice(0, Math.max(cut, 1)).map((v) => Math.min(v, cap));
  const fitWindow = Math.min(opts.window ?? Math.max(5, oddRound(0.08 * g)), head0.length % 2 === 1 ? head0.length : head0.length - 1);
  const smooth = fitWindow >= 3 ? savitzkyGolay(head0, { window: fitWindow, order: Math.min(2, fitWindow - 1) }) : [...head0];
  const slope =
    fitWindow >= 3
      ? savitzkyGolay(head0, { window: fitWindow, order: Math.min(2, fitWindow - 1), derivative: 1, delta: h })
      : head0.map((v, k) => (k > 0 ? (v - head0[k - 1]!) / h : 0));
  for (let k = head0.length; k < g; k++) {
    smooth.push(Math.min(med[k]!, cap));
    slope.push((smooth[k]! - smooth[k - 1]!) / h);
  }

  // The minimum is looked for before the cut only: a ragged blow-up can dip low again after it.
  let iMin = 0;
  for (let k = 1; k < head0.length; k++) if (smooth[k]! < smooth[iMin]!) iMin = k;
  const min = smooth[iMin]!;
  const start = median(smooth.slice(0, head));
  const fall = start - min;
  const scale = Math.max(fall, 4 * noise);

  // A crossing counts only if the smoothed loss stays above the level for half a window: a bump
  // that comes straight back is noise the smoother let through, not the end of the valley.
  const persist = Math.max(2, Math.ceil(fitWindow / 2));
  let uDiv: number | null = upCrossing(u, smooth, iMin, min + opts.divergenceFraction * scale, persist);
  let divergedBy: Analysis['divergedBy'] = uDiv === null ? null : 'level';
  if (uDiv === null && data.badLr !== null) {
    uDiv = Math.log10(data.badLr);
    divergedBy = 'nonfinite';
  }
  const valleyLevel = min + opts.valleyFraction * scale;
  const uValleyHi = upCrossing(u, smooth, iMin, valleyLevel, persist) ?? u[g - 1]!;
  const uValleyLo = downCrossingBefore(u, smooth, iMin, valleyLevel) ?? u[0]!;
  const uDescent = firstBelow(u, smooth, start - 0.1 * scale) ?? u[iMin]!;
  let iSteep = 0;
  for (let k = 1; k <= iMin; k++) if (slope[k]! < slope[iSteep]!) iSteep = k;
  // The blow-up is read on the median curve, not the Savitzky–Golay one (which stops at the cut),
  // from the start of the sweep: on a curve that never falls clearly there is no minimum to start from.
  const blowLevel = upCrossing(u, med, 0, start0 + opts.blowupSigmas * noise, Math.max(3, Math.round(0.1 * g)));
  const uBlowup = blowLevel ?? (data.badLr === null ? null : Math.log10(data.badLr));
  if (!(fall >= opts.clearFallSnr * noise)) {
    // no clear fall: a level "half a fall above the minimum" is a few noise stds, which any bump
    // crosses; the curve's divergence is its blow-up
    uDiv = uBlowup;
    divergedBy = blowLevel !== null ? 'level' : uBlowup !== null ? 'nonfinite' : null;
  }
  return {
    u,
    h,
    smooth,
    slope,
    iMin,
    min,
    start,
    fall,
    noise,
    scale,
    uDiv,
    divergedBy,
    uDescent,
    uValleyLo,
    uValleyHi,
    uSteep: u[iSteep]!,
    uBlowup,
  };
}

/**
 * Losses onto g points uniform in log lr: the median of the recorded points nearest each grid point,
 * linear interpolation where none is (the sparse low end of a linear sweep).
 */
function resample(u: readonly number[], losses: readonly number[], g: number): number[] {
  const n = u.length;
  const u0 = u[0]!;
  const span = u[n - 1]! - u0;
  const bins: number[][] = Array.from({ length: g }, () => []);
  for (let i = 0; i < n; i++) {
    const k = i === n - 1 ? g - 1 : Math.min(g - 1, Math.round(((u[i]! - u0) / span) * (g - 1)));
    bins[k]!.push(losses[i]!);
  }
  const out = bins.map((b) => (b.length > 0 ? median(b) : Number.NaN));
  let left = 0;
  for (let k = 1; k < g; k++) {
    if (Number.isNaN(out[k]!)) continue;
    for (let j = left + 1; j < k; j++) out[j] = out[left]! + ((out[k]! - out[left]!) * (j - left)) / (k - left);
    left = k;
  }
  return out;
}

function mad(xs: readonly number[]): number {
  const m = median(xs);
  return median(xs.map((x) => Math.abs(x - m)));
}

function oddRound(x: number): number {
  const r = Math.round(x);
  return r % 2 === 1 ? r : r + 1;
}

/** First u after index `from` where y rises above `level` and stays above it for `persist` points (or to the end), interpolated; null if never. */
function upCrossing(u: readonly number[], y: readonly number[], from: number, level: number, persist: number): number | null {
  for (let k = from + 1; k < y.length; k++) {
    if (!(y[k]! > level)) continue;
    let held = true;
    for (let j = k + 1; j < Math.min(y.length, k + persist); j++) if (!(y[j]! > level)) held = false;
    if (!held) continue;
    const a = y[k - 1]!;
    const t = a >= level ? 0 : (level - a) / (y[k]! - a);
    return u[k - 1]! + t * (u[k]! - u[k - 1]!);
  }
  return null;
}

/** Last u before index `to` where y comes down to `level` (scanning left from `to`); null if y stays at or below it. */
function downCrossingBefore(u: readonly number[], y: readonly number[], to: number, level: number): number | null {
  for (let k = to - 1; k >= 0; k--) {
    if (y[k]! > level) {
      const b = y[k + 1]!;
      const t = b >= level ? 1 : (y[k]! - level) / (y[k]! - b);
      return u[k]! + t * (u[k + 1]! - u[k]!);
    }
  }
  return null;
}

/** First u where y falls to `level` or below, interpolated; null if never. */
function firstBelow(u: readonly number[], y: readonly number[], level: number): number | null {
  if (y[0]! <= level) return u[0]!;
  for (let k = 1; k < y.length; k++) {
    if (y[k]! <= level) {
      const a = y[k - 1]!;
      const t = (a - level) / (a - y[k]!);
      return u[k - 1]! + t * (u[k]! - u[k - 1]!);
    }
  }
  return null;
}

/**
 * How much the curve says, in [0, 1]: the fall against the noise (nothing below 3 noise stds, full
 * credit from 15), times 0.7 when the sweep never diverged (the max lr might be higher), times the
 * resolution of the descent-to-answer stretch (full from 10 grid points).
 */
function confidenceOf(a: Analysis, uAnswer: number): number {
  const snr = a.noise > 0 ? a.fall / a.noise : a.fall > 0 ? Number.POSITIVE_INFINITY : 0;
  const fSnr = clamp01((snr - 3) / 12);
  const fDiv = a.uDiv === null ? 0.7 : 1;
  const fRes = clamp01((uAnswer - a.uDescent) / a.h / 10);
  return fSnr * fDiv * Math.max(fRes, 0.2);
}

const clamp01 = (x: number): number => (x < 0 ? 0 : x > 1 ? 1 : Number.isFinite(x) ? x : 1);

// ---------------------------------------------------------------------------------------------
// auto
// ---------------------------------------------------------------------------------------------

function auto(data: Data, a: Analysis, opts: Options): LrSuggestion {
  if (!(a.fall >= opts.clearFallSnr * a.noise)) return autoFromBlowup(data, a, opts);
  let uAnswer = a.uValleyHi;
  let limitedBy: 'valley' | 'margin' | 'start' = 'valley';
  if (a.uDiv !== null && a.uDiv - opts.marginDecades < uAnswer) {
    uAnswer = a.uDiv - opts.marginDecades;
    limitedBy = 'margin';
  }
  if (uAnswer < a.u[0]!) {
    uAnswer = a.u[0]!;
    limitedBy = 'start';
  }
  const cap = noiseCap(a, opts);
  let cappedByNoise = false;
  if (cap !== null && uAnswer > Math.log10(cap)) {
    uAnswer = Math.log10(cap);
    cappedByNoise = true;
  }
  const maxLr = clampLr(10 ** uAnswer, data);
  let confidence = confidenceOf(a, uAnswer);
  // Divergence so close behind the descent that the answer lands before the steepest point.
  if (limitedBy !== 'valley' && uAnswer < a.uSteep) confidence *= 0.6;

  const parts: string[] = [describeFall(a)];
  if (a.fall > 3 * a.noise) {
    parts.push(`stays within ${pct(opts.valleyFraction)} of that fall up to ${formatLr(10 ** a.uValleyHi)}`);
  }
  parts.push(describeDivergence(a, data));
  let choice = `chose ${formatLr(maxLr)}`;
  if (a.uDiv !== null) choice += `, ${(a.uDiv - Math.log10(maxLr)).toFixed(2)} decades before divergence`;
  if (limitedBy === 'margin') choice += ` (kept ${opts.marginDecades} decades clear of it)`;
  if (limitedBy === 'start') choice += ' (the first lr of the sweep: start the next sweep lower)';
  if (limitedBy === 'valley' && a.uDiv === null && a.iMin >= a.u.length - 2 && !cappedByNoise) choice += ' (the loss was still falling: sweep further)';
  if (cappedByNoise) choice += ` (${describeNoiseCap(a, opts)})`;
  return finish('auto', maxLr, confidence, `${parts.join('; ')}; ${choice}`, a, opts, {
    lrs: a.u.map((v) => 10 ** v),
    losses: a.smooth,
  });
}

/**
 * auto on a curve whose fall is lost in the noise (what a one-epoch sweep of a real network
 * records: see docs/lr-suggestion.md): no valley can be read, but where the loss blows up can,
 * and from seed to seed it moves far less than the minimum does. The answer is a fixed number of
 * decades below it (or the noise cap, when that is lower), fitted against grids of One Cycle runs
 * (test/fixtures/lr-grid). A sweep that never blows up gives a bound: its end stands in for the
 * blow-up.
 */
function autoFromBlowup(data: Data, a: Analysis, opts: Options): LrSuggestion {
  const uEnd = a.u[a.u.length - 1]!;
  const uBlow = a.uBlowup ?? uEnd;
  const fromBlowup = 10 ** (uBlow - opts.blowupDecades);
  const cap = noiseCap(a, opts);
  const cappedByNoise = cap !== null && cap < fromBlowup;
  const maxLr = clampLr(cappedByNoise ? cap : fromBlowup, data);
  const blowText =
    a.uBlowup === null
      ? `it never blows up within the sweep (to ${formatLr(10 ** uEnd)}): the sweep's end stands in for the blow-up, so the usable lr may be higher`
      : `it blows up (${opts.blowupSigmas} noise stds above its start, to stay) at ${formatLr(10 ** a.uBlowup)}`;
  const below = `${opts.blowupDecades} decade${opts.blowupDecades === 1 ? '' : 's'} below`;
  const choice = cappedByNoise
    ? `${below} is ${formatLr(fromBlowup)}; chose ${formatLr(maxLr)} (${describeNoiseCap(a, opts)})`
    : `chose ${formatLr(maxLr)}, ${below}`;
  const reason = `${describeFall(a)}, too little to read a valley from; ${blowText}; ${choice}`;
  // the fall says little here; what is known is the blow-up, which a sweep that never reaches it does not show
  const confidence = Math.min(confidenceOf(a, Math.log10(maxLr)), a.uBlowup === null ? 0.1 : 0.3);
  return finish('auto', maxLr, confidence, reason, a, opts, { lrs: a.u.map((v) => 10 ** v), losses: a.smooth });
}

// ---------------------------------------------------------------------------------------------
// steepest / minimum / valley on the EMA-smoothed losses
// ---------------------------------------------------------------------------------------------

function emaMethod(method: 'steepest' | 'minimum' | 'valley', data: Data, a: Analysis, opts: Options): LrSuggestion {
  // The usable stretch: recorded points before the divergence point (at least 3).
  let end = data.u.length;
  if (a.uDiv !== null) {
    while (end > 3 && data.u[end - 1]! >= a.uDiv) end--;
  }
  const u = data.u.slice(0, end);
  const lrs = data.lrs.slice(0, end);
  const ema = emaSmooth(data.losses.slice(0, end), opts.beta);
  const smoothing = opts.beta > 0 ? `EMA-smoothed (beta ${opts.beta})` : 'raw';
  let iMin = 0;
  for (let i = 1; i < end; i++) if (ema[i]! < ema[iMin]!) iMin = i;

  let maxLr: number;
  let why: string;
  if (method === 'steepest') {
    // Forward differences per decade up to the minimum (the whole stretch if it never falls); the
    // answer is the segment's geometric midpoint, where the difference estimates the derivative.
    const last = iMin > 0 ? iMin : end - 1;
    let best = 0;
    let bestSlope = Number.POSITIVE_INFINITY;
    for (let i = 0; i < last; i++) {
      const s = (ema[i + 1]! - ema[i]!) / (u[i + 1]! - u[i]!);
      if (s < bestSlope) {
        bestSlope = s;
        best = i;
      }
    }
    maxLr = 10 ** ((u[best]! + u[best + 1]!) / 2);
    why = `${smoothing} loss falls fastest (${formatNumber(bestSlope)} per decade) at ${formatLr(maxLr)}`;
  } else if (method === 'minimum') {
    maxLr = lrs[iMin]! / 10;
    why = `${smoothing} loss is lowest (${formatNumber(ema[iMin]!)}) at ${formatLr(lrs[iMin]!)}; a tenth of that is ${formatLr(maxLr)}`;
  } else {
    const v = valleyIndex(ema);
    maxLr = lrs[v.index]!;
    why =
      `longest decreasing run of the ${smoothing} loss has ${v.length} points, ending at ${formatLr(lrs[v.end]!)}; ` +
      `fastai's valley rule picks ${formatLr(maxLr)}, about halfway along it`;
  }
  maxLr = clampLr(maxLr, data);
  if (a.uDiv !== null) maxLr = Math.min(maxLr, 10 ** a.uDiv);
  const reason = `${why}; ${describeDivergence(a, data)}`;
  return finish(method, maxLr, confidenceOf(a, Math.log10(maxLr)), reason, a, opts, { lrs, losses: ema });
}

/**
 * fastai's `valley` (fastai/callback/schedule.py), restated. lds[i] is the length of the longest
 * strictly decreasing subsequence ending at i (O(n^2) dynamic programme: lds[i] = 1 + max lds[j]
 * over j < i with loss[j] > loss[i]). The valley ends at the first i with the largest lds and is
 * taken to start lds[end] points earlier, as if the subsequence were contiguous; with
 * L = lds[end] the pick is start + floor(L / 3) + floor(L / 6), about halfway along (it is often
 * described as two thirds; the arithmetic gives a half). fastai's start is one before the first
 * point of a contiguous run, and for L = 2 from index 0 its index -1 wraps to the last lr in Python;
 * here it is clamped to 0.
 */
export function valleyIndex(losses: readonly number[]): { index: number; start: number; end: number; length: number } {
  const n = losses.length;
  const lds = new Array<number>(n).fill(1);
  let end = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) if (losses[i]! < losses[j]! && lds[j]! + 1 > lds[i]!) lds[i] = lds[j]! + 1;
    if (lds[i]! > lds[end]!) end = i;
  }
  const length = lds[end]!;
  const start = end - length;
  const index = Math.min(end, Math.max(0, start + Math.floor(length / 3) + Math.floor(length / 6)));
  return { index, start: Math.max(0, start), end, length };
}

// ---------------------------------------------------------------------------------------------
// Shared wording and result
// ---------------------------------------------------------------------------------------------

/**
 * The noise-limited lr, noiseLrScale / noise²: the batch-loss variance is the per-example
 * variance over the batch size, so the cap grows linearly with the batch (the linear scaling
 * rule's regime, where gradient noise and not curvature limits the step; McCandlish et al.,
 * arXiv:1812.06162). Null when turned off or when the curve has no measurable noise.
 */
function noiseCap(a: Analysis, opts: Options): number | null {
  return opts.noiseLrScale > 0 && a.noise > 0 ? opts.noiseLrScale / a.noise ** 2 : null;
}

function describeNoiseCap(a: Analysis, opts: Options): string {
  return `the batch noise, std ${formatNumber(a.noise)}, limits it to ${opts.noiseLrScale} / std² = ${formatLr(noiseCap(a, opts)!)}`;
}

function finish(
  method: SuggestMethod,
  maxLr: number,
  confidence: number,
  reason: string,
  a: Analysis,
  opts: Options,
  smoothed: LrSuggestion['smoothed'],
): LrSuggestion {
  return {
    maxLr,
    minLr: maxLr / opts.minLrDivisor,
    method,
    confidence: Math.round(clamp01(confidence) * 1000) / 1000,
    reason,
    divergenceLr: a.uDiv === null ? null : 10 ** a.uDiv,
    noise: a.noise,
    smoothed,
  };
}

/** Round-off in 10 ** log10(lr) must not push an answer outside the recorded lrs. */
function clampLr(lr: number, data: Data): number {
  return Math.min(Math.max(lr, data.lrs[0]! / 10), data.lrs[data.lrs.length - 1]!);
}

function describeFall(a: Analysis): string {
  if (!(a.fall > 3 * a.noise)) {
    return `the smoothed loss never falls clearly below its starting level (fall ${formatNumber(a.fall)}, noise ${formatNumber(a.noise)})`;
  }
  const relative = a.start > 0 && a.min >= 0 ? ` ${pct(a.fall / a.start)}` : '';
  return (
    `smoothed loss falls${relative} (${formatNumber(a.start)} -> ${formatNumber(a.min)}) ` +
    `between ${formatLr(10 ** a.uDescent)} and ${formatLr(10 ** a.uValleyLo)}`
  );
}

function describeDivergence(a: Analysis, data: Data): string {
  const nonFinite = data.badLr === null ? '' : `NaN / Infinity from ${formatLr(data.badLr)}`;
  if (a.divergedBy === 'level') return `diverges at ${formatLr(10 ** a.uDiv!)}${nonFinite ? ` (${nonFinite})` : ''}`;
  if (a.divergedBy === 'nonfinite') return `diverges: ${nonFinite}`;
  return `no divergence within the sweep (it ends at ${formatLr(data.lrs[data.lrs.length - 1]!)}): the usable lr may be higher`;
}

const pct = (x: number): string => `${Math.round(100 * x)}%`;

/** Three significant digits; exponent form outside [1e-3, 1e4). */
export function formatLr(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const ax = Math.abs(x);
  if (ax !== 0 && (ax < 1e-3 || ax >= 1e4)) {
    const [m, e] = x.toExponential(2).split('e');
    return `${trimZeros(m!)}e${Number(e)}`;
  }
  return trimZeros(x.toPrecision(3));
}

export function formatNumber(x: number): string {
  return formatLr(x);
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}
