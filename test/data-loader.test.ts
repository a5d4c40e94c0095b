// The batch loader: each epoch a permutation, batches cover it exactly once,
// drop-last, determinism in (seed, epoch), and a run resumed from a saved state
// (through JSON, as a checkpoint stores it) sees the same batches and the same
// augmentation draws as the uninterrupted run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Dataset } from '../data/dataset.ts';
import { type Batch, BatchLoader, type LoaderState, epochOrder } from '../data/loader.ts';

/** n images of 1×1×2 whose pixels spell their index, labels index mod 3. */
function indexed(n: number): Dataset {
  return {
    name: 'indexed',
    images: Uint8Array.from({ length: 2 * n }, (_, i) => (i % 2 === 0 ? (i >> 1) & 0xff : (i >> 9) & 0xff)),
    labels: Int32Array.from({ length: n }, (_, i) => i % 3),
    numClasses: 3,
    classNames: ['a', 'b', 'c'],
    shape: [1, 1, 2],
    normalization: { mean: [0.5], std: [0.25] },
  };
}

const idOf = (b: Batch, i: number): number => b.images[2 * i]! + 256 * b.images[2 * i + 1]!;

describe('BatchLoader', () => {
  it('each epoch serves every image once, in a new seeded order; images and labels match the indices', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 64 }), fc.integer(), fc.boolean(), (n, bs, seed, dropLast) => {
        fc.pre(!dropLast || n >= bs);
        const loader = new BatchLoader(indexed(n), { batchSize: bs, seed, dropLast });
        const orders: number[][] = [];
        for (let e = 0; e < 2; e++) {
          const seen: number[] = [];
          let batches = 0;
          for (const b of loader.epochBatches()) {
            assert.equal(b.epoch, e);
            assert.equal(b.index, batches++);
            assert.ok(b.labels.length === bs || (!dropLast && b.last), 'only the last batch may be short');
            for (let i = 0; i < b.labels.length; i++) {
              assert.equal(idOf(b, i), b.indices[i]);
              assert.equal(b.labels[i], b.indices[i]! % 3);
              seen.push(b.indices[i]!);
            }
          }
          assert.equal(batches, loader.batchesPerEpoch);
          assert.equal(loader.epoch, e + 1);
          const expectCount = dropLast ? Math.floor(n / bs) * bs : n;
          assert.equal(seen.length, expectCount);
          assert.equal(new Set(seen).size, expectCount);
          orders.push(seen);
        }
        if (n >= 8) assert.notDeepEqual(orders[0], orders[1], 'epochs are shuffled differently');
      }),
      { numRuns: 60 },
    );
  });

  it('the order depends only on (seed, epoch)', () => {
    const a = new BatchLoader(indexed(100), { batchSize: 10, seed: 7 });
    for (let i = 0; i < 25; i++) a.next(); // into epoch 2
    assert.deepEqual(a.order(2), epochOrder(100, 7, 2));
    assert.deepEqual(new BatchLoader(indexed(100), { batchSize: 33, seed: 7 }).order(2), epochOrder(100, 7, 2));
    assert.notDeepEqual(epochOrder(100, 8, 2), epochOrder(100, 7, 2));
    assert.deepEqual([...epochOrder(5, 7, 0, false)], [0, 1, 2, 3, 4]);
  });

  it('a resumed run reproduces the uninterrupted one, batches and augmentation draws alike', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 60 }), fc.boolean(), (n, bs, stopAt, dropLast) => {
        fc.pre(!dropLast || n >= bs);
        const ds = indexed(n);
        const opts = { batchSize: bs, seed: 1234, dropLast };
        const straight = new BatchLoader(ds, opts);
        const all = Array.from({ length: stopAt + 20 }, () => straight.next());
        const first = new BatchLoader(ds, opts);
        for (let i = 0; i < stopAt; i++) first.next();
        const saved = JSON.parse(JSON.stringify(first.state())) as LoaderState;
        const resumed = new BatchLoader(ds, opts);
        resumed.restore(saved);
        for (let i = stopAt; i < stopAt + 20; i++) {
          const b = resumed.next();
          const want = all[i]!;
          assert.deepEqual([b.epoch, b.index, [...b.indices]], [want.epoch, want.index, [...want.indices]]);
          assert.equal(b.rng.nextU32(), want.rng.nextU32());
        }
      }),
      { numRuns: 60 },
    );
  });

  it('refuses a state from another configuration, and bad options', () => {
    const l = new BatchLoader(indexed(50), { batchSize: 8, seed: 1 });
    const s = l.state();
    assert.throws(() => new BatchLoader(indexed(51), { batchSize: 8, seed: 1 }).restore(s), /the state has size = 50, this loader 51/);
    assert.throws(() => new BatchLoader(indexed(50), { batchSize: 8, seed: 2 }).restore(s), /seed = 1, this loader 2/);
    assert.throws(() => l.restore({ ...s, position: 3 }), /bad position 3/);
    assert.throws(() => l.restore({ ...s, position: 56 }), /bad position 56/);
    assert.throws(() => new BatchLoader(indexed(5), { batchSize: 8, seed: 1, dropLast: true }), /too few for one batch of 8 with dropLast/);
    assert.throws(() => new BatchLoader(indexed(5), { batchSize: 0, seed: 1 }), /batchSize must be an integer ≥ 1/);
  });

  it('without shuffling, dataset order', () => {
    const l = new BatchLoader(indexed(10), { batchSize: 4, seed: 1, shuffle: false });
    assert.deepEqual([...l.epochBatches()].map((b) => [...b.indices]), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  });
});
