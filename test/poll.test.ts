// Pacing dawn.node's polling (gpu/poll.ts): the binding's ticks (native callbacks)
// become timers, every other setImmediate is untouched, and the original comes back
// when the last request is released; on lavapipe a device paces itself, and a sync
// over real work then ticks about once per interval instead of continuously.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { dawnPollInterval, paceDawnPolling } from '../gpu/poll.ts';
import { matmul, randn, tidy } from '../engine/index.ts';
import type { Device } from '../engine/index.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

after(destroyTestDevice);

describe('dawn.node polling', () => {
  it('runs native callbacks from a timer of the interval, script callbacks as immediates, and restores setImmediate', async () => {
    // first in this file, before any device exists: no request yet
    assert.equal(dawnPollInterval(), 0);
    const outer = globalThis.setImmediate;
    const release = paceDawnPolling(30);
    const releaseLonger = paceDawnPolling(60);
    try {
      assert.equal(dawnPollInterval(), 30, 'the shortest interval requested applies');
      const order: string[] = [];
      const t0 = performance.now();
      let nativeAt = 0;
      const marks: string[] = [];
      // a bound function is native code, as the binding's tick is
      const native = marks.push.bind(marks, 'native');
      await new Promise<void>((resolve) => {
        globalThis.setImmediate(native);
        globalThis.setImmediate(() => order.push('script'));
        setTimeout(() => {
          order.push('timer 10 ms');
        }, 10);
        const wait = (): void => {
          if (marks.length) {
            nativeAt = performance.now() - t0;
            resolve();
          } else setTimeout(wait, 1);
        };
        wait();
      });
      assert.deepEqual(order, ['script', 'timer 10 ms'], 'the script callback ran as an immediate, before a 10 ms timer');
      assert.ok(nativeAt >= 25, `the native callback waited for the interval: ran after ${nativeAt.toFixed(1)} ms`);
    } finally {
      release();
      releaseLonger();
    }
    assert.equal(dawnPollInterval(), 0);
    assert.equal(globalThis.setImmediate, outer, 'no request left: the original setImmediate');
    assert.equal(paceDawnPolling(0)(), undefined, 'interval 0 asks for nothing');
    assert.throws(() => paceDawnPolling(-1), /interval must be a finite number/);
  });

  it('a software adapter paces its own polling: a sync over ~0.2 s of kernels ticks about once per interval, not continuously', async (t) => {
    const device: Device = await testDevice();
    if (!device.isSoftwareAdapter) return t.skip('a GPU keeps the binding\'s continuous polling');
    assert.equal(device.pollIntervalMs, 1);
    assert.equal(dawnPollInterval(), 1);
    // count the binding's ticks on their way into the pacing wrapper
    const paced = globalThis.setImmediate;
    let ticks = 0;
    globalThis.setImmediate = ((cb: (...a: unknown[]) => void, ...args: unknown[]) => {
      if (/\[native code\]/.test(Function.prototype.toString.call(cb))) ticks++;
      return paced(cb, ...args);
    }) as typeof setImmediate;
    try {
      const a = randn(device, [512, 512], { seed: 1 });
      await device.sync();
      ticks = 0;
      const t0 = performance.now();
      tidy(() => {
        for (let i = 0; i < 8; i++) matmul(a, a);
      });
      await device.sync();
      const ms = performance.now() - t0;
      a.dispose();
      // continuous polling ticks tens of thousands of times a second (measured: ~30,000)
      assert.ok(ms > 20, `the work took ${ms.toFixed(0)} ms, enough to tell polling apart`);
      assert.ok(ticks <= ms / 1 + 20, `${ticks} ticks in ${ms.toFixed(0)} ms at one per ms`);
      assert.ok(ticks >= 1, 'the binding ticked through the wrapper');
    } finally {
      globalThis.setImmediate = paced;
    }
  });
});
