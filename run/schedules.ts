// From a training configuration to the optimizer's LR and momentum schedules.
import type { TrainConfig } from './config.ts';
import { constant, expRange, oneCycle, type Schedule, stepDecay, triangular, triangular2 } from '../schedules/index.ts';

export interface TrainSchedules {
  lr: Schedule;
  momentum: Schedule;
  /** a one-line description for logs and summary.json */
  describe: string;
}

export function buildSchedules(c: TrainConfig, totalSteps: number, maxLr: number): TrainSchedules {
  switch (c.schedule) {
    case 'one-cycle': {
      const divFactor = c.minLr !== undefined ? maxLr / c.minLr : undefined;
      const common = {
        maxLr,
        totalSteps,
        maxMomentum: c.momentum,
        minMomentum: c.minMomentum,
        cycleMomentum: c.cycleMomentum,
        ...(divFactor !== undefined ? { divFactor } : {}),
      };
      const cycle =
        c.preset === 'smith'
          ? oneCycle({ ...common, ...(c.annihilationFraction !== undefined ? { annihilationFraction: c.annihilationFraction } : {}) })
          : oneCycle({ ...common, preset: c.preset });
      return {
        lr: cycle.lr,
        momentum: cycle.momentum,
        describe: `one-cycle (${c.preset}) ${cycle.initialLr.toPrecision(3)} → ${maxLr} → ${cycle.finalLr.toPrecision(3)} over ${totalSteps} steps, momentum ${cycle.maxMomentum} → ${cycle.minMomentum} → ${cycle.maxMomentum}`,
      };
    }
    case 'step':
      return {
        lr: stepDecay(maxLr, c.milestones, c.gamma),
        momentum: constant(c.momentum),
        describe: `step ${maxLr} × ${c.gamma} at [${c.milestones.join(', ')}], momentum ${c.momentum}`,
      };
    case 'constant':
      return { lr: constant(maxLr), momentum: constant(c.momentum), describe: `constant ${maxLr}, momentum ${c.momentum}` };
    case 'clr': {
      const baseLr = c.minLr ?? maxLr / 10;
      const stepSize = c.clrStepSize ?? Math.max(1, Math.floor(totalSteps / 8));
      const o = { baseLr, maxLr, stepSize };
      const lr = c.clrMode === 'triangular' ? triangular(o) : c.clrMode === 'triangular2' ? triangular2(o) : expRange({ ...o, gamma: 0.99994 });
      return { lr, momentum: constant(c.momentum), describe: `CLR ${c.clrMode} ${baseLr}–${maxLr}, step size ${stepSize}, momentum ${c.momentum}` };
    }
  }
}
