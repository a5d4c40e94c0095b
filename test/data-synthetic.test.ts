// The built-in synthetic dataset: deterministic, balanced, in range, and with
// its class information in shape rather than colour or mean image: a
// nearest-class-mean template on raw pixels stays near chance, while a
// shape-sensitive (but position- and colour-blind) feature does far better.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { checkDataset, classCounts } from '../data/dataset.ts';
import { SYNTHETIC_CLASSES, syntheticDataset } from '../data/synthetic.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('synthetic dataset', () => {
  it('is deterministic in its seed, balanced, and valid', () => {
    const a = syntheticDataset({ seed: 3, trainSize: 400, testSize: 100, imageSize: 16 });
    const b = syntheticDataset({ seed: 3, trainSize: 400, testSize: 100, imageSize: 16 });
    const c = syntheticDataset({ seed: 4, trainSize: 400, testSize: 100, imageSize: 16 });
    assert.equal(sha(a.train.images), sha(b.train.images));
    assert.deepEqual(a.train.labels, b.train.labels);
    assert.notEqual(sha(a.train.images), sha(c.train.images));
    assert.notEqual(sha(a.train.images.subarray(0, 100 * 768)), sha(a.test.images));
    for (const ds of [a.train, a.test]) {
      checkDataset(ds);
      assert.deepEqual(ds.shape, [3, 16, 16]);
      assert.deepEqual([...ds.classNames], [...SYNTHETIC_CLASSES]);
    }
    assert.deepEqual(classCounts(a.train), new Array<number>(10).fill(40));
    assert.deepEqual(classCounts(a.test), new Array<number>(10).fill(10));
    // the test set does not depend on the train size
    assert.equal(sha(syntheticDataset({ seed: 3, trainSize: 50, testSize: 100, imageSize: 16 }).test.images), sha(a.test.images));
    // normalised with the train set's own statistics, which are sane
    assert.deepEqual(a.test.normalization, a.train.normalization);
    for (let ch = 0; ch < 3; ch++) {
      assert.ok(a.train.normalization.mean[ch]! > 0.35 && a.train.normalization.mean[ch]! < 0.65);
      assert.ok(a.train.normalization.std[ch]! > 0.2 && a.train.normalization.std[ch]! < 0.4);
    }
  });

  it('pins the default dataset (32×32, seed 0) byte for byte', () => {
    // A change here changes every experiment that uses the default dataset: update deliberately.
    const { train, test } = syntheticDataset({ trainSize: 64, testSize: 16 });
    assert.deepEqual(train.shape, [3, 32, 32]);
    assert.equal(sha(train.images).slice(0, 16), PINNED_TRAIN);
    assert.equal(sha(test.images).slice(0, 16), PINNED_TEST);
  });

  it('needs shape, not colour: nearest class mean is near chance, an oriented-edge feature is not', () => {
    const { train, test } = syntheticDataset({ seed: 1, trainSize: 2000, testSize: 500, imageSize: 16 });
    const per = 3 * 16 * 16;
    // nearest class mean on raw pixels
    const means = Array.from({ length: 10 }, () => new Float64Array(per));
    const counts = classCounts(train);
    for (let i = 0; i < train.labels.length; i++) {
      const m = means[train.labels[i]!]!;
      for (let p = 0; p < per; p++) m[p]! += train.images[i * per + p]! / counts[train.labels[i]!]!;
    }
    let templateHits = 0;
    for (let i = 0; i < test.labels.length; i++) {
      let best = 0;
      let bestD = Infinity;
      means.forEach((m, k) => {
        let d = 0;
        for (let p = 0; p < per; p++) d += (test.images[i * per + p]! - m[p]!) ** 2;
        if (d < bestD) [bestD, best] = [d, k];
      });
      if (best === test.labels[i]) templateHits++;
    }
    // horizontal vs vertical stripes by the balance of vertical and horizontal gradients
    const edgeRatio = (images: Uint8Array, i: number): number => {
      let gx = 0;
      let gy = 0;
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < 15; y++) {
          for (let x = 0; x < 15; x++) {
            const at = i * per + c * 256 + y * 16 + x;
            gx += Math.abs(images[at + 1]! - images[at]!);
            gy += Math.abs(images[at + 16]! - images[at]!);
          }
        }
      }
      return gy / (gx + gy);
    };
    let stripeHits = 0;
    let stripes = 0;
    for (let i = 0; i < test.labels.length; i++) {
      const l = test.labels[i]!;
      if (l !== 6 && l !== 7) continue;
      stripes++;
      if ((edgeRatio(test.images, i) > 0.5) === (l === 6)) stripeHits++;
    }
    const templateAcc = templateHits / test.labels.length;
    assert.ok(templateAcc < 0.2, `nearest class mean reached ${templateAcc}`);
    assert.ok(stripeHits / stripes > 0.9, `oriented edges told the stripes apart only ${stripeHits}/${stripes} times`);
  });

  it('refuses bad options', () => {
    assert.throws(() => syntheticDataset({ numClasses: 11 }), /numClasses must be 2\.\.10/);
    assert.throws(() => syntheticDataset({ imageSize: 4 }), /imageSize must be an integer ≥ 8/);
    assert.throws(() => syntheticDataset({ trainSize: -1 }), /trainSize must be an integer ≥ 0/);
  });
});

const PINNED_TRAIN = 'adeb851f234b2d1b';
const PINNED_TEST = '7c6cd2180684eab3';
