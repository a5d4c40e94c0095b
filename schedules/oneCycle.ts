/**
 * The 1cycle policy. Smith & Topin 2017, "Super-Convergence" (arXiv:1708.07120), and Smith 2018,
 * "A disciplined approach to neural network hyper-parameters: Part 1" (arXiv:1803.09820), sec. 4.1:
 * one cycle of two equal steps, lr rising from maxLr/divFactor to maxLr and back, then
 * "the last few iterations" annihilating the lr well below the cycle minimum; momentum cycles
 * inversely (0.95 -> 0.85 -> 0.95) and stays at its maximum while the lr is annihilated.
 *
 * Default ('smith') phase boundaries, in integer steps (T = totalSteps):
 *   A         = max(2, Math.round(annihilationFraction * T))  steps in the annihilation phase,
 *                                                             counting the step where it starts
 *   peakStep  = Math.floor((T - A) / 2)                       rise length = fall length
 *   cycleEnd  = 2 * peakStep                                  (an odd leftover step goes to annihilation)
 *   lastStep  = T - 1
 * and the values there are exact:
 *   step 0: lr = maxLr/divFactor = minLr,  momentum = maxMomentum
 *   peakStep: lr = maxLr,                  momentum = minMomentum
 *   cycleEnd: lr = minLr,                  momentum = maxMomentum
 *   lastStep and after: lr = minLr/finalDivFactor, momentum = maxMomentum
 * Between anchors the value is interpolated (linear default, or 'cos') and never leaves the
 * anchors' range. Example: T=100 with the defaults gives anchors 0, 45, 90, 99 (the last 10
 * steps, 90..99, are the annihilation phase). Throws if peakStep < 1 (with the default
 * annihilationFraction: totalSteps < 4).
 *
 * preset 'pytorch' and 'fastai' reproduce those libraries instead (see oneCyclePytorch.ts and
 * oneCycleFastai.ts); their defaults (div 25, final divisors, cosine, pct_start) are theirs.
 */
import type { Anneal, OneCycle, OneCyclePhase } from './types.ts';
import { interpolate } from './interpolate.ts';
import {
  COMMON_KEYS,
  assemble,
  parseCommon,
  type FastaiOneCycleOptions,
  type OneCycleOptions,
  type PyTorchOneCycleOptions,
  type SmithOneCycleOptions,
} from './oneCycleCommon.ts';
import { pytorchOneCycle } from './oneCyclePytorch.ts';
import { fastaiOneCycle } from './oneCycleFastai.ts';
import { requireFraction, requireKnownKeys, requireObject, requireOneOf } from './validate.ts';

export type { FastaiOneCycleOptions, OneCycleOptions, PyTorchOneCycleOptions, SmithOneCycleOptions };

export function oneCycle(options: OneCycleOptions): OneCycle {
  requireObject('oneCycle', options);
  const preset = requireOneOf('oneCycle', 'preset', options.preset ?? 'smith', ['smith', 'pytorch', 'fastai'] as const);
  switch (preset) {
    case 'pytorch':
      return pytorchOneCycle(options as PyTorchOneCycleOptions);
    case 'fastai':
      return fastaiOneCycle(options as FastaiOneCycleOptions);
    case 'smith':
      return smithOneCycle(options as SmithOneCycleOptions);
  }
}

function smithOneCycle(o: SmithOneCycleOptions): OneCycle {
  const b = 'oneCycle';
  requireKnownKeys(b, o, [...COMMON_KEYS, 'annihilationFraction', 'anneal']);
  const c = parseCommon(b, o, { divFactor: 10, finalDivFactor: 100 });
  const annihilationFraction = requireFraction(b, 'annihilationFraction', o.annihilationFraction ?? 0.1);
  const anneal: Anneal = requireOneOf(b, 'anneal', o.anneal ?? 'linear', ['linear', 'cos'] as const);
  const T = c.totalSteps;

  const annihilationSteps = Math.max(2, Math.round(annihilationFraction * T));
  const peakStep = Math.floor((T - annihilationSteps) / 2);
  if (peakStep < 1) {
    throw new RangeError(
      `${b}: option 'totalSteps' (${T}) is too small for annihilationFraction ${annihilationFraction}: ` +
        'need at least one step of rise, one of fall and two of annihilation',
    );
  }
  const cycleEnd = 2 * peakStep;
  const lastStep = T - 1;
  const minLr = c.maxLr / c.divFactor;
  const finalLr = minLr / c.finalDivFactor;
  const maxM = c.maxMomentum;
  const minM = c.minMomentum;
  const phases: OneCyclePhase[] = [
    { name: 'rise', startStep: 0, endStep: peakStep, lr: [minLr, c.maxLr], momentum: [maxM, minM] },
    { name: 'fall', startStep: peakStep, endStep: cycleEnd, lr: [c.maxLr, minLr], momentum: [minM, maxM] },
    { name: 'annihilation', startStep: cycleEnd, endStep: lastStep, lr: [minLr, finalLr], momentum: [maxM, maxM] },
  ];
  const kind = anneal === 'cos' ? 'cos' : 'linear';
  const evaluate = (step: number, pick: (p: OneCyclePhase) => readonly [number, number]): number => {
    // A boundary step belongs to the earlier phase; both give the same (exact) anchor value.
    const p = step <= peakStep ? phases[0]! : step <= cycleEnd ? phases[1]! : phases[2]!;
    const [from, to] = pick(p);
    return interpolate(kind, from, to, (step - p.startStep) / (p.endStep - p.startStep));
  };
  return assemble(b, 'smith', anneal, c, phases, (s) => evaluate(s, (p) => p.lr), (s) => evaluate(s, (p) => p.momentum));
}
