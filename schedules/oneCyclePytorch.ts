/**
 * oneCycle({ preset: 'pytorch' }): torch.optim.lr_scheduler.OneCycleLR reproduced step for step,
 * float arithmetic included. From torch/optim/lr_scheduler.py:
 *
 *   initial_lr = max_lr / div_factor;  min_lr = initial_lr / final_div_factor
 *   phase end steps (floats, not rounded):
 *     two-phase:   pct_start*T - 1,                      T - 1
 *     three-phase: pct_start*T - 1,  2*pct_start*T - 2,  T - 1
 *   get_lr():  start_step = 0.0
 *              for each phase i: if step <= end_step or i is the last phase:
 *                  pct = (step - start_step) / (end_step - start_step); anneal(start, end, pct); break
 *              start_step = end_step
 *   cos:    end + (start - end) / 2.0 * (cos(pi * pct) + 1)
 *   linear: (end - start) * pct + start
 *   lr: initial -> max -> min (two-phase) or initial -> max -> initial -> min (three-phase);
 *   momentum: max -> base -> max (two-phase) or max -> base -> max -> max (three-phase).
 *
 * pct_start*T is used as a float, never rounded: with pct_start 0.333 and T=100 the rise ends at
 * 32.3, between two steps, and no step sees max_lr; 0.29 * 100 is 28.999999999999996, so the
 * rise ends at 27.999999999999996 (floor() would say 27) and step 28 lands in the fall phase at
 * pct ~5e-17, i.e. still max_lr. That is PyTorch's behaviour and is kept.
 * Differences from PyTorch: past step T-1 we hold the T-1 value (PyTorch extrapolates one
 * step then raises); options PyTorch accepts but this module refuses: pct_start of exactly 0 or 1
 * (fractions must be in (0, 1)) and pct_start*T == 1 (PyTorch divides by zero at step 0).
 * cycle_momentum=False leaves the optimizer's momentum alone in PyTorch; here momentum is then
 * the constant maxMomentum.
 */
import type { Anneal, OneCycle, OneCyclePhase } from './types.ts';
import { COMMON_KEYS, assemble, parseCommon, type PyTorchOneCycleOptions } from './oneCycleCommon.ts';
import { requireBoolean, requireFraction, requireKnownKeys, requireOneOf } from './validate.ts';

type TorchAnneal = (start: number, end: number, pct: number) => number;

// Same operation order as OneCycleLR._annealing_cos / _annealing_linear.
const torchCos: TorchAnneal = (start, end, pct) => {
  const cosOut = Math.cos(Math.PI * pct) + 1;
  return end + ((start - end) / 2.0) * cosOut;
};
const torchLinear: TorchAnneal = (start, end, pct) => (end - start) * pct + start;

export function pytorchOneCycle(o: PyTorchOneCycleOptions): OneCycle {
  const b = 'oneCycle(pytorch)';
  requireKnownKeys(b, o, [...COMMON_KEYS, 'pctStart', 'anneal', 'threePhase']);
  const c = parseCommon(b, o, { divFactor: 25, finalDivFactor: 1e4 });
  const pctStart = requireFraction(b, 'pctStart', o.pctStart ?? 0.3);
  const anneal: Anneal = requireOneOf(b, 'anneal', o.anneal ?? 'cos', ['linear', 'cos'] as const);
  const threePhase = requireBoolean(b, 'threePhase', o.threePhase ?? false);
  const T = c.totalSteps;

  const initialLr = c.maxLr / c.divFactor;
  const minLr = initialLr / c.finalDivFactor;
  const maxM = c.maxMomentum;
  const baseM = c.minMomentum;

  const phases: OneCyclePhase[] = [];
  const add = (name: OneCyclePhase['name'], endStep: number, lr: [number, number], momentum: [number, number]): void => {
    const startStep = phases.length === 0 ? 0 : phases[phases.length - 1]!.endStep;
    phases.push({ name, startStep, endStep, lr, momentum });
  };
  add('rise', pctStart * T - 1, [initialLr, c.maxLr], [maxM, baseM]);
  if (threePhase) {
    add('fall', 2 * pctStart * T - 2, [c.maxLr, initialLr], [baseM, maxM]);
    add('annihilation', T - 1, [initialLr, minLr], [maxM, maxM]);
  } else {
    add('fall', T - 1, [c.maxLr, minLr], [baseM, maxM]);
  }
  // Only the first phase can be selected with a zero-length span for a step in [0, T-1]: a later
  // phase i with end_i == end_{i-1} needs end_{i-1} < step <= end_i, impossible, and the last
  // phase with zero length would need step > T-1.
  if (phases[0]!.endStep === 0) {
    throw new RangeError(`${b}: pctStart * totalSteps must not equal 1 (PyTorch divides by zero at step 0), got pctStart=${pctStart}, totalSteps=${T}`);
  }

  const fn: TorchAnneal = anneal === 'cos' ? torchCos : torchLinear;
  const evaluate = (step: number, pick: (p: OneCyclePhase) => readonly [number, number]): number => {
    for (let i = 0; i < phases.length; i++) {
      const p = phases[i]!;
      if (step <= p.endStep || i === phases.length - 1) {
        const pct = (step - p.startStep) / (p.endStep - p.startStep);
        const [from, to] = pick(p);
        return fn(from, to, pct);
      }
    }
    throw new Error('unreachable');
  };
  return assemble(b, 'pytorch', anneal, c, phases, (s) => evaluate(s, (p) => p.lr), (s) => evaluate(s, (p) => p.momentum));
}
