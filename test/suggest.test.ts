// LR suggestions from a range test (rangetest/suggest.ts) and the smoothing helpers they use.
// Known answers come from hand-made curves whose right answer follows from their formula; the
// robustness properties run on synthetic plateau -> descent -> valley -> blow-up curves
// (rangetest/synthetic.ts) with random positions, widths and noise.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { suggestLr, valleyIndex, formatLr, type RangeTestCurve, type SuggestMethod } from '../rangetest/suggest.ts';
import { emaSmooth, median, medianFilter, savitzkyGolay, sgWeights } from '../rangetest/smooth.ts';
import { gaussian, prng, syntheticCurve, type SyntheticCurveSpec } from '../rangetest/synthetic.ts';
import { compare } from '../rangetest/compareMethods.ts';

// Fixed seed so a run is reproducible: a property on noisy curves has rare tails (about 1 in 1500
// curves moves 0.1 decade under the extra noise, when a flat stretch sits right at a level). Soak
// with e.g. FC_RUNS=2000 FC_SEED=$RANDOM.
const RUNS = { numRuns: Number(process.env.FC_RUNS ?? 40), seed: Number(process.env.FC_SEED ?? 20240601) };
const METHODS: readonly SuggestMethod[] = ['auto', 'steepest', 'minimum', 'valley'];

function assertClose(actual: number, expected: number, rel: number, what = ''): void {
  assert.ok(Number.isFinite(actual), `${what} not finite: ${actual}`);
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected) + 1e-12, `${what}: expected ${expected}, got ${actual} (rel tol ${rel})`);
}

const decades = (a: number, b: number): number => Math.abs(Math.log10(a / b));

/** An exponential sweep of `n` lrs from 10^lo to 10^hi and a loss given as a function of u = log10(lr). */
function sweep(n: number, lo: number, hi: number, loss: (u: number) => number): { lrs: number[]; losses: number[] } {
  const us = Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
  return { lrs: us.map((u) => 10 ** u), losses: us.map(loss) };
}

/** Plateau -> descent -> valley -> blow-up with everything random within realistic ranges; the blow-up always lies inside the sweep. */
const specArb: fc.Arbitrary<SyntheticCurveSpec> = fc
  .record({
    steps: fc.integer({ min: 60, max: 300 }),
    startExp: fc.double({ min: -8, max: -4, noNaN: true }),
    span: fc.double({ min: 5, max: 9, noNaN: true }),
    descentAt: fc.double({ min: 0.15, max: 0.4, noNaN: true }),
    descentWidth: fc.double({ min: 0.08, max: 0.5, noNaN: true }),
    valleyWidth: fc.double({ min: 0.8, max: 2.5, noNaN: true }),
    blowupWidth: fc.double({ min: 0.05, max: 0.3, noNaN: true }),
    plateau: fc.double({ min: 0.5, max: 8, noNaN: true }),
    floorFraction: fc.double({ min: 0.02, max: 0.7, noNaN: true }),
    // Not 0: on an exactly flat stretch float rounding decides fastai's strict comparisons, so valley's
    // answer would move when the loss is shifted. Real losses are never exactly flat.
    noise: fc.double({ min: 0.001, max: 0.04, noNaN: true }),
    infinite: fc.boolean(),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  })
  .map((r) => {
    const descentCentre = r.startExp + r.descentAt * r.span;
    const endExp = r.startExp + r.span;
    // Keep the point where the blow-up reaches half the fall (about 4 widths in) well inside the sweep.
    const blowupStart = Math.min(descentCentre + 3 * r.descentWidth + r.valleyWidth, endExp - 4 * r.blowupWidth - 0.5);
    return {
      steps: r.steps,
      startExp: r.startExp,
      endExp,
      plateau: r.plateau,
      floor: r.plateau * r.floorFraction,
      descentCentre,
      descentWidth: r.descentWidth,
      blowupStart,
      blowupWidth: r.blowupWidth,
      noise: r.noise,
      nanValue: r.infinite ? Number.POSITIVE_INFINITY : Number.NaN,
      seed: r.seed,
    };
  });

