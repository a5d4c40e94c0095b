// Properties and reference checks for the basic, cyclical and range-sweep schedules.
// Reference formulas below are written from the papers / PyTorch docs, not from schedules/.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  constant,
  cosine,
  expRange,
  exponential,
  linear,
  piecewise,
  rangeSweep,
  sampleSchedule,
  sampleSchedules,
  sequence,
  stepDecay,
  triangular,
  triangular2,
  warmup,
  type Schedule,
} from '../schedules/index.ts';

const RUNS = { numRuns: 60 };

/** |actual - expected| <= rel * scale + 1e-300 (scale defaults to |expected|; the floor covers subnormals). */
function assertClose(actual: number, expected: number, rel: number, scale = Math.abs(expected), what = ''): void {
  assert.ok(Number.isFinite(actual), `${what} not finite: ${actual}`);
  assert.ok(Math.abs(actual - expected) <= rel * scale + 1e-300, `${what} expected ${expected}, got ${actual} (rel tol ${rel})`);
}

const logUniform = (lo: number, hi: number): fc.Arbitrary<number> =>
  fc.double({ min: lo, max: hi, noNaN: true }).map((e) => 10 ** e);
const finite = fc.double({ min: -10, max: 10, noNaN: true });
const steps = fc.integer({ min: 1, max: 400 });

describe('step argument', () => {
  const schedules: [string, Schedule][] = [
    ['constant', constant(1)],
    ['linear', linear({ from: 0, to: 1, steps: 10 })],
    ['cosine', cosine({ from: 1, to: 0, steps: 10 })],
    ['exponential', exponential({ from: 1, to: 2, steps: 10 })],
    ['stepDecay', stepDecay(1, [5], 0.1)],
    ['sequence', sequence([{ schedule: constant(1), steps: 3 }, { schedule: constant(2) }])],
    ['warmup', warmup({ steps: 3 }, constant(1))],
    ['triangular', triangular({ baseLr: 0.1, maxLr: 1, stepSize: 4 })],
    ['triangular2', triangular2({ baseLr: 0.1, maxLr: 1, stepSize: 4 })],
    ['expRange', expRange({ baseLr: 0.1, maxLr: 1, stepSize: 4, gamma: 0.99 })],
    ['rangeSweep', rangeSweep({ start: 1e-5, end: 1, steps: 10 })],
  ];
  for (const [name, s] of schedules) {
    test(`${name} rejects negative, fractional, NaN and infinite steps`, () => {
      for (const bad of [-1, 0.5, 2.25, Number.NaN, Number.POSITIVE_INFINITY, -Number.MIN_VALUE]) {
        assert.throws(() => s(bad), { name: 'RangeError', message: new RegExp(`^${name}: step must be a non-negative integer`) });
      }
      assert.ok(Number.isFinite(s(0)) && Number.isFinite(s(1e9)));
    });
  }
});

describe('constant', () => {
  test('same value at every step', () => {
    fc.assert(fc.property(finite, fc.nat(), (v, s) => constant(v)(s) === v), RUNS);
  });
});

