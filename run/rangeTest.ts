// The LR range test of a run configuration (its model, data, batch size, momentum,
// weight decay), with its report written into the configuration's output folder; and
// the `--max-lr auto` resolver that train, tune and experiments use.
import { join } from 'node:path';
import type { Device } from '../gpu/device.ts';
import { BatchLoader } from '../data/loader.ts';
import { type Dataset, datasetSize, subset } from '../data/dataset.ts';
import { type RangeTestResult, rangeTest } from '../rangetest/rangeTest.ts';
import { medianPick } from '../rangetest/regret.ts';
import { rangeTestSummary, writeRangeTestReport } from '../rangetest/report.ts';
import type { SuggestMethod } from '../rangetest/suggest.ts';
import { augmenterFor, evalSource, loadDatasets, modelFor, trainSource } from './session.ts';
import type { TrainConfig } from './config.ts';
import type { Augmenter } from '../data/augment.ts';
import type { EvalSource } from '../train/fit.ts';

export interface RangeTestSettings {
  startLr: number;
  endLr: number;
  /** 0: one epoch (the seed's choice), at least 100 and at most 500 steps */
  steps: number;
  mode: 'exp' | 'linear';
  method: SuggestMethod;
  evalLoss: boolean;
  /**
   * Sweeps, each from its own seed (seed, seed + 1, ...: its own initial weights and batch
   * order); the answer is the median of their suggestions. One sweep's pick moves by a factor
   * 1.5-3 from seed to seed on real data; on the LR grids of docs/lr-suggestion.md the median of
   * three lowers the mean regret (0.63 → 0.50 points over seven settings).
   */
  repeats: number;
}

/** Held-out images whose mean loss `--eval-loss` records after every step (the first ones of the held-out set). */
export const EVAL_LOSS_IMAGES = 2048;

export const RANGE_DEFAULTS: RangeTestSettings = { startLr: 1e-4, endLr: 10, steps: 0, mode: 'exp', method: 'auto', evalLoss: false, repeats: 3 };

/** One sweep of a repeated range test. */
export interface RangeTestSweep {
  seed: number;
  /** its report's folder */
  out: string;
  result: RangeTestResult;
}

export interface RangeTestOutcome {
  /** the sweep whose suggestion is the median (the lower middle for an even count); its report is also in config.out */
  median: RangeTestResult;
  sweeps: RangeTestSweep[];
}

/**
 * The range test of a training configuration (its model, data, batch size, momentum, weight
 * decay): `s.repeats` sweeps (one: its report in config.out; several: each in
 * config.out/sweep-N, the median's also in config.out with every sweep's pick beside it).
 */
export async function rangeTestForConfig(device: Device, config: TrainConfig, s: RangeTestSettings, log: (line: string) => void): Promise<RangeTestOutcome> {
  if (!Number.isInteger(s.repeats) || s.repeats < 1) throw new Error(`range test: repeats must be an integer ≥ 1, got ${s.repeats}`);
  // the sweep runs in f32 (`train --max-lr auto --precision f16` trains in f16 at the LR it picks)
  if (config.precision === 'f16') log('range test: runs in f32 (--precision f16 applies to training)');
  const context = { model: config.model, dataset: config.dataset, batchSize: config.batchSize };
  const sweeps: RangeTestSweep[] = [];
  for (let i = 0; i < s.repeats; i++) {
    const seed = config.seed + i;
    const out = s.repeats === 1 ? config.out : join(config.out, `sweep-${i + 1}`);
    if (s.repeats > 1) log(`range test: sweep ${i + 1} of ${s.repeats} (seed ${seed})`);
    const result = await sweepOnce(device, { ...config, seed }, s, log);
    await writeRangeTestReport(out, result, { ...context, seed });
    if (s.repeats > 1) log(`range test: sweep ${i + 1} (seed ${seed}): ${result.suggestion ? `max LR ${result.suggestion.maxLr.toPrecision(3)}` : `no suggestion (${result.suggestionError})`}`);
    sweeps.push({ seed, out, result });
  }
  const picked = sweeps.filter((w) => w.result.suggestion);
  // the median pick as the LR benchmark scores it; no sweep suggested anything: the first one's report says why
  const median = picked.length ? medianPick(picked.map((w) => w.result.suggestion!.maxLr)) : null;
  const chosen = picked.find((w) => w.result.suggestion!.maxLr === median) ?? sweeps[0]!;
  if (s.repeats > 1) {
    await writeRangeTestReport(config.out, chosen.result, {
      ...context,
      seed: chosen.seed,
      median: `of ${picked.length} suggestions from ${s.repeats} sweeps: this sweep's (${chosen.out})`,
      sweeps: sweeps.map((w) => ({ seed: w.seed, out: w.out, maxLr: w.result.suggestion?.maxLr ?? null, minLr: w.result.suggestion?.minLr ?? null })),
    });
  }
  return { median: chosen.result, sweeps };
}

