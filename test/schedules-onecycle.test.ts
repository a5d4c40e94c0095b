// oneCycle(): Smith's policy (properties), and the 'pytorch' / 'fastai' presets checked step by
// step against transliterations of the libraries' code written here, independently of schedules/.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { oneCycle, sampleOneCycle, type OneCycle } from '../schedules/index.ts';

const RUNS = { numRuns: 60 };

function assertClose(actual: number, expected: number, rel: number, what = ''): void {
  assert.ok(Number.isFinite(actual), `${what} not finite: ${actual}`);
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${what}: expected ${expected}, got ${actual} (rel tol ${rel})`);
}

const logUniform = (lo: number, hi: number): fc.Arbitrary<number> =>
  fc.double({ min: lo, max: hi, noNaN: true }).map((e) => 10 ** e);
const momentumPair = fc
  .tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([a, b]) => ({ minMomentum: Math.min(a, b), maxMomentum: Math.max(a, b) }));
// Two-decimal pct_start values hit PyTorch's float quirks (0.29 * 100 = 28.999999999999996).
const pctStartArb = fc.oneof(fc.integer({ min: 1, max: 99 }).map((k) => k / 100), fc.double({ min: 0.01, max: 0.99, noNaN: true }));

/** Past the end: the value at totalSteps - 1, for any later step. */
function assertHeld(oc: OneCycle, extra: number): void {
  const last = oc.totalSteps - 1;
  for (const k of [1, 2, extra, 10 ** 9]) {
    assert.equal(oc.lr(last + k), oc.lr(last));
    assert.equal(oc.momentum(last + k), oc.momentum(last));
  }
  assert.equal(oc.finalLr, oc.lr(last));
  assert.equal(oc.initialLr, oc.lr(0));
}

// ---------------------------------------------------------------------------------------------
// Smith's policy (default preset). Boundaries, as documented in schedules/oneCycle.ts:
//   A = max(2, round(annihilationFraction * T)); peak = floor((T - A) / 2); cycleEnd = 2 * peak.
// ---------------------------------------------------------------------------------------------
describe('oneCycle (Smith policy, default)', () => {
  const smithArb = fc
    .record({
      maxLr: logUniform(-4, 1),
      totalSteps: fc.integer({ min: 4, max: 1500 }),
      divFactor: fc.double({ min: 1, max: 100, noNaN: true }),
      finalDivFactor: fc.double({ min: 1, max: 1e4, noNaN: true }),
      annihilationFraction: fc.double({ min: 0.01, max: 0.9, noNaN: true }),
      anneal: fc.constantFrom('linear' as const, 'cos' as const),
      mom: momentumPair,
      extra: fc.nat(10_000),
    })
    .filter((o) => Math.floor((o.totalSteps - Math.max(2, Math.round(o.annihilationFraction * o.totalSteps))) / 2) >= 1);

  // Piecewise interpolation through the anchors, as Smith describes it.
  function smithRef(anchors: readonly [number, number][], anneal: 'linear' | 'cos', step: number): number {
    for (let i = 1; i < anchors.length; i++) {
      const [s0, v0] = anchors[i - 1]!;
      const [s1, v1] = anchors[i]!;
      if (step <= s1) {
        const f = (step - s0) / (s1 - s0);
        const w = anneal === 'linear' ? f : (1 - Math.cos(Math.PI * f)) / 2;
        return v0 + (v1 - v0) * w;
      }
    }
    return anchors[anchors.length - 1]![1];
  }

  test('exact anchors, bounds, monotone phases, inverse momentum, formula, held end', () => {
    fc.assert(
      fc.property(smithArb, (o) => {
        const { maxLr, totalSteps: T, divFactor, finalDivFactor, annihilationFraction, anneal, mom, extra } = o;
        const oc = oneCycle({ maxLr, totalSteps: T, divFactor, finalDivFactor, annihilationFraction, anneal, ...mom });
        const A = Math.max(2, Math.round(annihilationFraction * T));
        const peak = Math.floor((T - A) / 2);
        const end = 2 * peak;
        const last = T - 1;
        const minLr = maxLr / divFactor;
        const finalLr = minLr / finalDivFactor;
        const { maxMomentum: hiM, minMomentum: loM } = mom;
        assert.deepEqual(
          oc.phases.map((p) => [p.name, p.startStep, p.endStep]),
          [['rise', 0, peak], ['fall', peak, end], ['annihilation', end, last]],
        );
        assert.ok(end < last && peak >= 1);
        // Exact values at the phase boundaries.
        assert.deepEqual([oc.lr(0), oc.lr(peak), oc.lr(end), oc.lr(last)], [minLr, maxLr, minLr, finalLr]);
        assert.deepEqual([oc.momentum(0), oc.momentum(peak), oc.momentum(end), oc.momentum(last)], [hiM, loM, hiM, hiM]);
        assertHeld(oc, extra);
        const lrAnchors: [number, number][] = [[0, minLr], [peak, maxLr], [end, minLr], [last, finalLr]];
        const momAnchors: [number, number][] = [[0, hiM], [peak, loM], [end, hiM], [last, hiM]];
        const { lr, momentum } = sampleOneCycle(oc);
        for (let s = 0; s < T; s++) {
          assert.ok(lr[s]! >= finalLr && lr[s]! <= maxLr, `lr(${s}) out of bounds`);
          assert.ok(momentum[s]! >= loM && momentum[s]! <= hiM, `momentum(${s}) out of bounds`);
          assert.ok(Math.abs(lr[s]! - smithRef(lrAnchors, anneal, s)) <= 1e-12 * maxLr, `lr(${s}) vs reference`);
          assert.ok(Math.abs(momentum[s]! - smithRef(momAnchors, anneal, s)) <= 1e-12, `momentum(${s}) vs reference`);
          if (s > end) assert.equal(momentum[s], hiM);
          if (s === 0) continue;
          const dLr = lr[s]! - lr[s - 1]!;
          const dM = momentum[s]! - momentum[s - 1]!;
          if (s <= peak) assert.ok(dLr >= 0 && dM <= 0, `rise not monotone at ${s}`);
          else if (s <= end) assert.ok(dLr <= 0 && dM >= 0, `fall not monotone at ${s}`);
          else assert.ok(dLr <= 0 && dM === 0, `annihilation not monotone at ${s}`);
          assert.ok(dLr * dM <= 0, `momentum does not move against lr at ${s}`);
        }
      }),
      RUNS,
    );
  });

  test('defaults, by hand: maxLr 1, 100 steps -> anchors 0, 45, 90, 99', () => {
    const oc = oneCycle({ maxLr: 1, totalSteps: 100 });
    assert.equal(oc.preset, 'smith');
    assert.equal(oc.anneal, 'linear');
    assert.deepEqual(oc.phases.map((p) => [p.startStep, p.endStep]), [[0, 45], [45, 90], [90, 99]]);
    assert.equal(oc.lr(0), 0.1); // maxLr / 10
    assert.equal(oc.lr(45), 1);
    assert.equal(oc.lr(90), 0.1);
    assert.equal(oc.lr(99), 0.001); // 0.1 / 100
    assert.equal(oc.lr(100), 0.001);
    assertClose(oc.lr(22), 0.1 + (0.9 * 22) / 45, 1e-15); // = 0.54
    assertClose(oc.lr(60), 1 - (0.9 * 15) / 45, 1e-15); // = 0.7
    assertClose(oc.momentum(60), 0.85 + (0.1 * 15) / 45, 1e-15);
    assert.deepEqual([oc.momentum(0), oc.momentum(45), oc.momentum(90), oc.momentum(95)], [0.95, 0.85, 0.95, 0.95]);
  });

  test('smallest run: 4 steps -> anchors 0, 1, 2, 3; fewer steps throw', () => {
    const oc = oneCycle({ maxLr: 1, totalSteps: 4 });
    assert.deepEqual(Array.from(sampleOneCycle(oc).lr), [0.1, 1, 0.1, 0.001]);
    assert.throws(() => oneCycle({ maxLr: 1, totalSteps: 3 }), /^RangeError: oneCycle: option 'totalSteps' \(3\) is too small/);
  });

  test('cycleMomentum false: constant maxMomentum', () => {
    const oc = oneCycle({ maxLr: 1, totalSteps: 50, cycleMomentum: false, maxMomentum: 0.9 });
    assert.ok(sampleOneCycle(oc, 60).momentum.every((m) => m === 0.9));
  });
});

// ---------------------------------------------------------------------------------------------
// PyTorch: transliteration of torch.optim.lr_scheduler.OneCycleLR (__init__, get_lr,
// _annealing_cos/_annealing_linear) for one param group of an SGD optimizer with momentum.
// The scheduler's constructor performs the initial step (last_epoch -1 -> 0); each .step() after
// optimizer.step() advances last_epoch by one.
// ---------------------------------------------------------------------------------------------
interface TorchPhase {
  end_step: number;
  start_lr: string;
  end_lr: string;
  start_momentum: string;
  end_momentum: string;
}

class TorchOneCycleLR {
  last_epoch = -1;
  readonly group: Record<string, number> = {};
  readonly total_steps: number;
  readonly _schedule_phases: TorchPhase[];
  readonly anneal_strategy: 'cos' | 'linear';
  readonly cycle_momentum: boolean;

  constructor(
    max_lr: number,
    total_steps: number,
    pct_start = 0.3,
    anneal_strategy: 'cos' | 'linear' = 'cos',
    cycle_momentum = true,
    base_momentum = 0.85,
    max_momentum = 0.95,
    div_factor = 25.0,
    final_div_factor = 1e4,
    three_phase = false,
  ) {
    this.total_steps = total_steps;
    if (three_phase) {
      this._schedule_phases = [
        { end_step: pct_start * this.total_steps - 1, start_lr: 'initial_lr', end_lr: 'max_lr', start_momentum: 'max_momentum', end_momentum: 'base_momentum' },
        { end_step: 2 * pct_start * this.total_steps - 2, start_lr: 'max_lr', end_lr: 'initial_lr', start_momentum: 'base_momentum', end_momentum: 'max_momentum' },
        { end_step: this.total_steps - 1, start_lr: 'initial_lr', end_lr: 'min_lr', start_momentum: 'max_momentum', end_momentum: 'max_momentum' },
      ];
    } else {
      this._schedule_phases = [
        { end_step: pct_start * this.total_steps - 1, start_lr: 'initial_lr', end_lr: 'max_lr', start_momentum: 'max_momentum', end_momentum: 'base_momentum' },
        { end_step: this.total_steps - 1, start_lr: 'max_lr', end_lr: 'min_lr', start_momentum: 'base_momentum', end_momentum: 'max_momentum' },
      ];
    }
    this.anneal_strategy = anneal_strategy;
    this.group['initial_lr'] = max_lr / div_factor;
    this.group['max_lr'] = max_lr;
    this.group['min_lr'] = this.group['initial_lr'] / final_div_factor;
    this.cycle_momentum = cycle_momentum;
    if (this.cycle_momentum) {
      this.group['momentum'] = max_momentum;
      this.group['max_momentum'] = max_momentum;
      this.group['base_momentum'] = base_momentum;
    }
    this.step(); // LRScheduler.__init__ -> _initial_step()
  }

  static _annealing_cos(start: number, end: number, pct: number): number {
    const cos_out = Math.cos(Math.PI * pct) + 1;
    return end + ((start - end) / 2.0) * cos_out;
  }

  static _annealing_linear(start: number, end: number, pct: number): number {
    return (end - start) * pct + start;
  }

  _anneal_func(start: number, end: number, pct: number): number {
    return this.anneal_strategy === 'cos' ? TorchOneCycleLR._annealing_cos(start, end, pct) : TorchOneCycleLR._annealing_linear(start, end, pct);
  }

  step(): void {
    this.last_epoch += 1;
    this.group['lr'] = this.get_lr();
  }

  get_lr(): number {
    const step_num = this.last_epoch;
    if (step_num > this.total_steps) throw new Error(`Tried to step ${step_num} times. The specified number of total steps is ${this.total_steps}`);
    let start_step = 0.0;
    let computed_lr = Number.NaN;
    let computed_momentum = Number.NaN;
    for (let i = 0; i < this._schedule_phases.length; i++) {
      const phase = this._schedule_phases[i]!;
      const end_step = phase.end_step;
      if (step_num <= end_step || i === this._schedule_phases.length - 1) {
        if (end_step - start_step === 0) throw new Error('ZeroDivisionError: float division by zero');
        const pct = (step_num - start_step) / (end_step - start_step);
        computed_lr = this._anneal_func(this.group[phase.start_lr]!, this.group[phase.end_lr]!, pct);
        if (this.cycle_momentum) {
          computed_momentum = this._anneal_func(this.group[phase.start_momentum]!, this.group[phase.end_momentum]!, pct);
        }
        break;
      }
      start_step = phase.end_step;
    }
    if (this.cycle_momentum) this.group['momentum'] = computed_momentum;
    return computed_lr;
  }
}

describe("oneCycle({ preset: 'pytorch' }) vs OneCycleLR", () => {
  const torchArb = fc
    .record({
      maxLr: logUniform(-4, 1),
      totalSteps: fc.integer({ min: 1, max: 600 }),
      pctStart: pctStartArb,
      anneal: fc.constantFrom('cos' as const, 'linear' as const),
      divFactor: fc.double({ min: 1, max: 100, noNaN: true }),
      finalDivFactor: fc.double({ min: 1, max: 1e5, noNaN: true }),
      threePhase: fc.boolean(),
      cycleMomentum: fc.boolean(),
      mom: momentumPair,
      extra: fc.nat(10_000),
    })
    .filter((o) => o.pctStart * o.totalSteps !== 1);

  test('every step < totalSteps within 1e-12 relative; held afterwards; bounded; monotone phases', () => {
    fc.assert(
      fc.property(torchArb, (o) => {
        const { maxLr, totalSteps: T, pctStart, anneal, divFactor, finalDivFactor, threePhase, cycleMomentum, mom, extra } = o;
        const oc = oneCycle({ preset: 'pytorch', maxLr, totalSteps: T, pctStart, anneal, divFactor, finalDivFactor, threePhase, cycleMomentum, ...mom });
        const ref = new TorchOneCycleLR(maxLr, T, pctStart, anneal, cycleMomentum, mom.minMomentum, mom.maxMomentum, divFactor, finalDivFactor, threePhase);
        const initialLr = maxLr / divFactor;
        const minLr = initialLr / finalDivFactor;
        const ends = ref._schedule_phases.map((p) => p.end_step);
        assert.deepEqual(oc.phases.map((p) => p.endStep), ends);
        const tol = 1e-12;
        let prev = { lr: Number.NaN, m: Number.NaN, phase: -1 };
        for (let s = 0; s < T; s++) {
          assertClose(oc.lr(s), ref.group['lr']!, tol, `lr(${s})`);
          assertClose(oc.momentum(s), cycleMomentum ? ref.group['momentum']! : mom.maxMomentum, tol, `momentum(${s})`);
          const lr = oc.lr(s);
          const m = oc.momentum(s);
          // Absolute slack: the linear anneal (end - start) * pct + start cancels near min_lr.
          assert.ok(lr >= minLr - tol * maxLr && lr <= maxLr * (1 + tol), `lr(${s}) = ${lr} outside [${minLr}, ${maxLr}]`);
          assert.ok(m >= mom.minMomentum - tol && m <= mom.maxMomentum + tol, `momentum(${s}) out of bounds`);
          // Phase of step s, as get_lr picks it.
          let phase = ends.findIndex((e) => s <= e);
          if (phase < 0) phase = ends.length - 1;
          if (phase === prev.phase) {
            const rising = phase === 0;
            assert.ok(rising ? lr >= prev.lr : lr <= prev.lr, `lr not monotone in phase ${phase} at ${s}`);
            if (cycleMomentum && phase < 2) assert.ok(rising ? m <= prev.m : m >= prev.m, `momentum not inverse in phase ${phase} at ${s}`);
          }
          prev = { lr, m, phase };
          if (s < T - 1) ref.step();
        }
        // When step T-1 falls in the last phase, pct is exactly 1 there and cos ends exactly at
        // min_lr (cos(pi) + 1 == 0). (Three-phase with pct_start >= ~0.5 never gets there.)
        if (anneal === 'cos' && ends.slice(0, -1).every((e) => T - 1 > e)) assert.equal(oc.finalLr, minLr);
        assertHeld(oc, extra);
      }),
      RUNS,
    );
  });

  test('OneCycleLR(max_lr=1, total_steps=10), by hand', () => {
    const oc = oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 10 });
    // end steps: 0.3 * 10 - 1 = 2 and 9.
    assert.deepEqual(oc.phases.map((p) => p.endStep), [2, 9]);
    assertClose(oc.lr(0), 0.04, 1e-12); // initial_lr = 1 / 25 (PyTorch's formula gives 0.040000000000000036)
    assertClose(oc.lr(1), 0.52, 1e-15); // pct 0.5: 1 + (0.04 - 1) / 2 * (cos(pi/2) + 1)
    assert.equal(oc.lr(2), 1); // pct 1: cos(pi) + 1 == 0
    assert.equal(oc.lr(9), 0.04 / 1e4); // min_lr
    assert.equal(oc.lr(10), 0.04 / 1e4); // held (PyTorch would extrapolate, then raise)
    assertClose(oc.momentum(0), 0.95, 1e-15);
    assertClose(oc.momentum(1), 0.9, 1e-15);
    assertClose(oc.momentum(2), 0.85, 1e-15);
    assertClose(oc.momentum(9), 0.95, 1e-15);
    const lin = oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 10, anneal: 'linear' });
    assertClose(lin.lr(1), 0.52, 1e-15); // (1 - 0.04) * 0.5 + 0.04
  });

  test('float phase boundaries are reproduced, not rounded', () => {
    // 0.29 * 100 = 28.999999999999996, so the rise ends at 27.999999999999996, not at 27 as
    // floor() would make it: step 28 is in the fall phase at pct ~5e-17, i.e. still max_lr
    // (with the rise ending at 27, step 28 would be 1/72 of the way down).
    assert.equal(0.29 * 100, 28.999999999999996);
    const a = oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, pctStart: 0.29 });
    assert.equal(a.phases[0]!.endStep, 27.999999999999996);
    assert.equal(a.phases[1]!.startStep, 27.999999999999996);
    assert.equal(a.lr(28), 1);
    assert.ok(a.lr(27) < 1 && a.lr(29) < 1);
    // Non-integer pct_start * T: the rise ends at 0.333 * 100 - 1 = 32.3, between two steps,
    // so no step sees max_lr. Values from _annealing_cos written out by hand:
    const e = 0.333 * 100 - 1;
    const b = oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, pctStart: 0.333 });
    assertClose(b.lr(32), 1 + ((0.04 - 1) / 2) * (Math.cos((Math.PI * 32) / e) + 1), 1e-15, 'lr(32)');
    assertClose(b.lr(33), 0.04 / 1e4 + ((1 - 0.04 / 1e4) / 2) * (Math.cos((Math.PI * (33 - e)) / (99 - e)) + 1), 1e-15, 'lr(33)');
    assert.ok(b.lr(32) < 1 && b.lr(33) < 1 && b.lr(31) < b.lr(32));
    // Three-phase: 0.25 * 100 -> ends 24, 48, 99; the first two phases mirror each other.
    const c = oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, pctStart: 0.25, threePhase: true });
    assert.deepEqual(c.phases.map((p) => p.endStep), [24, 48, 99]);
    assert.deepEqual([c.lr(24), c.lr(48), c.lr(99)], [1, 0.04, 0.04 / 1e4]);
    assertClose(c.lr(12), c.lr(36), 1e-15, 'mirror');
    assert.deepEqual([c.momentum(24), c.momentum(48), c.momentum(70)], [0.85, 0.95, 0.95]);
  });

  test('pctStart * totalSteps == 1 throws (PyTorch: ZeroDivisionError at step 0)', () => {
    assert.throws(() => new TorchOneCycleLR(1, 10, 0.1), /ZeroDivisionError/);
    assert.throws(() => oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 10, pctStart: 0.1 }), /^RangeError: oneCycle\(pytorch\): pctStart \* totalSteps must not equal 1/);
  });
});

// ---------------------------------------------------------------------------------------------
// fastai: transliteration of fastai/callback/schedule.py (SchedCos, combine_scheds, combined_cos,
// fit_one_cycle) and of how ParamScheduler/TrainEvalCallback feed it pct_train. fastai's
// `tensor()` makes the phase table float32; Float32Array stands in for torch.float32.
// ---------------------------------------------------------------------------------------------
function SchedCos(start: number, end: number): (pos: number) => number {
  return (pos) => start + ((1 + Math.cos(Math.PI * (1 - pos))) * (end - start)) / 2;
}

function combine_scheds(pcts_in: number[], scheds: ((pos: number) => number)[]): (pos: number) => number {
  assert.equal(pcts_in.reduce((a, b) => a + b, 0), 1); // assert sum(pcts) == 1.
  const raw = Float32Array.from([0, ...pcts_in]); // tensor([0] + L(pcts)) -> float32
  const pcts = new Float32Array(raw.length); // torch.cumsum (double accumulator on CPU)
  let acc = 0;
  raw.forEach((v, i) => {
    acc += v;
    pcts[i] = acc;
  });
  const pct_lim = pcts.length - 2;
  return (pos) => {
    const f = new Float32Array(4);
    f[0] = pos; // the Python float meets a float32 tensor
    let last = -1;
    pcts.forEach((p, i) => {
      if (f[0]! >= p) last = i; // (pos >= pcts).nonzero().max()
    });
    const idx = Math.min(last, pct_lim);
    f[1] = f[0]! - pcts[idx]!;
    f[2] = pcts[idx + 1]! - pcts[idx]!;
    f[3] = f[1]! / f[2]!; // actual_pos, a float32 tensor; .item() gives its double value
    return scheds[idx]!(f[3]!);
  };
}

function combined_cos(pct: number, start: number, middle: number, end: number): (pos: number) => number {
  return combine_scheds([pct, 1 - pct], [SchedCos(start, middle), SchedCos(middle, end)]);
}

/** fit_one_cycle's scheds, evaluated before every training batch of n_epoch epochs of n_iter batches. */
function fastaiFitOneCycle(
  n_epoch: number,
  n_iter: number,
  lr_max: number,
  div = 25,
  div_final = 1e5,
  pct_start = 0.25,
  moms: [number, number, number] = [0.95, 0.85, 0.95],
): { lr: number[]; mom: number[]; pos: number[] } {
  const scheds = { lr: combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final), mom: combined_cos(pct_start, ...moms) };
  const out = { lr: [] as number[], mom: [] as number[], pos: [] as number[] };
  let pct_train = 0;
  for (let epoch = 0; epoch < n_epoch; epoch++) {
    pct_train = epoch / n_epoch; // TrainEvalCallback.before_train
    for (let i = 0; i < n_iter; i++) {
      out.pos.push(pct_train);
      out.lr.push(scheds.lr(pct_train)); // ParamScheduler.before_batch
      out.mom.push(scheds.mom(pct_train));
      pct_train += 1 / (n_iter * n_epoch); // TrainEvalCallback.after_batch
    }
  }
  return out;
}

describe("oneCycle({ preset: 'fastai' }) vs fit_one_cycle", () => {
  const fastaiArb = fc.record({
    maxLr: logUniform(-4, 1),
    nEpoch: fc.integer({ min: 1, max: 8 }),
    nIter: fc.integer({ min: 1, max: 120 }),
    pctStart: pctStartArb,
    divFactor: fc.double({ min: 1, max: 100, noNaN: true }),
    finalDivFactor: fc.double({ min: 1, max: 1e6, noNaN: true }),
    mom: momentumPair,
    extra: fc.nat(10_000),
  });

  test('matches combined_cos at pos = step / totalSteps to 1e-12; bounded; monotone; held end', () => {
    fc.assert(
      fc.property(fastaiArb, (o) => {
        const { maxLr, nEpoch, nIter, pctStart, divFactor, finalDivFactor, mom, extra } = o;
        const T = nEpoch * nIter;
        const oc = oneCycle({ preset: 'fastai', maxLr, totalSteps: T, pctStart, divFactor, finalDivFactor, ...mom });
        const lrRef = combined_cos(pctStart, maxLr / divFactor, maxLr, maxLr / finalDivFactor);
        const momRef = combined_cos(pctStart, mom.maxMomentum, mom.minMomentum, mom.maxMomentum);
        const lo = Math.min(maxLr / divFactor, maxLr / finalDivFactor);
        let peakSeen = false;
        for (let s = 0; s < T; s++) {
          const lr = oc.lr(s);
          const m = oc.momentum(s);
          assertClose(lr, lrRef(s / T), 1e-12, `lr(${s})`);
          assertClose(m, momRef(s / T), 1e-12, `momentum(${s})`);
          assert.ok(lr >= lo * (1 - 1e-12) && lr <= maxLr * (1 + 1e-12));
          assert.ok(m >= mom.minMomentum - 1e-12 && m <= mom.maxMomentum + 1e-12);
          // Phase by fastai's rule (float32 comparison), then monotone within it.
          const second = Math.fround(s / T) >= Math.fround(pctStart);
          if (s > 0 && second === Math.fround((s - 1) / T) >= Math.fround(pctStart)) {
            const dLr = lr - oc.lr(s - 1);
            const dM = m - oc.momentum(s - 1);
            assert.ok(second ? dLr <= 0 && dM >= 0 : dLr >= 0 && dM <= 0, `not monotone at ${s}`);
          }
          if (second && !peakSeen) {
            peakSeen = true;
            // First step of phase 2 sits at actual_pos = 0 exactly when pos rounds to pct in float32.
            if (Math.fround(s / T) === Math.fround(pctStart)) assert.equal(lr, maxLr);
          }
        }
        assert.equal(oc.lr(0), maxLr / divFactor);
        assert.equal(oc.momentum(0), mom.maxMomentum);
        assertHeld(oc, extra);
      }),
      RUNS,
    );
  });

  test("with fastai's accumulated pct_train (epochs x batches) the values agree to float32 precision", () => {
    let exact = 0;
    let total = 0;
    fc.assert(
      fc.property(fastaiArb, (o) => {
        const { maxLr, nEpoch, nIter, pctStart, divFactor, finalDivFactor, mom } = o;
        const T = nEpoch * nIter;
        const oc = oneCycle({ preset: 'fastai', maxLr, totalSteps: T, pctStart, divFactor, finalDivFactor, ...mom });
        const ref = fastaiFitOneCycle(nEpoch, nIter, maxLr, divFactor, finalDivFactor, pctStart, [mom.maxMomentum, mom.minMomentum, mom.maxMomentum]);
        for (let s = 0; s < T; s++) {
          total++;
          if (oc.lr(s) === ref.lr[s]) exact++;
          // pct_train drifts from s / T by a few double ulps; after float32 rounding that is at
          // most one float32 ulp of actual_pos, ~1e-7 of the lr range.
          assert.ok(Math.abs(oc.lr(s) - ref.lr[s]!) <= 1e-6 * maxLr, `lr(${s}): ${oc.lr(s)} vs ${ref.lr[s]}`);
          assert.ok(Math.abs(oc.momentum(s) - ref.mom[s]!) <= 1e-6, `momentum(${s})`);
        }
      }),
      { numRuns: 40 },
    );
    assert.ok(exact / total > 0.99, `only ${exact}/${total} steps bit-identical`);
  });

  test('fit_one_cycle(lr_max=1) over 100 steps, by hand', () => {
    const oc = oneCycle({ preset: 'fastai', maxLr: 1, totalSteps: 100 });
    assert.equal(oc.lr(0), 0.04); // lr_max / div: SchedCos(start, end)(0) = start + 0
    assert.equal(oc.lr(25), 1); // pos 0.25 = pct_start: phase 2 at actual_pos 0
    assert.equal(oc.momentum(0), 0.95);
    assert.equal(oc.momentum(25), 0.85);
    assert.deepEqual(oc.phases.map((p) => [p.startStep, p.endStep]), [[0, 25], [25, 100]]);
    // Never reaches lr_max / div_final = 1e-5: step 99 is pos 0.99.
    assert.ok(oc.finalLr > 1e-5 && oc.finalLr < 1e-3);
    assert.equal(oc.lr(500), oc.finalLr);
  });
});

describe('oneCycle invalid options', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['maxLr 0', () => oneCycle({ maxLr: 0, totalSteps: 100 }), /^oneCycle: option 'maxLr' must be a finite number > 0/],
    ['maxLr NaN', () => oneCycle({ maxLr: Number.NaN, totalSteps: 100 }), /^oneCycle: option 'maxLr'/],
    ['maxLr -1 (pytorch)', () => oneCycle({ preset: 'pytorch', maxLr: -1, totalSteps: 100 }), /^oneCycle\(pytorch\): option 'maxLr'/],
    ['totalSteps 0', () => oneCycle({ maxLr: 1, totalSteps: 0 }), /^oneCycle: option 'totalSteps' must be an integer >= 1/],
    ['totalSteps 10.5', () => oneCycle({ preset: 'fastai', maxLr: 1, totalSteps: 10.5 }), /^oneCycle\(fastai\): option 'totalSteps'/],
    ['divFactor 0.5', () => oneCycle({ maxLr: 1, totalSteps: 100, divFactor: 0.5 }), /^oneCycle: option 'divFactor' must be a finite number >= 1/],
    ['finalDivFactor NaN', () => oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, finalDivFactor: Number.NaN }), /^oneCycle\(pytorch\): option 'finalDivFactor'/],
    ['annihilationFraction 0', () => oneCycle({ maxLr: 1, totalSteps: 100, annihilationFraction: 0 }), /^oneCycle: option 'annihilationFraction' must be a fraction in the open interval \(0, 1\)/],
    ['annihilationFraction 1', () => oneCycle({ maxLr: 1, totalSteps: 100, annihilationFraction: 1 }), /^oneCycle: option 'annihilationFraction'/],
    ['pctStart 0', () => oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, pctStart: 0 }), /^oneCycle\(pytorch\): option 'pctStart'/],
    ['pctStart 1', () => oneCycle({ preset: 'fastai', maxLr: 1, totalSteps: 100, pctStart: 1 }), /^oneCycle\(fastai\): option 'pctStart'/],
    ['pctStart NaN', () => oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, pctStart: Number.NaN }), /^oneCycle\(pytorch\): option 'pctStart'/],
    ['min > max momentum', () => oneCycle({ maxLr: 1, totalSteps: 100, minMomentum: 0.96 }), /^oneCycle: option 'minMomentum' \(0.96\) must be <= 'maxMomentum' \(0.95\)/],
    ['momentum > 1', () => oneCycle({ maxLr: 1, totalSteps: 100, maxMomentum: 1.5 }), /^oneCycle: option 'maxMomentum'/],
    ['bad anneal', () => oneCycle({ maxLr: 1, totalSteps: 100, anneal: 'exp' as never }), /^oneCycle: option 'anneal' must be one of 'linear' \| 'cos'/],
    ['fastai linear', () => oneCycle({ preset: 'fastai', maxLr: 1, totalSteps: 100, anneal: 'linear' as never }), /^oneCycle\(fastai\): option 'anneal' must be one of 'cos'/],
    ['bad preset', () => oneCycle({ preset: 'keras' as never, maxLr: 1, totalSteps: 100 }), /^oneCycle: option 'preset'/],
    ['option of another preset', () => oneCycle({ preset: 'pytorch', maxLr: 1, totalSteps: 100, annihilationFraction: 0.1 } as never), /^oneCycle\(pytorch\): unknown option 'annihilationFraction'/],
    ['threePhase on smith', () => oneCycle({ maxLr: 1, totalSteps: 100, threePhase: true } as never), /^oneCycle: unknown option 'threePhase'/],
    ['cycleMomentum not boolean', () => oneCycle({ maxLr: 1, totalSteps: 100, cycleMomentum: 1 as never }), /^oneCycle: option 'cycleMomentum' must be a boolean/],
    ['not an object', () => oneCycle(null as never), /^oneCycle: options must be an object/],
  ];
  for (const [name, fn, re] of cases) {
    test(name, () => assert.throws(fn, (err: unknown) => err instanceof Error && re.test(err.message)));
  }

  test('steps: negative, fractional and NaN throw; past the end is fine', () => {
    for (const preset of ['smith', 'pytorch', 'fastai'] as const) {
      const oc = oneCycle({ preset, maxLr: 1, totalSteps: 50 });
      for (const bad of [-1, 1.5, Number.NaN]) {
        assert.throws(() => oc.lr(bad), /step must be a non-negative integer/);
        assert.throws(() => oc.momentum(bad), /step must be a non-negative integer/);
      }
      assert.ok(Number.isFinite(oc.lr(1e12)));
    }
  });
});