describe('ramps: linear, cosine, exponential', () => {
  // Independent formulas: linear interpolation, PyTorch CosineAnnealingLR's closed form
  // eta_min + (eta_max - eta_min) * (1 + cos(pi * t / T)) / 2 (here read from -> to), geometric.
  const refs = {
    linear: (from: number, to: number, n: number, s: number) => from + ((to - from) * s) / n,
    cosine: (from: number, to: number, n: number, s: number) => to + ((from - to) * (1 + Math.cos((Math.PI * s) / n))) / 2,
    exponential: (from: number, to: number, n: number, s: number) => from * (to / from) ** (s / n),
  } as const;
  const builders = { linear, cosine, exponential } as const;

  for (const name of ['linear', 'cosine', 'exponential'] as const) {
    test(`${name}: exact endpoints, held end, monotone, bounded, matches the formula`, () => {
      const endpoint = name === 'exponential' ? logUniform(-5, 1) : finite;
      fc.assert(
        fc.property(endpoint, endpoint, steps, fc.nat(1000), (from, to, n, extra) => {
          const s = builders[name]({ from, to, steps: n });
          assert.equal(s(0), from);
          assert.equal(s(n), to);
          assert.equal(s(n + 1 + extra), to);
          const lo = Math.min(from, to);
          const hi = Math.max(from, to);
          const scale = Math.max(Math.abs(from), Math.abs(to), Number.MIN_VALUE);
          let prev = s(0);
          for (let i = 0; i <= n; i++) {
            const v = s(i);
            assert.ok(v >= lo && v <= hi, `${name}(${i}) = ${v} outside [${lo}, ${hi}]`);
            if (to >= from) assert.ok(v >= prev, `${name} not non-decreasing at ${i}`);
            else assert.ok(v <= prev, `${name} not non-increasing at ${i}`);
            prev = v;
            assertClose(v, refs[name](from, to, n, i), 1e-12, scale, `${name}(${i})`);
          }
        }),
        RUNS,
      );
    });
  }

  test('hand-computed values', () => {
    assert.equal(linear({ from: 0, to: 1, steps: 4 })(1), 0.25);
    assert.equal(linear({ from: 1, to: 0, steps: 4 })(2), 0.5);
    assertClose(cosine({ from: 1, to: 0, steps: 2 })(1), 0.5, 1e-15); // cos(pi/2) = 0
    assertClose(exponential({ from: 1, to: 100, steps: 2 })(1), 10, 1e-15);
  });
});

describe('stepDecay (MultiStepLR)', () => {
  test('value * gamma^(milestones <= step), any milestone order, repeats count', () => {
    fc.assert(
      fc.property(
        logUniform(-3, 0),
        fc.array(fc.nat(300), { maxLength: 6 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        (v, milestones, gamma) => {
          const s = stepDecay(v, milestones, gamma);
          let prev = s(0);
          for (let i = 0; i <= 320; i++) {
            const k = milestones.filter((m) => m <= i).length;
            assertClose(s(i), v * Math.pow(gamma, k), 1e-14, v, `stepDecay(${i})`);
            assert.ok(s(i) <= prev);
            prev = s(i);
          }
        },
      ),
      RUNS,
    );
  });

  test("Smith's super-convergence baseline: 0.35, x0.1 at 50k and 70k", () => {
    const s = stepDecay(0.35, [50000, 70000], 0.1);
    assert.equal(s(0), 0.35);
    assert.equal(s(49999), 0.35);
    assertClose(s(50000), 0.035, 1e-15);
    assertClose(s(69999), 0.035, 1e-15);
    assertClose(s(70000), 0.0035, 1e-15);
    assertClose(s(10 ** 7), 0.0035, 1e-15);
  });
});

describe('sequence / piecewise', () => {
  const segmentArb = fc.record({
    kind: fc.constantFrom('constant', 'linear'),
    a: finite,
    b: finite,
    steps: fc.integer({ min: 1, max: 30 }),
  });
  const build = (seg: { kind: string; a: number; b: number; steps: number }): Schedule =>
    seg.kind === 'constant' ? constant(seg.a) : linear({ from: seg.a, to: seg.b, steps: seg.steps });

  test('each segment sees its local step; bounded sequences hold their last value', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { minLength: 1, maxLength: 5 }), fc.boolean(), (segs, bounded) => {
        const parts = segs.map((g, i) => (i === segs.length - 1 && !bounded ? { schedule: build(g) } : { schedule: build(g), steps: g.steps }));
        const s = sequence(parts);
        const total = segs.reduce((acc, g) => acc + g.steps, 0);
        for (let step = 0; step < total + 40; step++) {
          // Walk the segments to find the owner of `step`.
          let offset = 0;
          let idx = 0;
          while (idx < segs.length - 1 && step >= offset + segs[idx]!.steps) offset += segs[idx++]!.steps;
          let local = step - offset;
          if (bounded && step >= total) local = segs[idx]!.steps - 1;
          assert.equal(s(step), build(segs[idx]!)(local), `step ${step}`);
        }
      }),
      RUNS,
    );
  });

  test('piecewise is sequence', () => {
    const p = piecewise([{ schedule: constant(1), steps: 2 }, { schedule: linear({ from: 1, to: 0, steps: 4 }) }]);
    assert.deepEqual(Array.from(sampleSchedule(p, 8)), [1, 1, 1, 0.75, 0.5, 0.25, 0, 0]);
  });
});