describe('smoothing helpers', () => {
  test('emaSmooth is the debiased EMA: constants stay constant, hand-computed values', () => {
    emaSmooth([3, 3, 3, 3]).forEach((v, i) => assertClose(v, 3, 1e-14, `constant[${i}]`)); // debiasing: no warm-up bias
    // beta 0.5: avg = 0.5, 1.25, 0.625 ; debias 1 - 0.5^k = 0.5, 0.75, 0.875.
    const out = emaSmooth([1, 2, 0], 0.5);
    [1, 1.25 / 0.75, 0.625 / 0.875].forEach((e, i) => assertClose(out[i]!, e, 1e-15, `ema[${i}]`));
    assert.deepEqual(emaSmooth([1, 5, 2], 0), [1, 5, 2]);
    assert.throws(() => emaSmooth([1], 1), /beta/);
  });

  test('savitzkyGolay: the textbook 5-point quadratic weights, exact on quadratics (values, slopes, edges)', () => {
    // Savitzky & Golay (1964) table I / scipy.signal.savgol_coeffs(5, 2): [-3, 12, 17, 12, -3] / 35.
    [-3, 12, 17, 12, -3].forEach((w, j) => assertClose(sgWeights(5, 2, 0, 0)[j]!, w / 35, 1e-12, `w[${j}]`));
    // First derivative, savgol_coeffs(5, 2, deriv=1) reversed to correlation order: [-2, -1, 0, 1, 2] / 10.
    [-2, -1, 0, 1, 2].forEach((w, j) => assertClose(sgWeights(5, 2, 0, 1)[j]!, w / 10, 1e-12, `d[${j}]`));
    const xs = Array.from({ length: 30 }, (_, i) => 0.1 * i);
    const q = xs.map((x) => 2 - 3 * x + 0.7 * x * x);
    const s = savitzkyGolay(q, { window: 9 });
    const d = savitzkyGolay(q, { window: 9, derivative: 1, delta: 0.1 });
    xs.forEach((x, i) => {
      assertClose(s[i]!, q[i]!, 1e-10, `value at ${i}`);
      assertClose(d[i]!, -3 + 1.4 * x, 1e-9, `slope at ${i}`);
    });
    assert.throws(() => savitzkyGolay([1, 2, 3], { window: 5 }), /longer than/);
    assert.throws(() => savitzkyGolay([1, 2, 3, 4, 5, 6], { window: 4 }), /odd/);
    assert.throws(() => savitzkyGolay([1, 2, Number.NaN, 4, 5], { window: 5 }), /not finite/);
  });

  test('medianFilter removes an isolated spike and keeps monotone data', () => {
    assert.deepEqual(medianFilter([1, 1, 9, 1, 1], 3), [1, 1, 1, 1, 1]);
    assert.deepEqual(medianFilter([1, 2, 3, 4, 5, 6], 5), [1, 2, 3, 4, 5, 6]);
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });
});

