// The range test over a user's step function (rangetest/loop.ts): no GPU, a
// plain loop. The main case is stochastic gradient descent on a quadratic,
// whose divergence point is known in closed form (lr > 2 / largest curvature).
// The noise matters: on a noiseless quadratic the stiff direction has converged
// to ~0 before the LR gets unstable, and the blow-up shows a decade late (the
// sweep saw 1.3 for 0.2 when tried), as a range test on one fixed batch would.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rangeTest } from '../rangetest/index.ts';
import { emaSmooth } from '../rangetest/smooth.ts';
import { oneCycle, rangeSweep } from '../schedules/index.ts';

/**
 * loss(w) = Σ h_i (w_i − t_i)² / 2 with targets t = 1 + noise·U(−½, ½) drawn per
 * step (a minibatch), trained by SGD: unstable exactly when lr > 2 / max(h).
 */
function quadratic(h: number[], noise = 0.1): { step: (lr: number) => number; loss: () => number; reset: () => void } {
  let w = h.map(() => 0);
  let seed = 1;
  const uniform = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31 - 0.5);
  const lossAt = (t: number[]): number => h.reduce((s, hi, i) => s + (hi * (w[i]! - t[i]!) ** 2) / 2, 0);
  return {
    loss: () => lossAt(h.map(() => 1)),
    reset: () => void ((w = h.map(() => 0)), (seed = 1)),
    step(lr) {
      const t = h.map(() => 1 + noise * uniform());
      const l = lossAt(t); // the batch's loss before its update, as a training loop reports it
      w = w.map((wi, i) => wi - lr * h[i]! * (wi - t[i]!));
      return l;
    },
  };
}

describe('rangeTest over a step function', () => {
  it('gradient descent on a quadratic: stops past the known divergence point, suggests an LR below it, One Cycle trains with it', async () => {
    const h = [1, 10];
    const unstable = 2 / Math.max(...h); // 0.2
    const q = quadratic(h);
    const seen: [number, number][] = [];
    let restored = 0;
    const r = await rangeTest({
      startLr: 1e-4,
      endLr: 10,
      steps: 100,
      step: (lr, i) => {
        seen.push([lr, i]);
        return q.step(lr);
      },
      restore: () => {
        restored++;
        q.reset();
      },
    });
    // the sweep asked for exactly rangeSweep's LRs, in order, and recorded them with their losses
    const sweep = rangeSweep({ start: 1e-4, end: 10, steps: 100 });
    assert.deepEqual(seen, seen.map((_, i) => [sweep(i), i]));
    assert.deepEqual(r.lrs, seen.map(([lr]) => lr));
    assert.equal(r.losses.length, r.steps);
    assert.deepEqual(r.smoothed, emaSmooth(r.losses, 0.98));
    assert.equal(restored, 1);

    assert.ok(r.stoppedEarly, r.stopReason);
    assert.match(r.stopReason, /exceeded 4× its minimum/);
    const stopLr = r.lrs[r.lrs.length - 1]!;
    assert.ok(stopLr > unstable && stopLr < 10, `stopped at lr ${stopLr}: gradient descent cannot diverge below ${unstable}`);
    assert.ok(r.suggestion, r.suggestionError ?? '');
    const { maxLr, minLr } = r.suggestion;
    assert.ok(maxLr > 1e-3 && maxLr < unstable, `suggested ${maxLr}, outside (1e-3, ${unstable})`);
    assert.ok(Math.abs(minLr - maxLr / 10) < 1e-12 * maxLr);

    // One Cycle at the suggested LR, from the restored start, gets down to the noise's floor
    const cycle = oneCycle({ maxLr, totalSteps: 60 });
    const start = q.loss();
    for (let i = 0; i < 60; i++) q.step(cycle.lr(i));
    assert.ok(q.loss() < 1e-3 * start, `loss ${start} → ${q.loss()}`);
  });

  it('scaling every LR by 10 scales the suggestion by 10 (the driver adds no LR scale of its own)', async () => {
    const run = async (c: number): Promise<number> => {
      const q = quadratic([1, 10]);
      const r = await rangeTest({ startLr: 1e-4 * c, endLr: 10 * c, steps: 100, step: (lr) => q.step(lr / c) });
      return r.suggestion!.maxLr;
    };
    const [a, b] = [await run(1), await run(10)];
    assert.ok(Math.abs(b / a - 10) < 1e-9, `${a} and ${b}`);
  });

  it('async steps; a NaN loss stops the sweep and is recorded', async () => {
    const r = await rangeTest({
      startLr: 1e-4,
      endLr: 1,
      steps: 50,
      step: async (lr) => {
        await new Promise((resolve) => setImmediate(resolve));
        return lr > 0.05 ? NaN : 1 / (1 + lr * 100);
      },
    });
    assert.ok(r.stoppedEarly);
    assert.match(r.stopReason, /loss became NaN at step \d+ \(lr 0\.05\d*/);
    assert.ok(Number.isNaN(r.losses[r.losses.length - 1]!));
    assert.equal(r.lrs.length, r.losses.length);
  });

  it('restore runs when the step throws, and the error reaches the caller', async () => {
    let restored = 0;
    await assert.rejects(
      rangeTest({ steps: 20, step: (_lr, i) => (i === 3 ? Promise.reject(new Error('out of memory')) : 1), restore: () => void restored++ }),
      /out of memory/,
    );
    assert.equal(restored, 1);
  });

  it('refuses bad options and a step that returns no number, saying what is wrong', async () => {
    await assert.rejects(rangeTest({} as never), /'step' must be a function/);
    await assert.rejects(rangeTest({ step: () => 1, steps: 5 }), /steps must be an integer ≥ 10, got 5/);
    await assert.rejects(rangeTest({ step: () => 1, startLr: 1, endLr: 0.1 }), /need startLr < endLr/);
    await assert.rejects(rangeTest({ step: () => 1, startLr: -1 }), /startLr must be a finite number > 0/);
    await assert.rejects(rangeTest({ step: (() => 'low') as never }), /step\(0\.00001, 0\) returned string, not a number/);
  });

  it('a flat curve gives no suggestion but a reason, not an exception', async () => {
    const r = await rangeTest({ steps: 30, step: () => 1 });
    assert.equal(r.stoppedEarly, false);
    assert.equal(r.steps, 30);
    if (r.suggestion === null) assert.ok(r.suggestionError && r.suggestionError.length > 0);
  });
});