describe('warmup', () => {
  test('linear from `from` to schedule(0) over `steps`, then the schedule shifted', () => {
    fc.assert(
      fc.property(steps, fc.option(finite, { nil: undefined }), finite, finite, fc.integer({ min: 1, max: 50 }), (n, from, a, b, m) => {
        const inner = linear({ from: a, to: b, steps: m });
        const s = warmup(from === undefined ? { steps: n } : { steps: n, from }, inner);
        const start = from ?? 0;
        assert.equal(s(0), start);
        assert.equal(s(n), a);
        for (let i = 0; i <= n; i++) {
          assertClose(s(i), start + ((a - start) * i) / n, 1e-12, Math.max(Math.abs(a), Math.abs(start), 1e-300));
          if (i > 0) assert.ok(a >= start ? s(i) >= s(i - 1) : s(i) <= s(i - 1));
        }
        for (let k = 0; k < m + 5; k++) assert.equal(s(n + k), inner(k));
      }),
      RUNS,
    );
  });
});

describe('cyclical learning rates (Smith 2015)', () => {
  // Smith 2015, sec. 3.1, the paper's Torch code (opt.LR = base, epochCounter = iteration):
  //   local cycle = math.floor(1+epochCounter/(2*stepsize))
  //   local x = math.abs(epochCounter/stepsize - 2*cycle + 1)
  //   local lr = opt.LR + (maxLR - opt.LR)*math.max(0, (1-x))
  function smithClr(base: number, max: number, stepsize: number, it: number, policy: 'triangular' | 'triangular2' | 'exp_range', gamma = 1): number {
    const cycle = Math.floor(1 + it / (2 * stepsize));
    const x = Math.abs(it / stepsize - 2 * cycle + 1);
    const scale = policy === 'triangular' ? 1 : policy === 'triangular2' ? 1 / 2 ** (cycle - 1) : gamma ** it;
    return base + (max - base) * Math.max(0, 1 - x) * scale;
  }
  // torch.optim.lr_scheduler.CyclicLR.get_lr (step_size_up = step_size_down): a different float path.
  function torchCyclicLr(base: number, max: number, stepSize: number, it: number, mode: 'triangular' | 'triangular2' | 'exp_range', gamma = 1): number {
    const totalSize = 2 * stepSize;
    const stepRatio = stepSize / totalSize;
    const cycle = Math.floor(1 + it / totalSize);
    const x = 1.0 + it / totalSize - cycle;
    const scaleFactor = x <= stepRatio ? x / stepRatio : (x - 1) / (stepRatio - 1);
    const baseHeight = (max - base) * scaleFactor;
    const scale = mode === 'triangular' ? 1.0 : mode === 'triangular2' ? 1 / 2.0 ** (cycle - 1) : gamma ** it;
    return base + baseHeight * scale;
  }

  const clrArb = fc
    .record({ a: logUniform(-5, 0), b: logUniform(-5, 0), stepSize: fc.integer({ min: 1, max: 60 }), gamma: fc.double({ min: 0.9, max: 1, noNaN: true }) })
    .map(({ a, b, stepSize, gamma }) => ({ baseLr: Math.min(a, b), maxLr: Math.max(a, b), stepSize, gamma }));

  test('matches Smith\'s pseudo-code exactly and PyTorch CyclicLR to 1e-12', () => {
    fc.assert(
      fc.property(clrArb, ({ baseLr, maxLr, stepSize, gamma }) => {
        const t = triangular({ baseLr, maxLr, stepSize });
        const t2 = triangular2({ baseLr, maxLr, stepSize });
        const e = expRange({ baseLr, maxLr, stepSize, gamma });
        for (let it = 0; it < 8 * stepSize + 3; it++) {
          assert.equal(t(it), smithClr(baseLr, maxLr, stepSize, it, 'triangular'));
          assert.equal(t2(it), smithClr(baseLr, maxLr, stepSize, it, 'triangular2'));
          assert.equal(e(it), smithClr(baseLr, maxLr, stepSize, it, 'exp_range', gamma));
          assertClose(t(it), torchCyclicLr(baseLr, maxLr, stepSize, it, 'triangular'), 1e-12, maxLr, `triangular(${it})`);
          assertClose(t2(it), torchCyclicLr(baseLr, maxLr, stepSize, it, 'triangular2'), 1e-12, maxLr, `triangular2(${it})`);
          assertClose(e(it), torchCyclicLr(baseLr, maxLr, stepSize, it, 'exp_range', gamma), 1e-12, maxLr, `expRange(${it})`);
        }
      }),
      RUNS,
    );
  });

  test('bounds, troughs, peaks, monotone halves and period 2*stepSize (up to the scale)', () => {
    fc.assert(
      fc.property(clrArb, fc.integer({ min: 0, max: 5 }), ({ baseLr, maxLr, stepSize, gamma }, k) => {
        const S = stepSize;
        const t = triangular({ baseLr, maxLr, stepSize });
        const t2 = triangular2({ baseLr, maxLr, stepSize });
        const e = expRange({ baseLr, maxLr, stepSize, gamma });
        const amp = maxLr - baseLr;
        const tol = 1e-12 * maxLr;
        // Troughs at multiples of 2S are exactly baseLr; peaks at odd multiples of S.
        for (const s of [t, t2, e]) assert.equal(s(2 * k * S), baseLr);
        assertClose(t((2 * k + 1) * S), maxLr, 1e-15, maxLr, 'triangular peak');
        assertClose(t2((2 * k + 1) * S), baseLr + amp / 2 ** k, 1e-15, maxLr, 'triangular2 peak');
        assertClose(e((2 * k + 1) * S), baseLr + amp * gamma ** ((2 * k + 1) * S), 1e-14, maxLr, 'expRange peak');
        for (let it = 2 * k * S; it < 2 * (k + 1) * S; it++) {
          const rising = it < (2 * k + 1) * S;
          for (const s of [t, t2, e]) {
            const v = s(it);
            assert.ok(v >= baseLr && v <= maxLr * (1 + 1e-15), `${v} outside [${baseLr}, ${maxLr}]`);
          }
          // t and t2 are piecewise linear in it: monotone within each half-cycle.
          for (const s of [t, t2]) assert.ok(rising ? s(it + 1) >= s(it) : s(it + 1) <= s(it), `half-cycle monotonicity at ${it}`);
          // Period 2S: triangular repeats, triangular2's amplitude halves, expRange's decays by gamma^(2S).
          assertClose(t(it + 2 * S), t(it), 1e-12, maxLr, `triangular period at ${it}`);
          assertClose(t2(it + 2 * S) - baseLr, (t2(it) - baseLr) / 2, 1e-12, maxLr, `triangular2 period at ${it}`);
          assertClose(e(it + 2 * S) - baseLr, (e(it) - baseLr) * gamma ** (2 * S), 1e-11, maxLr, `expRange period at ${it}`);
          assert.ok(Math.abs(e(it + 2 * S) - baseLr) <= Math.abs(e(it) - baseLr) + tol);
        }
      }),
      RUNS,
    );
  });

  test('hand-computed: baseLr 0.001, maxLr 0.006, stepSize 2000', () => {
    const o = { baseLr: 0.001, maxLr: 0.006, stepSize: 2000 };
    const t = triangular(o);
    const t2 = triangular2(o);
    // it=1000: cycle 1, x = |0.5 - 1| = 0.5 -> 0.001 + 0.005 * 0.5.
    assertClose(t(1000), 0.0035, 1e-15);
    assertClose(t(2000), 0.006, 1e-15);
    assert.equal(t(4000), 0.001);
    assertClose(t(5000), 0.0035, 1e-15);
    // Second cycle peak of triangular2: 0.001 + 0.005 / 2.
    assertClose(t2(6000), 0.0035, 1e-15);
    assertClose(expRange({ ...o, gamma: 0.5 })(1), 0.001 + 0.005 * 0.0005 * 0.5, 1e-15);
  });
});