describe('suggestLr: each method on curves with a known answer', () => {
  test('steepest: tanh descent centred at 1e-3 is found per decade, on exponential and linear sweeps', () => {
    const tanhLoss = (u: number): number => 1 - 0.8 * Math.tanh((u + 3) / 0.4);
    const exp = sweep(200, -6, -1, tanhLoss);
    const r = suggestLr(exp, { method: 'steepest', beta: 0 });
    assert.ok(decades(r.maxLr, 1e-3) <= 0.03, `exp sweep: ${r.maxLr}`);
    assertClose(r.minLr, r.maxLr / 10, 1e-12);

    // Linear sweep: lrs evenly spaced, so the slope per *index* (pytorch-lr-finder, Lightning)
    // is the slope per lr, steepest where the points are densest in log lr, not at the centre.
    const lrs = Array.from({ length: 400 }, (_, i) => 1e-5 + ((1e-2 - 1e-5) * i) / 399);
    const lin = { lrs, losses: lrs.map((lr) => tanhLoss(Math.log10(lr))) };
    const rl = suggestLr(lin, { method: 'steepest', beta: 0 });
    assert.ok(decades(rl.maxLr, 1e-3) <= 0.03, `linear sweep: ${rl.maxLr}`);
    let perIndex = 1;
    for (let i = 1; i < lrs.length; i++) if (lin.losses[i]! - lin.losses[i - 1]! < lin.losses[perIndex]! - lin.losses[perIndex - 1]!) perIndex = i;
    assert.ok(decades(lrs[perIndex]!, 1e-3) > 0.15, `per-index steepest is off the centre: ${lrs[perIndex]}`);
  });

  test('minimum: a parabola in log lr with its bottom at 0.1 gives 0.01', () => {
    const r = suggestLr(sweep(121, -5, 1, (u) => 1 + (u + 1) ** 2), { method: 'minimum', beta: 0 });
    assertClose(r.maxLr, 0.01, 1e-9, 'maxLr');
    assertClose(r.minLr, 0.001, 1e-9, 'minLr');
  });

  test('valleyIndex follows fastai: longest decreasing subsequence, start = end - L, pick start + floor(L/3) + floor(L/6)', () => {
    // Contiguous run from index 3 to 12 (L = 10): start = 2, pick 2 + 3 + 1 = 6.
    const a = [5, 6, 7, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1.5, 3, 9, 20];
    assert.deepEqual(valleyIndex(a), { index: 6, start: 2, end: 12, length: 10 });
    // Not contiguous: 9 > 8 > 6 > 5 > 4 (index 5 is a bump) gives L = 5 ending at 6; start 1, pick 1 + 1 + 0 = 2.
    assert.deepEqual(valleyIndex([1, 9, 8, 6, 7, 5, 4, 8]).index, 2);
    // fastai's index -1 (a two-point valley from index 0) is clamped to 0 instead of wrapping to the end.
    assert.deepEqual(valleyIndex([2, 1, 3, 4, 5]).index, 0);
    const r = suggestLr({ lrs: a.map((_, i) => 10 ** (-4 + 0.2 * i)), losses: a }, { method: 'valley', beta: 0, minPoints: 5 });
    assertClose(r.maxLr, 10 ** (-4 + 0.2 * 6), 1e-9, 'valley lr');
  });

  test('auto: piecewise-linear curve, answer set by the margin below the divergence level', () => {
    // Plateau 2 until u = -4, down to 0.5 at u = -2, flat to u = -1, up 4.5 per decade to 5 at u = 0, then NaN.
    // fall 1.5: valley level 0.5 + 0.15 * 1.5 crossed at u = -0.95, divergence level 0.5 + 0.75 at
    // u = -1 + 0.75 / 4.5 = -0.833, so the answer is the margin: -0.833 - 0.3 = -1.133. (Savitzky–Golay
    // undershoots by 2% of the fall just before the kink at u = -1, so the minimum reads 0.467: a 77% fall.)
    const loss = (u: number): number => (u < -4 ? 2 : u < -2 ? 2 - 0.75 * (u + 4) : u < -1 ? 0.5 : u <= 0 ? 0.5 + 4.5 * (u + 1) : Number.NaN);
    const r = suggestLr(sweep(141, -6, 1, loss));
    assert.equal(r.method, 'auto');
    assert.ok(decades(r.divergenceLr!, 10 ** (-1 + 0.75 / 4.5)) < 0.05, `divergence ${r.divergenceLr}`);
    assert.ok(decades(r.maxLr, 10 ** (-1 + 0.75 / 4.5 - 0.3)) < 0.05, `maxLr ${r.maxLr}`);
    assert.ok(r.confidence > 0.9, `confidence ${r.confidence}`);
    assert.match(r.reason, /falls 77% .*diverges at .*chose .*decades before divergence/);
  });

  test('auto: a broad valley ending well before divergence gives its right edge', () => {
    // Floor 0.2 from u = -3 to u = -0.5, then a slow rise of 0.4 per decade: valley level 0.2 + 0.15 * 1.8
    // crossed at u = -0.5 + 0.27 / 0.4 = 0.175, divergence (0.2 + 0.9) at u = 1.75: the valley edge wins.
    const loss = (u: number): number => (u < -5 ? 2 : u < -3 ? 2 - 0.9 * (u + 5) : u < -0.5 ? 0.2 : 0.2 + 0.4 * (u + 0.5));
    const r = suggestLr(sweep(181, -7, 2, loss));
    assert.ok(decades(r.maxLr, 10 ** 0.175) < 0.05, `maxLr ${r.maxLr}`);
    assert.ok(decades(r.divergenceLr!, 10 ** 1.75) < 0.05, `divergence ${r.divergenceLr}`);
  });

  test('auto: a sweep that never diverges picks its end, with lower confidence and a hint', () => {
    const r = suggestLr(sweep(100, -6, -2, (u) => 1 - 0.8 * Math.tanh((u + 4) / 0.5)));
    assert.equal(r.divergenceLr, null);
    assert.ok(decades(r.maxLr, 1e-2) < 0.01);
    assert.ok(r.confidence <= 0.7, `confidence ${r.confidence}`);
    assert.match(r.reason, /no divergence/);
  });

  test('auto: a flat noisy curve has confidence 0 and says so', () => {
    const rand = prng(7);
    const r = suggestLr(sweep(80, -6, 0, () => 2 + 0.01 * (2 * rand() - 1)));
    assert.equal(r.confidence, 0);
    assert.match(r.reason, /never falls clearly/);
  });

  test('NaN and Infinity tails cut the curve; the answer lies before them', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const c = sweep(60, -5, 0, (u) => (u < -1 ? 1 - 0.5 * Math.tanh((u + 3) / 0.3) : bad));
      for (const method of METHODS) {
        const r = suggestLr(c, { method });
        assert.ok(r.maxLr < 0.1 && r.divergenceLr !== null && r.maxLr <= r.divergenceLr, `${method} with ${bad}: ${r.maxLr}`);
      }
    }
  });
});

