// The LR range test of a run configuration (its model, data, batch size, momentum,
// weight decay), with its report written into the configuration's output folder; and
// the `--max-lr auto` resolver that train, tune and experiments use.
import type { Device } from '../gpu/device.ts';
import { BatchLoader } from '../data/loader.ts';
import { type RangeTestResult, rangeTest } from '../rangetest/rangeTest.ts';
import { rangeTestSummary, writeRangeTestReport } from '../rangetest/report.ts';
import type { SuggestMethod } from '../rangetest/suggest.ts';
import { augmenterFor, evalSource, loadDatasets, modelFor, trainSource } from './session.ts';
import type { TrainConfig } from './config.ts';

export interface RangeTestSettings {
  startLr: number;
  endLr: number;
  /** 0: one epoch (the seed's choice), at least 100 and at most 500 steps */
  steps: number;
  mode: 'exp' | 'linear';
  method: SuggestMethod;
  evalLoss: boolean;
}

export const RANGE_DEFAULTS: RangeTestSettings = { startLr: 1e-4, endLr: 10, steps: 0, mode: 'exp', method: 'auto', evalLoss: false };

/** Runs a range test for a training configuration (its model, data, batch size, momentum, weight decay). */
export async function rangeTestForConfig(device: Device, config: TrainConfig, s: RangeTestSettings, log: (line: string) => void): Promise<RangeTestResult> {
  // the sweep runs in f32 (`train --max-lr auto --precision f16` trains in f16 at the LR it picks)
  if (config.precision === 'f16') log('range test: runs in f32 (--precision f16 applies to training)');
  const data = await loadDatasets(config, { log });
  const model = await modelFor(device, config, data.train);
  const loader = new BatchLoader(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, dropLast: true });
  const augmenter = augmenterFor(device, config, data.train);
  const held = data.validation ?? data.test;
  try {
    const result = await rangeTest({
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
      // held-out batches as large as evaluation's (a batch-8 run evaluated 8 at a time took minutes per sweep)
      ...(s.evalLoss ? { evalLoss: evalSource(device, held, augmenter, Math.max(config.batchSize, 256)) } : {}),
      onProgress: (step, steps, lr, loss) => {
        if (step % 50 === 0 || step === steps) log(`range test ${step}/${steps}: lr ${lr.toPrecision(3)}, smoothed loss ${loss.toPrecision(4)}`);
      },
    });
    await writeRangeTestReport(config.out, result, { model: config.model, dataset: config.dataset, batchSize: config.batchSize });
    return result;
  } finally {
    augmenter.dispose();
    model.dispose();
  }
}

/** `train --max-lr auto`: a range test first, its suggested max LR for the run. */
export async function resolveMaxLrByRangeTest(device: Device, config: TrainConfig): Promise<number> {
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  log('--max-lr auto: running the LR range test first');
  const r = await rangeTestForConfig(device, config, RANGE_DEFAULTS, log);
  log(rangeTestSummary(r));
  if (!r.suggestion) throw new Error(`--max-lr auto: the range test gave no suggestion (${r.suggestionError}); pass --max-lr N`);
  return r.suggestion.maxLr;
}