describe('rangeSweep (LR range test)', () => {
  test('start at 0, end at steps-1 and after, monotone, matches the formula', () => {
    fc.assert(
      fc.property(logUniform(-8, -2), logUniform(-1, 1), fc.integer({ min: 2, max: 300 }), fc.constantFrom('exp' as const, 'linear' as const), (start, end, n, mode) => {
        const s = rangeSweep({ start, end, steps: n, mode });
        assert.equal(s(0), start);
        assert.equal(s(n - 1), end);
        assert.equal(s(n), end);
        assert.equal(s(n + 12345), end);
        for (let i = 1; i < n; i++) {
          assert.ok(s(i) >= s(i - 1) && s(i) <= end);
          const f = i / (n - 1);
          const ref = mode === 'exp' ? start * (end / start) ** f : start + (end - start) * f;
          assertClose(s(i), ref, 1e-12, ref, `rangeSweep(${i})`);
        }
      }),
      RUNS,
    );
  });

  test("default mode is exponential (fastai's LRFinder SchedExp)", () => {
    const s = rangeSweep({ start: 1e-7, end: 10, steps: 9 });
    assertClose(s(4), 1e-7 * Math.sqrt(1e8), 1e-14); // halfway in log space: 1e-3
  });
});

describe('sampling and purity', () => {
  test('sampleSchedule / sampleSchedules equal pointwise evaluation', () => {
    const s = linear({ from: 0, to: 1, steps: 4 });
    assert.deepEqual(Array.from(sampleSchedule(s, 6)), [0, 0.25, 0.5, 0.75, 1, 1]);
    assert.deepEqual(Array.from(sampleSchedule(s, 2, 3)), [0.75, 1]);
    assert.ok(sampleSchedule(s, 3) instanceof Float64Array);
    assert.equal(sampleSchedule(s, 0).length, 0);
    const both = sampleSchedules({ a: s, b: constant(2) }, 3);
    assert.deepEqual(Object.keys(both), ['a', 'b']);
    assert.deepEqual(Array.from(both.b), [2, 2, 2]);
  });

  test('same step, same value, whatever the call order', () => {
    const make = (): Schedule[] => [
      warmup({ steps: 7 }, cosine({ from: 1, to: 0.01, steps: 50 })),
      sequence([{ schedule: linear({ from: 0, to: 1, steps: 5 }), steps: 5 }, { schedule: stepDecay(1, [10, 20], 0.5) }]),
      triangular2({ baseLr: 0.01, maxLr: 1, stepSize: 6 }),
      expRange({ baseLr: 0.01, maxLr: 1, stepSize: 6, gamma: 0.99 }),
      rangeSweep({ start: 1e-6, end: 1, steps: 40 }),
    ];
    fc.assert(
      fc.property(fc.array(fc.nat(120), { minLength: 1, maxLength: 60 }), (order) => {
        const fresh = make();
        const inOrder = make().map((s) => order.map(() => 0).map((_, i) => s(order[i]!)));
        const shuffled = [...order].reverse();
        fresh.forEach((s, j) => {
          const got = new Map(shuffled.map((st) => [st, s(st)]));
          order.forEach((st, i) => assert.equal(got.get(st), inOrder[j]![i]));
          order.forEach((st, i) => assert.equal(s(st), inOrder[j]![i]));
        });
      }),
      { numRuns: 30 },
    );
  });
});

