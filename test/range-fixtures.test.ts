// suggestLr on range-test curves recorded by this engine (test/fixtures/range-tests,
// written by `range-test` on lavapipe): every method answers inside the sweep and
// below the divergence point, and `auto` sits in the low-loss region it reports.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CROSS_ENTROPY_NOISE_LR_SCALE, suggestLr } from '../rangetest/suggest.ts';

const DIR = new URL('./fixtures/range-tests/', import.meta.url);
const fixtures = readdirSync(DIR).filter((f) => f.endsWith('.json'));

describe('range-test fixtures recorded by this engine', () => {
  it('there are fixtures', () => assert.ok(fixtures.length >= 2));
  for (const file of fixtures) {
    it(file, () => {
      const curve = JSON.parse(readFileSync(new URL(file, DIR), 'utf8')) as { lrs: number[]; losses: number[] };
      const lo = curve.lrs[0]!;
      const hi = curve.lrs[curve.lrs.length - 1]!;
      // auto as the range test runs it on a classifier: with the cross-entropy noise cap
      const auto = suggestLr(curve, { noiseLrScale: CROSS_ENTROPY_NOISE_LR_SCALE });
      for (const method of ['auto', 'steepest', 'minimum', 'valley'] as const) {
        const s = suggestLr(curve, { method });
        // fastai's `minimum` is a tenth of the lr at the minimum, which may lie below the sweep's first lr
        assert.ok(Number.isFinite(s.maxLr) && s.maxLr >= lo / 10 && s.maxLr <= hi, `${method}: ${s.maxLr} outside [${lo / 10}, ${hi}]`);
        assert.ok(Math.abs(s.minLr - s.maxLr / 10) < 1e-12 * s.maxLr, `${method}: minLr`);
        if (auto.divergenceLr !== null) assert.ok(s.maxLr < auto.divergenceLr, `${method}: ${s.maxLr} at or past divergence ${auto.divergenceLr}`);
      }
      if (/too little to read a valley/.test(auto.reason)) {
        // a fall lost in the noise: auto reads the blow-up and answers a decade below it (or below
        // the sweep's end), unless the batch noise limits it to 1e-3 / noise² (linear scaling)
        const blowup = auto.divergenceLr ?? hi;
        const expected = Math.min(blowup / 10, CROSS_ENTROPY_NOISE_LR_SCALE / auto.noise ** 2);
        assert.ok(Math.abs(Math.log10(expected / auto.maxLr)) < 1e-6 || auto.maxLr === lo / 10, auto.reason);
      } else {
        // auto: the smoothed loss at its answer is below the curve's start
        const i = auto.smoothed.lrs.findIndex((lr) => lr >= auto.maxLr);
        assert.ok(auto.smoothed.losses[Math.max(0, i)]! < auto.smoothed.losses[0]!, auto.reason);
      }
    });
  }
});