describe('suggestLr: properties on synthetic curves', () => {
  // The curve reading is invariant to the loss's units and the lr's; the noise cap is not, by
  // design (an absolute lr from the loss noise in nats), so these two properties turn it off.
  test('scaling and shifting the loss leaves every answer unchanged (noise cap off)', () => {
    fc.assert(
      fc.property(
        specArb,
        fc.double({ min: -3, max: 3, noNaN: true }),
        fc.double({ min: -100, max: 100, noNaN: true }),
        (spec, logScale, shift) => {
          const c = syntheticCurve(spec);
          const scaled = { lrs: c.lrs, losses: c.losses.map((l) => 10 ** logScale * l + shift) };
          for (const method of METHODS) {
            const a = suggestLr(c, { method, noiseLrScale: 0 });
            const b = suggestLr(scaled, { method, noiseLrScale: 0 });
            assertClose(b.maxLr, a.maxLr, 1e-6, `${method} maxLr`);
            assert.ok(Math.abs(b.confidence - a.confidence) <= 0.002, `${method} confidence ${a.confidence} vs ${b.confidence}`);
          }
        },
      ),
      RUNS,
    );
  });

  test('multiplying every lr by c multiplies every answer by c (noise cap off)', () => {
    fc.assert(
      fc.property(specArb, fc.double({ min: -4, max: 4, noNaN: true }), (spec, logC) => {
        const c = syntheticCurve(spec);
        const factor = 10 ** logC;
        const shifted = { lrs: c.lrs.map((lr) => lr * factor), losses: c.losses };
        for (const method of METHODS) {
          const a = suggestLr(c, { method, noiseLrScale: 0 });
          const b = suggestLr(shifted, { method, noiseLrScale: 0 });
          assertClose(b.maxLr, a.maxLr * factor, 1e-6, `${method} maxLr`);
          if (a.divergenceLr !== null) assertClose(b.divergenceLr!, a.divergenceLr * factor, 1e-6, `${method} divergence`);
        }
      }),
      RUNS,
    );
  });

  test('never past the divergence point; minLr = maxLr / divisor; confidence in [0, 1]', () => {
    fc.assert(
      fc.property(specArb, fc.constantFrom(...METHODS), fc.double({ min: 1, max: 30, noNaN: true }), (spec, method, divisor) => {
        const c = syntheticCurve(spec);
        const r = suggestLr(c, { method, minLrDivisor: divisor });
        assert.ok(r.maxLr < c.divergenceLr, `${method}: ${r.maxLr} past the true divergence ${c.divergenceLr}`);
        assert.ok(r.divergenceLr !== null && r.maxLr <= r.divergenceLr, `${method}: past its own divergence point`);
        assertClose(r.minLr, r.maxLr / divisor, 1e-12, 'minLr');
        assert.ok(r.confidence >= 0 && r.confidence <= 1);
        assert.ok(r.reason.length > 20);
        assert.ok(r.maxLr >= c.lrs[0]! / 10 && r.maxLr <= c.lrs[c.lrs.length - 1]!);
      }),
      RUNS,
    );
  });

  test('auto lands in the low-loss valley, clearly before divergence', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const c = syntheticCurve(spec);
        const r = suggestLr(c);
        assert.ok(c.fallAchieved(r.maxLr) > 0.7, `only ${c.fallAchieved(r.maxLr)} of the fall at ${r.maxLr}`);
        assert.ok(Math.log10(c.divergenceLr / r.maxLr) >= 0.1, `${r.maxLr} too close to divergence ${c.divergenceLr}`);
      }),
      RUNS,
    );
  });

  test('auto: small extra noise moves the answer only a little (noise cap off)', () => {
    fc.assert(
      fc.property(specArb, fc.integer({ min: 0, max: 2 ** 31 - 1 }), (spec, seed) => {
        const c = syntheticCurve(spec);
        // The same curve plus independent Gaussian noise of std 0.5% of the fall.
        const normal = gaussian(prng(seed));
        const noisy = { lrs: c.lrs, losses: c.losses.map((l) => l + 0.005 * (spec.plateau - spec.floor) * normal()) };
        const a = suggestLr(c, { noiseLrScale: 0 });
        const b = suggestLr(noisy, { noiseLrScale: 0 });
        assert.ok(decades(a.maxLr, b.maxLr) <= 0.1, `${a.maxLr} vs ${b.maxLr}`);
      }),
      RUNS,
    );
  });
});