describe('invalid options throw at construction, naming builder and option', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['constant NaN', () => constant(Number.NaN), /^constant: option 'value'/],
    ['linear steps 0', () => linear({ from: 0, to: 1, steps: 0 }), /^linear: option 'steps' must be an integer >= 1/],
    ['linear steps 2.5', () => linear({ from: 0, to: 1, steps: 2.5 }), /^linear: option 'steps'/],
    ['linear steps -3', () => linear({ from: 0, to: 1, steps: -3 }), /^linear: option 'steps'/],
    ['linear from NaN', () => linear({ from: Number.NaN, to: 1, steps: 3 }), /^linear: option 'from' must be a finite number/],
    ['cosine to Infinity', () => cosine({ from: 1, to: Number.POSITIVE_INFINITY, steps: 3 }), /^cosine: option 'to'/],
    ['exponential from 0', () => exponential({ from: 0, to: 1, steps: 3 }), /^exponential: option 'from' must be a finite number > 0/],
    ['linear unknown key', () => linear({ from: 0, to: 1, steps: 3, step: 4 } as never), /^linear: unknown option 'step'/],
    ['stepDecay milestone -1', () => stepDecay(1, [-1], 0.1), /^stepDecay: option 'milestones\[0\]'/],
    ['stepDecay milestone 1.5', () => stepDecay(1, [3, 1.5], 0.1), /^stepDecay: option 'milestones\[1\]'/],
    ['stepDecay gamma 0', () => stepDecay(1, [3], 0), /^stepDecay: option 'gamma'/],
    ['stepDecay gamma NaN', () => stepDecay(1, [3], Number.NaN), /^stepDecay: option 'gamma'/],
    ['sequence empty', () => sequence([]), /^sequence: expected a non-empty array/],
    ['sequence missing steps', () => sequence([{ schedule: constant(1) }, { schedule: constant(2) }]), /^sequence: option 'segments\[0\]\.steps'/],
    ['sequence steps 0', () => sequence([{ schedule: constant(1), steps: 0 }]), /^sequence: option 'segments\[0\]\.steps'/],
    ['sequence not a schedule', () => sequence([{ schedule: 3 as never, steps: 1 }]), /^sequence: option 'segments\[0\]\.schedule'/],
    ['warmup steps 0', () => warmup({ steps: 0 }, constant(1)), /^warmup: option 'steps'/],
    ['warmup from NaN', () => warmup({ steps: 2, from: Number.NaN }, constant(1)), /^warmup: option 'from'/],
    ['triangular stepSize 0', () => triangular({ baseLr: 0.1, maxLr: 1, stepSize: 0 }), /^triangular: option 'stepSize'/],
    ['triangular stepSize 1.5', () => triangular({ baseLr: 0.1, maxLr: 1, stepSize: 1.5 }), /^triangular: option 'stepSize'/],
    ['triangular maxLr 0', () => triangular({ baseLr: 0, maxLr: 0, stepSize: 2 }), /^triangular: option 'maxLr'/],
    ['triangular2 base > max', () => triangular2({ baseLr: 2, maxLr: 1, stepSize: 2 }), /^triangular2: option 'baseLr' \(2\) must be <= 'maxLr'/],
    ['triangular base < 0', () => triangular({ baseLr: -1, maxLr: 1, stepSize: 2 }), /^triangular: option 'baseLr'/],
    ['expRange gamma 0', () => expRange({ baseLr: 0.1, maxLr: 1, stepSize: 2, gamma: 0 }), /^expRange: option 'gamma'/],
    ['expRange gamma > 1', () => expRange({ baseLr: 0.1, maxLr: 1, stepSize: 2, gamma: 1.5 }), /^expRange: option 'gamma'/],
    ['rangeSweep steps 1', () => rangeSweep({ start: 1e-5, end: 1, steps: 1 }), /^rangeSweep: option 'steps' must be an integer >= 2/],
    ['rangeSweep start 0', () => rangeSweep({ start: 0, end: 1, steps: 5 }), /^rangeSweep: option 'start'/],
    ['rangeSweep start >= end', () => rangeSweep({ start: 1, end: 0.5, steps: 5 }), /^rangeSweep: option 'start' \(1\) must be < 'end'/],
    ['rangeSweep bad mode', () => rangeSweep({ start: 1e-5, end: 1, steps: 5, mode: 'log' as never }), /^rangeSweep: option 'mode' must be one of 'exp' \| 'linear'/],
    ['sampleSchedule steps -1', () => sampleSchedule(constant(1), -1), /^sampleSchedule: option 'steps'/],
  ];
  for (const [name, fn, re] of cases) {
    test(name, () => assert.throws(fn, (err: unknown) => err instanceof Error && re.test(err.message)));
  }
});
