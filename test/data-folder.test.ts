// Image folders: both layouts, the seeded stratified split, bad input (corrupt,
// grayscale/alpha, non-image files, empty class, empty tree), and the decoded
// images' cache (hit, stale rebuild, corrupt rebuild), on small folders
// written by sharp here.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { Rng } from '../engine/random.ts';
import { classCounts, computeNormalization, datasetSize } from '../data/dataset.ts';
import { collectImageFiles, decodeImage, loadImageFolder } from '../data/imageFolder.ts';
import { CACHE_FOLDER } from '../data/imageCache.ts';
import { COLOURS, tempDir, writeImage, writeTree } from './imageFolders.ts';
import { DEFAULTS, type TrainConfig, validateConfig } from '../run/config.ts';
import { loadDatasets } from '../run/session.ts';
import { parseTrainArgs } from '../cli/flags.ts';

const dirs: string[] = [];
const fresh = (tag: string): string => {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const collect = (): { log: (s: string) => void; lines: string[] } => {
  const lines: string[] = [];
  return { log: (s) => lines.push(s), lines };
};

describe('decodeImage', () => {
  it('resizes + centre-crops, or letterboxes, to RGB CHW', async () => {
    // left half red, right half blue, 40 wide × 20 high
    const w = 40;
    const h = 20;
    const raw = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set(x < w / 2 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
    const png = await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
    const crop = await decodeImage(png, 10, 'crop');
    assert.equal(crop.pixels.length, 300);
    // the centre square 20×20 holds both halves: column 0 red, column 9 blue, no black border
    assert.ok(crop.pixels[0]! > 200 && crop.pixels[200]! < 50, 'crop: red at the left');
    assert.ok(crop.pixels[9]! < 50 && crop.pixels[200 + 9]! > 200, 'crop: blue at the right');
    const pad = await decodeImage(png, 10, 'pad');
    // 40×20 fits as 10×5, rows 0-1 and 8-9 black bars
    for (const row of [0, 9]) for (let c = 0; c < 3; c++) assert.equal(pad.pixels[c * 100 + row * 10 + 5], 0, `pad: row ${row} is a black bar`);
    assert.ok(pad.pixels[5 * 10 + 0]! > 200, 'pad: the image is in the middle rows');
  });

  it('expands grayscale and drops alpha, and says so', async () => {
    const rng = new Rng(1);
    const d = fresh('decode');
    await writeImage(join(d, 'g.png'), rng, [100, 100, 100], { channels: 1 });
    await writeImage(join(d, 'ga.png'), rng, [100, 100, 100], { channels: 2 });
    await writeImage(join(d, 'rgba.png'), rng, [200, 10, 10], { channels: 4 });
    const g = await decodeImage(join(d, 'g.png'), 8);
    assert.deepEqual([g.grayscale, g.alpha], [true, false]);
    assert.deepEqual(g.pixels.subarray(0, 64), g.pixels.subarray(64, 128), 'grayscale: R = G');
    const ga = await decodeImage(join(d, 'ga.png'), 8);
    assert.deepEqual([ga.grayscale, ga.alpha], [true, true]);
    const rgba = await decodeImage(join(d, 'rgba.png'), 8);
    assert.deepEqual([rgba.grayscale, rgba.alpha], [false, true]);
    assert.equal(rgba.pixels.length, 3 * 64);
    assert.ok(rgba.pixels[0]! > 150 && rgba.pixels[64]! < 60, 'rgba: the colour is kept');
  });

  it('refuses a damaged file with libvips\' reason', async () => {
    const d = fresh('corrupt');
    await writeImage(join(d, 'ok.jpg'), new Rng(2), [10, 20, 30], { format: 'jpeg', width: 64, height: 64 });
    const bytes = readFileSync(join(d, 'ok.jpg'));
    writeFileSync(join(d, 'cut.jpg'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    writeFileSync(join(d, 'text.png'), 'not a png at all');
    await assert.rejects(decodeImage(join(d, 'cut.jpg'), 8), /./);
    await assert.rejects(decodeImage(join(d, 'text.png'), 8), /unsupported image format|Input file/i);
  });
});

describe('loadImageFolder', () => {
  it('reads ROOT/train + ROOT/val, classes in sorted order, mixed sizes, normalisation from the training images', async () => {
    const root = fresh('split');
    await writeTree(join(root, 'train'), ['red', 'blue', 'green'], 6, 1);
    await writeTree(join(root, 'val'), ['red', 'blue', 'green'], 3, 2);
    const { log } = collect();
    const { train, test, report } = await loadImageFolder({ root, imageSize: 12, log });
    assert.equal(report.layout, 'train/val');
    assert.deepEqual(train.classNames, ['blue', 'green', 'red']);
    assert.deepEqual(test.classNames, train.classNames);
    assert.deepEqual(classCounts(train), [6, 6, 6]);
    assert.deepEqual(classCounts(test), [3, 3, 3]);
    assert.deepEqual(train.shape, [3, 12, 12]);
    assert.equal(train.images.length, 18 * 3 * 144);
    const want = computeNormalization(train.images, train.shape);
    assert.deepEqual(train.normalization, want);
    assert.deepEqual(test.normalization, want, 'the test set uses the training statistics');
    // the class colours survive: the red images' R channel is high
    const red = train.classNames.indexOf('red');
    const i = Array.from(train.labels).indexOf(red);
    const r = train.images.subarray(i * 432, i * 432 + 144).reduce((a, b) => a + b, 0) / 144;
    assert.ok(Math.abs(r - COLOURS.red![0]) < 40, `mean R of a red image is ${r}`);
  });

  it('accepts test/ instead of val/', async () => {
    const root = fresh('testdir');
    await writeTree(join(root, 'train'), ['red', 'blue'], 2, 1);
    await writeTree(join(root, 'test'), ['red', 'blue'], 2, 2);
    const { test } = await loadImageFolder({ root, imageSize: 8, cache: false });
    assert.equal(datasetSize(test), 4);
    assert.match(test.name, /-test$/);
  });

  it('splits one tree seeded and stratified: the same seed the same split, another seed another', async () => {
    const root = fresh('onetree');
    await writeTree(root, ['red', 'green', 'blue'], 10, 3);
    const a = await loadImageFolder({ root, imageSize: 8, seed: 5 });
    assert.equal(a.report.layout, 'one tree');
    assert.deepEqual(classCounts(a.test), [2, 2, 2], 'default test fraction 0.2, per class');
    assert.deepEqual(classCounts(a.train), [8, 8, 8]);
    const b = await loadImageFolder({ root, imageSize: 8, seed: 5 });
    assert.deepEqual(b.test.images, a.test.images);
    assert.deepEqual(b.train.labels, a.train.labels);
    const c = await loadImageFolder({ root, imageSize: 8, seed: 6 });
    assert.notDeepEqual(c.test.images, a.test.images);
    const d = await loadImageFolder({ root, imageSize: 8, seed: 5, testFraction: 0.3 });
    assert.deepEqual(classCounts(d.test), [3, 3, 3]);
    // train and test are disjoint and together the whole tree
    const per = 3 * 64;
    const key = (ds: typeof a.train, i: number): string => Buffer.from(ds.images.subarray(i * per, (i + 1) * per)).toString('base64');
    const seen = new Set<string>();
    for (let i = 0; i < datasetSize(a.train); i++) seen.add(key(a.train, i));
    for (let i = 0; i < datasetSize(a.test); i++) assert.ok(!seen.has(key(a.test, i)), 'a test image is also a training image');
  });

  it('skips a corrupt image with its path and reason, or refuses it with strict', async () => {
    const root = fresh('bad');
    await writeTree(root, ['red', 'blue'], 5, 4);
    const good = readFileSync(join(root, 'red', '000.jpg'));
    writeFileSync(join(root, 'red', 'broken.jpg'), good.subarray(0, 40));
    writeFileSync(join(root, 'blue', 'fake.png'), 'hello');
    const { log, lines } = collect();
    const { train, test, report } = await loadImageFolder({ root, imageSize: 8, log });
    assert.equal(datasetSize(train) + datasetSize(test), 10);
    assert.deepEqual(report.skipped.map((s) => s.path).sort(), [join(root, 'blue', 'fake.png'), join(root, 'red', 'broken.jpg')]);
    assert.ok(report.skipped.every((s) => s.reason.length > 0));
    assert.ok(lines.some((l) => l.includes(join(root, 'red', 'broken.jpg'))), lines.join('\n'));
    assert.ok(lines.some((l) => /2 unreadable images skipped/.test(l)), lines.join('\n'));
    // from the cache, the same two are named again
    const { log: log2, lines: lines2 } = collect();
    const again = await loadImageFolder({ root, imageSize: 8, log: log2 });
    assert.equal(again.report.caches[0]!.hit, true);
    assert.equal(again.report.skipped.length, 2);
    assert.ok(lines2.some((l) => /2 unreadable images skipped/.test(l)));
    await assert.rejects(loadImageFolder({ root, imageSize: 8, strict: true, cache: false }), (e: Error) => {
      assert.match(e.message, /(broken\.jpg|fake\.png): cannot decode: .+--strict/);
      return true;
    });
  });

  it('converts grayscale and alpha images, said once with a count; ignores and counts non-image files', async () => {
    const root = fresh('convert');
    await writeTree(root, ['red', 'blue'], 4, 5);
    const rng = new Rng(9);
    await writeImage(join(root, 'red', 'gray.png'), rng, [200, 200, 200], { channels: 1 });
    await writeImage(join(root, 'red', 'alpha.png'), rng, [200, 30, 30], { channels: 4 });
    await writeImage(join(root, 'blue', 'photo.webp'), rng, [30, 30, 200], { format: 'webp' });
    writeFileSync(join(root, 'blue', 'notes.txt'), 'labels were checked');
    writeFileSync(join(root, 'blue', '._photo.jpg'), 'AppleDouble resource fork');
    writeFileSync(join(root, 'README.md'), '# my data');
    const { log, lines } = collect();
    const { train, test, report } = await loadImageFolder({ root, imageSize: 8, log });
    assert.equal(datasetSize(train) + datasetSize(test), 11, 'the webp image counts');
    assert.equal(report.grayscale, 1);
    assert.equal(report.alpha, 1);
    assert.equal(report.ignored, 3);
    assert.equal(report.skipped.length, 0, 'a hidden ._photo.jpg is ignored, not a corrupt image');
    assert.equal(lines.filter((l) => /converted to RGB/.test(l)).length, 1, lines.join('\n'));
    assert.ok(lines.some((l) => /3 files ignored/.test(l)), lines.join('\n'));
  });

  it('refuses an empty class folder, an empty tree and a missing root, naming the path', async () => {
    const root = fresh('empty');
    await writeTree(root, ['red'], 3, 6);
    mkdirSync(join(root, 'blue'));
    writeFileSync(join(root, 'blue', 'notes.txt'), 'x');
    await assert.rejects(loadImageFolder({ root, imageSize: 8 }), new RegExp(`${root}: class folder 'blue' holds no image`));
    const bare = fresh('bare');
    await assert.rejects(loadImageFolder({ root: bare, imageSize: 8 }), new RegExp(`${bare}: no class folders`));
    mkdirSync(join(bare, 'cats'));
    await assert.rejects(loadImageFolder({ root: bare, imageSize: 8 }), new RegExp(`${bare}: no images in its 1 class folder`));
    await assert.rejects(loadImageFolder({ root: join(bare, 'nope'), imageSize: 8 }), /nope: no such folder/);
  });

  it('refuses a val class that training lacks; warns of a val class with no image', async () => {
    const root = fresh('valclass');
    await writeTree(join(root, 'train'), ['red', 'blue'], 2, 1);
    await writeTree(join(root, 'val'), ['red', 'green'], 1, 2);
    await assert.rejects(loadImageFolder({ root, imageSize: 8 }), /val: class folder 'green' not in the training tree/);
    rmSync(join(root, 'val', 'green'), { recursive: true });
    const { log, lines } = collect();
    const { test } = await loadImageFolder({ root, imageSize: 8, log });
    assert.equal(datasetSize(test), 1);
    assert.ok(lines.some((l) => /no test image for class blue/.test(l)), lines.join('\n'));
  });
});

describe('image cache', () => {
  it('is written under ROOT/.onecycle-cache, read back identically, rebuilt when a file changes', async () => {
    const root = fresh('cache');
    await writeTree(root, ['red', 'green'], 6, 7);
    const first = await loadImageFolder({ root, imageSize: 10, seed: 1 });
    assert.equal(first.report.caches[0]!.hit, false);
    const path = first.report.caches[0]!.path!;
    assert.equal(path, join(root, CACHE_FOLDER, 'all-10px-crop.bin'));
    const { log, lines } = collect();
    const second = await loadImageFolder({ root, imageSize: 10, seed: 1, log });
    assert.equal(second.report.caches[0]!.hit, true);
    assert.deepEqual(second.train.images, first.train.images);
    assert.deepEqual(second.test.labels, first.test.labels);
    assert.deepEqual(second.train.normalization, first.train.normalization);
    assert.ok(lines.some((l) => l.includes(path)), 'the hit names the cache');
    // the cache's images are the decoder's
    const direct = await loadImageFolder({ root, imageSize: 10, seed: 1, cache: false });
    assert.deepEqual(direct.train.images, first.train.images);
    // another size or mode is another file
    const pad = await loadImageFolder({ root, imageSize: 10, seed: 1, resize: 'pad' });
    assert.equal(pad.report.caches[0]!.hit, false);
    assert.equal(pad.report.caches[0]!.path, join(root, CACHE_FOLDER, 'all-10px-pad.bin'));
    // touching a file (same bytes, new mtime) makes the cache stale: rebuilt, with the reason
    const touched = join(root, 'green', '001.png');
    const t = statSync(touched).mtime;
    utimesSync(touched, t, new Date(t.getTime() + 5000));
    const { log: log3, lines: lines3 } = collect();
    const third = await loadImageFolder({ root, imageSize: 10, seed: 1, log: log3 });
    assert.equal(third.report.caches[0]!.hit, false);
    assert.ok(lines3.some((l) => l.includes(path) && /stale: 1 changed since .*green\/001\.png/.test(l)), lines3.join('\n'));
    assert.equal((await loadImageFolder({ root, imageSize: 10, seed: 1 })).report.caches[0]!.hit, true, 'rebuilt, then hit');
    // a new file: stale too
    await writeImage(join(root, 'red', 'new.png'), new Rng(1), COLOURS.red!);
    const { log: log4, lines: lines4 } = collect();
    const fourth = await loadImageFolder({ root, imageSize: 10, seed: 1, log: log4 });
    assert.equal(datasetSize(fourth.train) + datasetSize(fourth.test), 13);
    assert.ok(lines4.some((l) => /stale: 1 file added \(red\/new\.png\)/.test(l)), lines4.join('\n'));
  });

  it('refuses a corrupt or truncated cache and rebuilds it, naming the file and why', async () => {
    const root = fresh('cachebad');
    await writeTree(join(root, 'train'), ['red', 'blue'], 4, 8);
    await writeTree(join(root, 'val'), ['red', 'blue'], 2, 9);
    const first = await loadImageFolder({ root, imageSize: 8 });
    const path = first.report.caches[0]!.path!;
    const bytes = readFileSync(path);
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 100]! ^= 0xff;
    writeFileSync(path, flipped);
    const { log, lines } = collect();
    const second = await loadImageFolder({ root, imageSize: 8, log });
    assert.equal(second.report.caches[0]!.hit, false);
    assert.deepEqual(second.train.images, first.train.images);
    assert.ok(lines.some((l) => l.includes(path) && /corrupt: SHA-256 checksum mismatch/.test(l)), lines.join('\n'));
    writeFileSync(path, bytes.subarray(0, 30));
    const { log: log2, lines: lines2 } = collect();
    await loadImageFolder({ root, imageSize: 8, log: log2 });
    assert.ok(lines2.some((l) => l.includes(path) && /corrupt/.test(l)), lines2.join('\n'));
    writeFileSync(path, 'garbage garbage garbage garbage garbage garbage garbage');
    const { log: log3, lines: lines3 } = collect();
    await loadImageFolder({ root, imageSize: 8, log: log3 });
    assert.ok(lines3.some((l) => /corrupt: not an image cache/.test(l)), lines3.join('\n'));
    assert.equal((await loadImageFolder({ root, imageSize: 8 })).report.caches[0]!.hit, true);
  });

  it("falls back to the project's .cache/folders/ when ROOT/.onecycle-cache cannot be made", async () => {
    const root = fresh('cacheblocked');
    await writeTree(root, ['red', 'blue'], 3, 15);
    // a file where the cache folder would go: as good as a read-only ROOT (the tests may run as root, which ignores modes)
    writeFileSync(join(root, CACHE_FOLDER), 'in the way');
    const r = await loadImageFolder({ root, imageSize: 8 });
    const path = r.report.caches[0]!.path!;
    assert.match(path, /\.cache\/folders\/[0-9a-f]{16}\/all-8px-crop\.bin$/);
    dirs.push(join(path, '..'));
    assert.equal(r.report.ignored, 0, 'the blocking file is not counted as an ignored file');
    assert.equal((await loadImageFolder({ root, imageSize: 8 })).report.caches[0]!.hit, true);
  });

  it('goes to --cache DIR when given', async () => {
    const root = fresh('cachedir');
    const cacheDir = join(fresh('cachedir-out'), 'c');
    await writeTree(root, ['red', 'blue'], 3, 10);
    const r = await loadImageFolder({ root, imageSize: 8, cacheDir });
    assert.equal(r.report.caches[0]!.path, join(cacheDir, 'all-8px-crop.bin'));
    assert.equal((await loadImageFolder({ root, imageSize: 8, cacheDir })).report.caches[0]!.hit, true);
  });
});

describe('the folder dataset in a configuration', () => {
  const config = (extra: Partial<TrainConfig>): TrainConfig => validateConfig({ ...DEFAULTS, dataset: 'folder', imageSize: 8, ...extra }, 'test');
  const quiet = { log: (): void => {} };

  it('takes --dataset folder --data --resize --strict --cache from the command line', () => {
    const a = parseTrainArgs(['--dataset', 'folder', '--data', '/d', '--image-size', '48', '--resize', 'pad', '--strict', '--cache', '/c']);
    assert.deepEqual([a.config.dataset, a.config.data, a.config.imageSize, a.config.resize, a.config.strict, a.config.cache], ['folder', '/d', 48, 'pad', true, '/c']);
    assert.throws(() => parseTrainArgs(['--dataset', 'folder']), /data is missing: dataset 'folder' needs --data/);
    assert.throws(() => parseTrainArgs(['--dataset', 'folder', '--data', '/d', '--resize', 'squash']), /command line: --resize: unknown resize mode 'squash'/);
  });

  it('needs --data, knows the resize modes, checks --cutout against --image-size', () => {
    assert.throws(() => config({}), /data is missing: dataset 'folder' needs --data \(the root of the image folder/);
    assert.throws(() => config({ data: '/x', resize: 'stretch' as 'crop' }), /unknown resize mode 'stretch' \(one of crop, pad\)/);
    assert.throws(() => config({ data: '/x', strict: 'yes' as unknown as boolean }), /strict must be true or false/);
    assert.throws(() => config({ data: '/x', cutout: 9 }), /cutout \(9\) exceeds the image side \(8 pixels\)/);
    assert.equal(config({ data: '/x', resize: 'pad', strict: true, cache: '/tmp/c' }).resize, 'pad');
  });

  it('one tree: --val-split is the test fraction (0: 0.2), no validation unless asked for (tune)', async () => {
    const root = fresh('cfg-one');
    await writeTree(root, ['red', 'blue'], 10, 12);
    const a = await loadDatasets(config({ data: root }), quiet);
    assert.deepEqual([datasetSize(a.train), datasetSize(a.test), a.validation], [16, 4, null]);
    const b = await loadDatasets(config({ data: root, valSplit: 0.3 }), quiet);
    assert.deepEqual([datasetSize(b.train), datasetSize(b.test), b.validation], [14, 6, null]);
    const t = await loadDatasets(config({ data: root }), { ...quiet, validation: 0.25 });
    assert.deepEqual([datasetSize(t.train), datasetSize(t.validation!), datasetSize(t.test)], [12, 4, 4]);
    assert.deepEqual(classCounts(t.validation!), [2, 2]);
  });

  it('train/val: --val-split holds a validation set out of train/, as for other datasets', async () => {
    const root = fresh('cfg-two');
    await writeTree(join(root, 'train'), ['red', 'blue'], 8, 13);
    await writeTree(join(root, 'val'), ['red', 'blue'], 2, 14);
    const a = await loadDatasets(config({ data: root, valSplit: 0.25 }), quiet);
    assert.deepEqual([datasetSize(a.train), datasetSize(a.validation!), datasetSize(a.test)], [12, 4, 4]);
    const b = await loadDatasets(config({ data: root, cache: join(root, 'elsewhere'), resize: 'pad' }), quiet);
    assert.equal(b.validation, null);
    assert.deepEqual(b.train.shape, [3, 8, 8]);
  });
});

describe('collectImageFiles', () => {
  it('takes files as given and folders recursively, sorted, images only', async () => {
    const root = fresh('collect');
    await writeTree(root, ['red', 'blue'], 2, 11);
    writeFileSync(join(root, 'red', 'x.txt'), '');
    const files = await collectImageFiles([root, join(root, 'red', '000.jpg')]);
    assert.deepEqual(files, [
      join(root, 'blue', '000.jpg'), join(root, 'blue', '001.png'), join(root, 'red', '000.jpg'), join(root, 'red', '001.png'), join(root, 'red', '000.jpg'),
    ]);
    await assert.rejects(collectImageFiles([join(root, 'missing.jpg')]), /missing\.jpg: no such file or folder/);
  });
});
