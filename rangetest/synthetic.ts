/**
 * Synthetic LR range-test curves with a known truth, for tests and for the method comparison in
 * docs/lr-suggestion.md. In u = log10(lr) the noise-free loss is
 *
 *   L(u) = floor + R * (1 - sigmoid((u - descentCentre) / descentWidth))     plateau -> descent -> valley
 *        + R * 0.01 * exp((u - blowupStart) / blowupWidth)                  blow-up (1% of R at blowupStart)
 *
 * with R = plateau - floor. Observed losses add Gaussian noise of std noise * R (minibatch noise),
 * an upward ragged part noise * R * min(exp((u - blowupStart) / blowupWidth), 20) * |N(0, 1)|
 * (near divergence steps overshoot, so losses jump up, not below the valley), optional rare upward
 * spikes, and turn into `nanValue` for good once L passes plateau + nanAbove * R (the weights
 * have overflowed).
 */

export interface SyntheticCurveSpec {
  readonly steps: number;
  /** log10 of the first and last lr. */
  readonly startExp: number;
  readonly endExp: number;
  /** Default 'exp' (fastai / Smith); 'linear' spaces lrs evenly. */
  readonly spacing?: 'exp' | 'linear';
  readonly plateau: number;
  readonly floor: number;
  /** Decades (log10 lr). */
  readonly descentCentre: number;
  readonly descentWidth: number;
  readonly blowupStart: number;
  readonly blowupWidth: number;
  /** Noise std as a fraction of R = plateau - floor. */
  readonly noise: number;
  /** Probability per step of a spike of +R * U(0.5, 2). Default 0. */
  readonly spikes?: number;
  /** Losses become nanValue once L > plateau + nanAbove * R. Default 20; Infinity never. */
  readonly nanAbove?: number;
  readonly nanValue?: number;
  readonly seed: number;
}

export interface SyntheticCurve {
  readonly lrs: number[];
  readonly losses: number[];
  /** Noise-free loss at an lr. */
  readonly trueLoss: (lr: number) => number;
  /** First lr past the valley where the noise-free loss is back up to floor + 0.5 R (Infinity if never). */
  readonly divergenceLr: number;
  /** Fraction of the possible fall, (plateau - L(lr)) / R, that the noise-free loss has achieved at lr. */
  readonly fallAchieved: (lr: number) => number;
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

export function trueLoss(spec: SyntheticCurveSpec, u: number): number {
  const r = spec.plateau - spec.floor;
  return (
    spec.floor +
    r * (1 - sigmoid((u - spec.descentCentre) / spec.descentWidth)) +
    r * 0.01 * Math.exp((u - spec.blowupStart) / spec.blowupWidth)
  );
}

/** mulberry32: small, seedable, good enough for test noise. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export function syntheticCurve(spec: SyntheticCurveSpec): SyntheticCurve {
  const { steps, startExp, endExp } = spec;
  const r = spec.plateau - spec.floor;
  const nanAbove = spec.nanAbove ?? 20;
  const nanValue = spec.nanValue ?? Number.NaN;
  const rand = prng(spec.seed);
  const normal = gaussian(rand);
  const lo = 10 ** startExp;
  const hi = 10 ** endExp;
  const lrs = Array.from({ length: steps }, (_, i) =>
    spec.spacing === 'linear' ? lo + ((hi - lo) * i) / (steps - 1) : 10 ** (startExp + ((endExp - startExp) * i) / (steps - 1)),
  );
  const losses: number[] = [];
  let dead = false;
  for (const lr of lrs) {
    const u = Math.log10(lr);
    const clean = trueLoss(spec, u);
    if (dead || clean > spec.plateau + nanAbove * r) {
      dead = true;
      losses.push(nanValue);
      continue;
    }
    const ragged = Math.min(Math.exp((u - spec.blowupStart) / spec.blowupWidth), 20);
    let y = clean + spec.noise * r * (normal() + ragged * Math.abs(normal()));
    if ((spec.spikes ?? 0) > 0 && rand() < spec.spikes!) y += r * (0.5 + 1.5 * rand());
    losses.push(y);
  }
  // Divergence: first point past the valley's bottom where L >= floor + 0.5 R, on a fine grid.
  let divergenceLr = Number.POSITIVE_INFINITY;
  let bottom = Number.POSITIVE_INFINITY;
  const fine = 20000;
  const span = Math.max(endExp, spec.blowupStart + 10 * spec.blowupWidth) - startExp;
  for (let k = 0, prev = Number.POSITIVE_INFINITY; k <= fine; k++) {
    const u = startExp + (span * k) / fine;
    const l = trueLoss(spec, u);
    bottom = Math.min(bottom, l);
    if (l > prev && l >= spec.floor + 0.5 * r && bottom < spec.floor + 0.5 * r) {
      divergenceLr = 10 ** u;
      break;
    }
    prev = l;
  }
  return {
    lrs,
    losses,
    trueLoss: (lr) => trueLoss(spec, Math.log10(lr)),
    divergenceLr,
    fallAchieved: (lr) => (spec.plateau - trueLoss(spec, Math.log10(lr))) / r,
  };
}
