/**
 * Interpolation between two endpoints as a fraction goes 0 -> 1, used by every phase-based
 * builder except the library-reproducing presets (those copy the libraries' float formulas).
 *
 * Guarantees: frac <= 0 gives exactly `from`, frac >= 1 gives exactly `to`, and the result never
 * leaves [min(from,to), max(from,to)]. `from + (to - from) * w` alone can overshoot `to` by an
 * ulp at w = 1 (and so break monotonicity next to it); returning the endpoint and clamping avoids
 * that (the same trick as C++20 std::lerp).
 */
export type InterpolationKind = 'linear' | 'cos' | 'exp';

export function interpolate(kind: InterpolationKind, from: number, to: number, frac: number): number {
  if (frac <= 0) return from;
  if (frac >= 1) return to;
  let v: number;
  switch (kind) {
    case 'linear':
      v = from + (to - from) * frac;
      break;
    case 'cos':
      // Cosine annealing (Loshchilov & Hutter, SGDR): weight (1 - cos(pi f)) / 2.
      v = from + (to - from) * ((1 - Math.cos(Math.PI * frac)) / 2);
      break;
    case 'exp':
      // Geometric interpolation; callers guarantee from, to > 0.
      v = from * Math.pow(to / from, frac);
      break;
  }
  const lo = from < to ? from : to;
  const hi = from < to ? to : from;
  return v < lo ? lo : v > hi ? hi : v;
}