describe('suggestLr: the noise cap (auto)', () => {
  test('auto answers the smaller of the uncapped answer and noiseLrScale / noise², and says which', () => {
    fc.assert(
      fc.property(specArb, fc.double({ min: -5, max: -1, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true }), (spec, logK, logScale) => {
        const c = syntheticCurve(spec);
        // the loss in other units: the noise, and with it the cap, moves (scale² in the cap)
        const curve = { lrs: c.lrs, losses: c.losses.map((l) => 10 ** logScale * l) };
        const K = 10 ** logK;
        const free = suggestLr(curve);
        assert.ok(!/batch noise/.test(free.reason), 'the cap is off by default');
        const capped = suggestLr(curve, { noiseLrScale: K });
        assert.equal(capped.noise, free.noise);
        const cap = K / capped.noise ** 2;
        const lo = curve.lrs[0]! / 10;
        assertClose(capped.maxLr, Math.max(lo, Math.min(free.maxLr, cap)), 1e-6, `capped ${capped.maxLr}, free ${free.maxLr}, cap ${cap}`);
        assert.equal(/batch noise/.test(capped.reason), cap < free.maxLr, capped.reason);
      }),
      RUNS,
    );
  });

  test('the cap grows with the batch: noise std ÷4 (batch ×16) lifts the answer by more than 8× (to the cap or the tenth of the blow-up)', () => {
    const normal = gaussian(prng(5));
    const base = sweep(200, -4, 1, (u) => 2.3 - 0.3 * Math.tanh(u + 2) + (u > 0.5 ? 20 * (u - 0.5) ** 2 : 0));
    const noise = base.losses.map(() => normal());
    const at = (std: number) => suggestLr({ lrs: base.lrs, losses: base.losses.map((l, i) => l + std * noise[i]!) }, { noiseLrScale: 1e-3 });
    const b8 = at(0.24);
    const b128 = at(0.06);
    assert.ok(/batch noise/.test(b8.reason), b8.reason);
    assertClose(b8.maxLr, 1e-3 / b8.noise ** 2, 1e-9, 'b8 at its cap');
    assert.ok(b8.noise > 3.5 * b128.noise && b8.noise < 4.5 * b128.noise, `noise ${b8.noise} vs ${b128.noise}`);
    assert.ok(b128.maxLr > 8 * b8.maxLr, `${b128.maxLr} vs ${b8.maxLr}`);
  });
});

