/**
 * oneCycle({ preset: 'fastai' }): fastai's Learner.fit_one_cycle (fastai/callback/schedule.py):
 *
 *   scheds = {'lr':  combined_cos(pct_start, lr_max/div, lr_max, lr_max/div_final),
 *             'mom': combined_cos(pct_start, *moms)}            # moms = (0.95, 0.85, 0.95)
 *   combined_cos(pct, start, middle, end) = combine_scheds([pct, 1-pct], [SchedCos(start, middle), SchedCos(middle, end)])
 *   SchedCos(start, end)(pos) = start + (1 + cos(pi * (1 - pos))) * (end - start) / 2
 *   combine_scheds: assert sum(pcts) == 1; pcts = cumsum(tensor([0] + pcts))
 *                   idx = min(last index with pos >= pcts[idx], len(pcts) - 2)
 *                   actual_pos = (pos - pcts[idx]) / (pcts[idx+1] - pcts[idx])
 *
 * ParamScheduler calls the schedules before each training batch with pos = pct_train.
 *
 * Our reading, and the two details that matter for bit-level agreement:
 * 1. pct_train is step / totalSteps, with totalSteps = n_epoch * len(train_dl). fastai's
 *    TrainEvalCallback gets there by resetting pct_train = epoch / n_epoch each epoch and adding
 *    1 / (n_iter * n_epoch) after each batch, which can differ from the quotient by a few double
 *    ulps; after the float32 rounding in (2) this almost never changes a value.
 * 2. fastai's `tensor(...)` makes the phase table float32, so the phase choice and actual_pos are
 *    computed in float32 (pos is rounded to float32 when combined with the tensor). Math.fround
 *    reproduces that; SchedCos itself then runs in float64.
 * fastai never evaluates pos = 1: the last value used, at step T-1, is slightly above
 * lr_max/div_final and is what we hold afterwards.
 */
import type { OneCycle, OneCyclePhase } from './types.ts';
import { COMMON_KEYS, assemble, parseCommon, type FastaiOneCycleOptions } from './oneCycleCommon.ts';
import { requireFraction, requireKnownKeys, requireOneOf } from './validate.ts';

const f32 = Math.fround;

function schedCos(start: number, end: number, pos: number): number {
  return start + ((1 + Math.cos(Math.PI * (1 - pos))) * (end - start)) / 2;
}

export function fastaiOneCycle(o: FastaiOneCycleOptions): OneCycle {
  const b = 'oneCycle(fastai)';
  requireKnownKeys(b, o, [...COMMON_KEYS, 'pctStart', 'anneal']);
  const c = parseCommon(b, o, { divFactor: 25, finalDivFactor: 1e5 });
  requireOneOf(b, 'anneal', o.anneal ?? 'cos', ['cos'] as const);
  const pctStart = requireFraction(b, 'pctStart', o.pctStart ?? 0.25);
  if (pctStart + (1 - pctStart) !== 1) {
    throw new RangeError(`${b}: pctStart=${pctStart} fails fastai's assert sum(pcts) == 1`);
  }
  // Float32 phase table [0, pct, pct + (1 - pct)] (cumsum accumulates in double, stores float32).
  const c1 = f32(pctStart);
  const c2 = f32(c1 + f32(1 - pctStart));
  if (!(c1 > 0 && c1 < c2)) {
    throw new RangeError(`${b}: option 'pctStart' is too close to 0 or 1 for fastai's float32 phase table, got ${pctStart}`);
  }
  const T = c.totalSteps;
  const lrStart = c.maxLr / c.divFactor;
  const lrEnd = c.maxLr / c.finalDivFactor;
  const phases: OneCyclePhase[] = [
    { name: 'rise', startStep: 0, endStep: pctStart * T, lr: [lrStart, c.maxLr], momentum: [c.maxMomentum, c.minMomentum] },
    { name: 'fall', startStep: pctStart * T, endStep: T, lr: [c.maxLr, lrEnd], momentum: [c.minMomentum, c.maxMomentum] },
  ];

  const evaluate = (step: number, pick: (p: OneCyclePhase) => readonly [number, number]): number => {
    const pos = f32(step / T);
    const second = pos >= c1;
    const lo = second ? c1 : 0;
    const hi = second ? c2 : c1;
    const actualPos = f32(f32(pos - lo) / f32(hi - lo));
    const [from, to] = pick(phases[second ? 1 : 0]!);
    return schedCos(from, to, actualPos);
  };
  return assemble(b, 'fastai', 'cos', c, phases, (s) => evaluate(s, (p) => p.lr), (s) => evaluate(s, (p) => p.momentum));
}
