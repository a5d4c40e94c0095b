/** Sampling schedules into arrays for plots, logs and uploads to the GPU. */
import type { OneCycle, Schedule } from './types.ts';
import { checkStep, requireInteger, requireSchedule } from './validate.ts';

/** [schedule(from), ..., schedule(from + steps - 1)]; use Array.from(...) for a number[]. */
export function sampleSchedule(schedule: Schedule, steps: number, from = 0): Float64Array {
  const b = 'sampleSchedule';
  const fn = requireSchedule(b, 'schedule', schedule);
  const n = requireInteger(b, 'steps', steps, 0);
  checkStep(b, from);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = fn(from + i);
  return out;
}

/** Samples several named schedules over the same steps. */
export function sampleSchedules<K extends string>(
  schedules: { readonly [P in K]: Schedule },
  steps: number,
  from = 0,
): { [P in K]: Float64Array } {
  const out = {} as { [P in K]: Float64Array };
  for (const key of Object.keys(schedules) as K[]) out[key] = sampleSchedule(schedules[key], steps, from);
  return out;
}

/** lr and momentum of a one-cycle policy, by default over its totalSteps. */
export function sampleOneCycle(policy: OneCycle, steps: number = policy.totalSteps): { lr: Float64Array; momentum: Float64Array } {
  return { lr: sampleSchedule(policy.lr, steps), momentum: sampleSchedule(policy.momentum, steps) };
}
