// Automatic weight decay / batchnorm momentum: the halving plan fits the budget,
// the tune picks among the candidates within it, and an interrupted tune resumes
// without redoing finished trials; its recipe is accepted by `train --recipe`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS, readRecipe, resolveConfig, validateConfig } from '../run/config.ts';
import type { Device } from '../engine/index.ts';
import { loadDatasets } from '../run/session.ts';
import { halvingPlan, tune } from '../run/tune.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

describe('tune', () => {
  it('plans successive halving within the budget', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 2, max: 4 }), fc.integer({ min: 500, max: 100_000 }), (n, eta, budget) => {
        let plan;
        try {
          plan = halvingPlan(n, budget, eta);
        } catch (e) {
          assert.match((e as Error).message, /too small/);
          return;
        }
        const used = plan.reduce((s, r) => s + r.steps * r.candidates, 0);
        assert.ok(used <= budget, `${used} > ${budget}`);
        assert.equal(plan[0]!.candidates, n);
        for (let k = 1; k < plan.length; k++) {
          assert.equal(plan[k]!.candidates, Math.ceil(plan[k - 1]!.candidates / eta));
          assert.equal(plan[k]!.steps, plan[k - 1]!.steps * eta);
        }
      }),
    );
    assert.deepEqual(halvingPlan(4, 240, 2), [{ steps: 20, candidates: 4 }, { steps: 40, candidates: 2 }, { steps: 80, candidates: 1 }]);
  });

  it('chooses among the candidates, and an interrupted tune continues without redoing trials', async () => {
    const out = mkdtempSync(join(tmpdir(), 'onecycle-tune-'));
    const config = validateConfig(
      { ...DEFAULTS, model: 'smallcnn', width: 4, imageSize: 16, syntheticTrain: 320, syntheticTest: 64, valSplit: 0.2, batchSize: 32, maxLr: 0.4, out },
      'test',
    );
    const data = await loadDatasets(config);
    const journal = join(out, 'tune-trials.jsonl');
    const common = { device, config, data, maxLr: 0.4, weightDecays: [1e-3, 0], bnMomenta: [0.1, 0.01], budget: 120, eta: 2, journal };
    let runs = 0;
    const first = await tune({ ...common, shouldStop: () => runs++ >= 2 });
    assert.equal(first.interrupted, true);
    assert.equal(first.trials.length, 2);
    const lines = () => readFileSync(journal, 'utf8').trim().split('\n').length;
    assert.equal(lines(), 2);
    const logs: string[] = [];
    const second = await tune({ ...common, log: (l) => logs.push(l) });
    assert.equal(second.interrupted, false);
    assert.equal(logs.filter((l) => l.includes('done before')).length, 2, logs.join('\n'));
    assert.equal(lines(), 4 + 2 + 1, 'each trial ran once');
    assert.ok([1e-3, 0].includes(second.best.weightDecay) && [0.1, 0.01].includes(second.best.bnMomentum));
    assert.ok(second.budgetUsed + 2 * 10 <= 120);
  });

  it('the tune command writes a recipe that train --recipe accepts', () => {
    const out = mkdtempSync(join(tmpdir(), 'onecycle-tune-cli-'));
    const root = new URL('..', import.meta.url).pathname;
    execFileSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'tune', '--model', 'smallcnn', '--width', '4', '--image-size', '16',
      '--synthetic-train', '256', '--synthetic-test', '64', '--batch-size', '32', '--max-lr', '0.4', '--budget', '60',
      '--weight-decays', '1e-4,0', '--bn-momenta', '0.1', '--eta', '2', '--out', out, '--quiet'], { cwd: root, stdio: 'pipe' });
    const recipePath = join(out, 'tuned-recipe.json');
    const recipe = readRecipe(recipePath);
    const c = resolveConfig(recipe, {}, recipePath);
    assert.ok([1e-4, 0].includes(c.weightDecay));
    assert.equal(c.bnMomentum, 0.1);
    const tuned = JSON.parse(readFileSync(join(out, 'tune.json'), 'utf8')) as { best: { weightDecay: number } };
    assert.equal(tuned.best.weightDecay, c.weightDecay);
    assert.match(readFileSync(join(out, 'tune.svg'), 'utf8'), /<svg/);
  });
});