describe('suggestLr: refuses bad curves and options', () => {
  const good = sweep(20, -5, 0, (u) => 1 - 0.5 * Math.tanh(u + 3));
  const cases: [string, RangeTestCurve, RegExp][] = [
    ['too short', sweep(9, -5, 0, (u) => -u), /too short: 9 points, need at least 10/],
    ['mismatched lengths', { lrs: good.lrs, losses: good.losses.slice(1) }, /20 values but curve.losses has 19/],
    ['non-increasing lrs', { lrs: good.lrs.map((lr, i) => (i === 7 ? good.lrs[6]! : lr)), losses: good.losses }, /strictly increasing.*lrs\[7\]/],
    ['negative lr', { lrs: good.lrs.map((lr, i) => (i === 0 ? -1 : lr)), losses: good.losses }, /lrs\[0\] must be a finite number > 0/],
    ['all NaN', { lrs: good.lrs, losses: good.losses.map(() => Number.NaN) }, /every loss is NaN or infinite/],
    ['NaN too early', { lrs: good.lrs, losses: good.losses.map((l, i) => (i >= 6 ? Number.NaN : l)) }, /only 6 finite losses before .* index 6/],
  ];
  for (const [name, curve, message] of cases) {
    test(name, () => assert.throws(() => suggestLr(curve), { message: new RegExp(`^suggestLr: .*${message.source}`) }));
  }
  test('options', () => {
    assert.throws(() => suggestLr(good, { method: 'fastest' as SuggestMethod }), /option 'method' must be one of/);
    assert.throws(() => suggestLr(good, { minLrDivisor: 0.5 }), /'minLrDivisor' must be a number >= 1/);
    assert.throws(() => suggestLr(good, { window: 4 }), /'window' must be an odd integer >= 5/);
    assert.throws(() => suggestLr(good, { valleyFraction: 0.6 }), /'valleyFraction' must be a number in \(0, divergenceFraction/);
    assert.throws(() => suggestLr(good, { bogus: 1 } as never), /unknown option 'bogus'/);
    assert.doesNotThrow(() => suggestLr(sweep(9, -5, 0, (u) => -u), { minPoints: 5 }));
  });
});

test('formatLr', () => {
  assert.equal(formatLr(0.35), '0.35');
  assert.equal(formatLr(3.1623e-4), '3.16e-4');
  assert.equal(formatLr(1), '1');
  assert.equal(formatLr(12345), '1.23e4');
});

test('auto: a ragged blow-up that dips back below the valley after diverging is not mistaken for the valley', () => {
  // Valley 0.5 on [-3, -1.5], up to 3 by -1, then oscillating between 0.2 and 6 until the end.
  const loss = (u: number): number =>
    u < -4 ? 2 : u < -3 ? 2 - 1.5 * (u + 4) : u < -1.5 ? 0.5 : u < -1 ? 0.5 + 5 * (u + 1.5) : Math.round(u * 20) % 2 === 0 ? 0.2 : 6;
  const r = suggestLr(sweep(121, -6, 0, loss));
  assert.ok(r.maxLr < 10 ** -1.2, `maxLr ${r.maxLr}`);
  assert.ok(r.divergenceLr !== null && r.divergenceLr < 10 ** -1, `divergence ${r.divergenceLr}`);
});

test('rangetest/compareMethods.ts (the docs table) runs: a row per family and method', () => {
  const table = compare(2).split('\n');
  assert.equal(table.length, 2 + 8 * METHODS.length);
  assert.ok(table.every((row) => row.startsWith('|') && row.endsWith('|')));
});
