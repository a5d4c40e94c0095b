// The real CIFAR-10 in ../shared/data (xz-compressed official batch files):
// data_batch_1 and test_batch parse, with the official counts, labels, class
// names and class balance. Skipped, saying why, where the data or xz is absent.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { CIFAR10_CLASSES, CIFAR10_NORMALIZATION, hasXz, loadCifar10 } from '../data/cifar.ts';
import { classCounts, computeNormalization } from '../data/dataset.ts';

const DATA = join(dirname(dirname(fileURLToPath(import.meta.url))), '..', 'shared', 'data', 'cifar-10-batches-bin');

describe('real CIFAR-10 (../shared/data)', () => {
  it('data_batch_1 and test_batch: 10000 records each, labels 0..9, 1000 test images per class', async (t) => {
    if (!existsSync(DATA)) return t.skip(`${DATA} is absent: the real-data check needs the shared CIFAR-10 files`);
    if (!(await hasXz())) return t.skip('the xz program is not installed (apt-get install xz-utils): the shared files are .xz');
    const { train, test } = await loadCifar10(DATA, { trainFiles: [1] });
    assert.equal(train.labels.length, 10000);
    assert.equal(test.labels.length, 10000);
    assert.equal(train.images.length, 10000 * 3072);
    assert.deepEqual([...train.classNames], [...CIFAR10_CLASSES]);
    for (const ds of [train, test]) assert.ok(ds.labels.every((l) => l >= 0 && l <= 9));
    assert.deepEqual(classCounts(test), new Array<number>(10).fill(1000));
    // each training batch is a random tenth of the training set: every class near 1000
    const counts = classCounts(train);
    assert.ok(counts.every((c) => c > 900 && c < 1100), `data_batch_1 class counts ${counts}`);
    // and its pixel statistics are close to the standard training-set constants
    const stats = computeNormalization(train.images, train.shape);
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(stats.mean[c]! - CIFAR10_NORMALIZATION.mean[c]!) < 0.01, `channel ${c} mean ${stats.mean[c]}`);
      assert.ok(Math.abs(stats.std[c]! - CIFAR10_NORMALIZATION.std[c]!) < 0.01, `channel ${c} std ${stats.std[c]}`);
    }
    t.diagnostic(`data_batch_1 class counts ${counts.join(' ')}; mean ${stats.mean.map((m) => m.toFixed(4)).join(' ')}`);
  });
});