/** What a repeated range test chose, in one line (empty for a single sweep). */
export function repeatsSummary(o: RangeTestOutcome): string {
  if (o.sweeps.length === 1) return '';
  const picks = o.sweeps.map((w) => (w.result.suggestion ? w.result.suggestion.maxLr.toPrecision(3) : 'none')).join(', ');
  const seeds = o.sweeps.map((w) => w.seed).join(', ');
  const m = o.median.suggestion;
  return `${o.sweeps.length} sweeps (seeds ${seeds}) suggested max LR ${picks}; ${m ? `the median, ${m.maxLr.toPrecision(3)}, is the answer (its curve above)` : 'none gave a suggestion'}`;
}

/**
 * What `--eval-loss` records after every step: the mean loss over the first EVAL_LOSS_IMAGES
 * held-out images (the whole set was 100 passes over CIFAR-10's 10,000 test images per
 * sweep, an hour of ResNet-20 on lavapipe), in batches as large as evaluation's (a batch-8
 * run evaluated 8 at a time took minutes per sweep).
 */
export function evalLossSource(device: Device, held: Dataset, augmenter: Augmenter, batchSize: number): EvalSource {
  return evalSource(device, subset(held, Math.min(EVAL_LOSS_IMAGES, datasetSize(held))), augmenter, Math.max(batchSize, 256));
}

async function sweepOnce(device: Device, config: TrainConfig, s: RangeTestSettings, log: (line: string) => void): Promise<RangeTestResult> {
  const data = await loadDatasets(config, { log });
  const model = await modelFor(device, config, data.train);
  const loader = new BatchLoader(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, dropLast: true });
  const augmenter = augmenterFor(device, config, data.train);
  const held = data.validation ?? data.test;
  try {
    return await rangeTest({
      device,
      model,
      train: trainSource(device, loader, augmenter, config.augment),
      startLr: s.startLr,
      endLr: s.endLr,
      ...(s.steps ? { steps: s.steps } : { maxSteps: 500 }),
      mode: s.mode,
      momentum: config.momentum,
      weightDecay: config.weightDecay,
      nesterov: config.nesterov,
      method: s.method,
      ...(s.evalLoss ? { evalLoss: evalLossSource(device, held, augmenter, config.batchSize) } : {}),
      onProgress: (step, steps, lr, loss) => {
        if (step % 50 === 0 || step === steps) log(`range test ${step}/${steps}: lr ${lr.toPrecision(3)}, smoothed loss ${loss.toPrecision(4)}`);
      },
    });
  } finally {
    augmenter.dispose();
    model.dispose();
  }
}

/** `train --max-lr auto`: a range test first (the default protocol: the median of three sweeps), its suggested max LR for the run. */
export async function resolveMaxLrByRangeTest(device: Device, config: TrainConfig): Promise<number> {
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  log(`--max-lr auto: running the LR range test first (${RANGE_DEFAULTS.repeats} sweeps)`);
  const o = await rangeTestForConfig(device, config, RANGE_DEFAULTS, log);
  const r = o.median;
  log(rangeTestSummary(r));
  const repeats = repeatsSummary(o);
  if (repeats) log(repeats);
  if (!r.suggestion) throw new Error(`--max-lr auto: the range test gave no suggestion (${r.suggestionError}); pass --max-lr N`);
  return r.suggestion.maxLr;
}
