// CIFAR readers on small generated copies of the official layouts (folder,
// parent folder, .tar.gz, .xz), every refusal naming its path, the tar reader
// against GNU tar's own archives, and the dataset helpers.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Rng } from '../engine/random.ts';
import {
  CIFAR10, CIFAR100, CIFAR10_CLASSES, CIFAR10_NORMALIZATION, CIFAR100_NORMALIZATION, type CifarLayout, encodeCifarRecords,
  hasXz, loadCifar10, loadCifar100, parseCifarRecords, readXz,
} from '../data/cifar.ts';
import { type Dataset, classCounts, computeNormalization, splitValidation, subset } from '../data/dataset.ts';
import { readTar, readTarGz, writeTar } from '../data/tar.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'data-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let caseNo = 0;
const fresh = async (): Promise<string> => {
  const d = join(dir, `case-${caseNo++}`);
  await mkdir(d, { recursive: true });
  return d;
};

interface FakeFile {
  name: string;
  images: Uint8Array;
  labels: Int32Array;
  coarse?: Int32Array;
  bytes: Uint8Array;
}

/** Random images with labels i mod K (coarse = fine mod 20 for CIFAR-100), encoded in the official layout. */
function fakeFile(layout: CifarLayout, name: string, n: number, seed: number): FakeFile {
  const rng = new Rng(seed);
  const images = Uint8Array.from({ length: n * 3072 }, () => rng.int(256));
  const labels = Int32Array.from({ length: n }, (_, i) => (i + seed) % layout.numClasses);
  const coarse = layout.labelBytes === 2 ? labels.map((l) => l % 20) : undefined;
  return { name, images, labels, ...(coarse ? { coarse } : {}), bytes: encodeCifarRecords(images, labels, layout, coarse) };
}

const TRAIN_N = 12;
const TEST_N = 10;
const expectedRecords = { train: TRAIN_N, test: TEST_N };

function fakeCifar10(): FakeFile[] {
  return [
    ...CIFAR10.trainFiles.map((f, i) => fakeFile(CIFAR10, f, TRAIN_N, i + 1)),
    fakeFile(CIFAR10, CIFAR10.testFile, TEST_N, 99),
  ];
}

function fakeCifar100(): FakeFile[] {
  return [fakeFile(CIFAR100, 'train.bin', TRAIN_N, 1), fakeFile(CIFAR100, 'test.bin', TEST_N, 2)];
}

const CIFAR10_META = `${CIFAR10_CLASSES.join('\n')}\n\n`;
const FINE = Array.from({ length: 100 }, (_, i) => `fine${i}`).join('\n');
const COARSE = Array.from({ length: 20 }, (_, i) => `coarse${i}`).join('\n');

async function writeFolder(path: string, files: FakeFile[], extra: Record<string, string>): Promise<void> {
  await mkdir(path, { recursive: true });
  for (const f of files) await writeFile(join(path, f.name), f.bytes);
  for (const [name, text] of Object.entries(extra)) await writeFile(join(path, name), text);
}

function archive(folder: string, files: FakeFile[], extra: Record<string, string>): Uint8Array {
  const entries = [
    { name: `${folder}/readme.html`, data: Buffer.from('<html>not data</html>') },
    ...files.map((f) => ({ name: `${folder}/${f.name}`, data: f.bytes })),
    ...Object.entries(extra).map(([name, text]) => ({ name: `${folder}/${name}`, data: Buffer.from(text) })),
  ];
  return gzipSync(writeTar(entries));
}

const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

function assertCifar10(got: { train: Dataset; test: Dataset }, files: FakeFile[]): void {
  const train = files.slice(0, 5);
  assert.equal(got.train.name, 'cifar10-train');
  assert.equal(got.train.labels.length, 5 * TRAIN_N);
  assert.deepEqual(got.train.images, concat(train.map((f) => f.images)));
  assert.deepEqual(got.train.labels, Int32Array.from(concat(train.map((f) => new Uint8Array(f.labels)))));
  assert.deepEqual(got.test.images, files[5]!.images);
  assert.deepEqual(got.test.labels, files[5]!.labels);
  assert.deepEqual(got.train.shape, [3, 32, 32]);
  assert.deepEqual([...got.train.classNames], [...CIFAR10_CLASSES]);
  assert.equal(got.train.numClasses, 10);
  assert.deepEqual(got.train.normalization, CIFAR10_NORMALIZATION);
}

describe('CIFAR binary records', () => {
  it('encode and parse are inverse, CIFAR-10 and CIFAR-100', () => {
    for (const layout of [CIFAR10, CIFAR100]) {
      const f = fakeFile(layout, 'x.bin', 7, 3);
      assert.equal(f.bytes.length, 7 * layout.recordBytes);
      const back = parseCifarRecords(f.bytes, layout, 'x.bin', 7);
      assert.deepEqual(back.images, f.images);
      assert.deepEqual(back.labels, f.labels);
      assert.deepEqual(back.coarseLabels, f.coarse);
    }
  });

  it('the record layout is label byte(s) then the R, G, B planes', () => {
    const images = new Uint8Array(3072).map((_, i) => i >> 10); // plane index: R=0, G=1, B=2
    const bytes = encodeCifarRecords(images, Int32Array.of(7), CIFAR10);
    assert.equal(bytes[0], 7);
    assert.equal(bytes[1], 0);
    assert.equal(bytes[1 + 1024], 1);
    assert.equal(bytes[1 + 2048], 2);
    const b100 = encodeCifarRecords(images, Int32Array.of(42), CIFAR100, Int32Array.of(13));
    assert.deepEqual([b100[0], b100[1], b100[2], b100[2 + 2048]], [13, 42, 0, 2]);
  });
});

describe('loading CIFAR-10', () => {
  const files = fakeCifar10();

  it('from the batch folder, a parent folder and the .tar.gz archive, identically', async () => {
    const root = await fresh();
    const folder = join(root, 'cifar-10-batches-bin');
    await writeFolder(folder, files, { 'batches.meta.txt': CIFAR10_META });
    assertCifar10(await loadCifar10(folder, { expectedRecords }), files);
    assertCifar10(await loadCifar10(root, { expectedRecords }), files);
    const tgz = join(root, 'cifar-10-binary.tar.gz');
    await writeFile(tgz, archive('cifar-10-batches-bin', files, { 'batches.meta.txt': CIFAR10_META }));
    assertCifar10(await loadCifar10(tgz, { expectedRecords }), files);
    // a folder holding only the archive
    const only = await fresh();
    await writeFile(join(only, 'cifar-10-binary.tar.gz'), await readFile(tgz));
    assertCifar10(await loadCifar10(only, { expectedRecords }), files);
  });

  it('reads only the chosen training files', async () => {
    const folder = await fresh();
    await writeFolder(folder, files, {});
    const got = await loadCifar10(folder, { expectedRecords, trainFiles: [2, 4] });
    assert.deepEqual(got.train.images, concat([files[1]!.images, files[3]!.images]));
    await assert.rejects(loadCifar10(folder, { trainFiles: [6] }), /training file 6 does not exist/);
  });

  it('without batches.meta.txt, the well-known class names', async () => {
    const folder = await fresh();
    await writeFolder(folder, files, {});
    assert.deepEqual([...(await loadCifar10(folder, { expectedRecords })).train.classNames], [...CIFAR10_CLASSES]);
  });

  it('from .xz copies of the files (as in ../shared/data)', async (t) => {
    if (!(await hasXz())) return t.skip('the xz program is not installed');
    const folder = await fresh();
    await writeFolder(folder, files, { 'batches.meta.txt': CIFAR10_META });
    execFileSync('xz', ['-z', '-0', '-T1', ...files.map((f) => join(folder, f.name))]);
    assertCifar10(await loadCifar10(folder, { expectedRecords }), files);
  });
});

describe('loading CIFAR-100', () => {
  const files = fakeCifar100();
  const names = { 'fine_label_names.txt': FINE, 'coarse_label_names.txt': COARSE };

  for (const how of ['folder', 'archive'] as const) {
    it(`from the ${how}: fine and coarse labels, both name lists`, async () => {
      const root = await fresh();
      let source = join(root, 'cifar-100-binary');
      if (how === 'folder') await writeFolder(source, files, names);
      else {
        source = join(root, 'cifar-100-binary.tar.gz');
        await writeFile(source, archive('cifar-100-binary', files, names));
      }
      const got = await loadCifar100(source, { expectedRecords });
      assert.deepEqual(got.train.images, files[0]!.images);
      assert.deepEqual(got.train.labels, files[0]!.labels);
      assert.deepEqual(got.train.coarseLabels, files[0]!.coarse);
      assert.deepEqual(got.test.coarseLabels, files[1]!.coarse);
      assert.equal(got.train.numClasses, 100);
      assert.equal(got.train.classNames[42], 'fine42');
      assert.equal(got.train.coarseClassNames?.[13], 'coarse13');
      assert.deepEqual(got.test.normalization, CIFAR100_NORMALIZATION);
    });
  }
});

describe('refusing bad CIFAR files, naming the path and the reason', () => {
  const files = fakeCifar10();

  /** A folder of good files with one changed by `mutate`; returns the folder. */
  async function withBroken(name: string, mutate: (b: Uint8Array) => Uint8Array | null, extra: Record<string, string> = {}): Promise<string> {
    const folder = await fresh();
    await writeFolder(folder, files, extra);
    const path = join(folder, name);
    const changed = mutate(new Uint8Array(await readFile(path)));
    if (changed === null) await unlink(path);
    else await writeFile(path, changed);
    return folder;
  }

  const cases: [string, string, (b: Uint8Array) => Uint8Array | null, RegExp][] = [
    ['cut mid-record', 'data_batch_2.bin', (b) => b.subarray(0, b.length - 100), /data_batch_2\.bin: 36776 bytes is not a whole number of 3073-byte CIFAR-10 records \(11 records and 2973 stray bytes/],
    ['one record short', 'data_batch_3.bin', (b) => b.subarray(0, b.length - 3073), /data_batch_3\.bin: truncated: holds 11 records, expected 12/],
    ['empty', 'test_batch.bin', () => new Uint8Array(0), /test_batch\.bin: truncated: holds 0 records, expected 10/],
    ['a record too many', 'data_batch_1.bin', (b) => concat([b, b.subarray(0, 3073)]), /data_batch_1\.bin: oversized: holds 13 records, expected 12/],
    ['a label out of range', 'data_batch_5.bin', (b) => ((b[3 * 3073] = 10), b), /data_batch_5\.bin: record 3 has label 10, outside 0\.\.9/],
    ['a missing file', 'data_batch_4.bin', () => null, /data_batch_4\.bin: missing file/],
  ];
  for (const [what, name, mutate, reason] of cases) {
    it(what, async () => {
      const folder = await withBroken(name, mutate);
      await assert.rejects(loadCifar10(folder, { expectedRecords }), (e: Error) => {
        assert.match(e.message, reason);
        assert.ok(e.message.startsWith(join(folder, name)), `${e.message} should start with the path`);
        return true;
      });
    });
  }

  it('the official counts are the default (10000 per file)', async () => {
    const folder = await fresh();
    await writeFolder(folder, files, {});
    await assert.rejects(loadCifar10(folder), /data_batch_1\.bin: truncated: holds 12 records, expected 10000/);
  });

  it('a CIFAR-100 coarse label out of range', async () => {
    const folder = await fresh();
    const f = fakeCifar100();
    f[1]!.bytes[2 * 3074] = 20;
    await writeFolder(folder, f, {});
    await assert.rejects(loadCifar100(folder, { expectedRecords }), /test\.bin: record 2 has coarse label 20, outside 0\.\.19/);
  });

  it('a class-name file with the wrong number of names', async () => {
    const folder = await fresh();
    await writeFolder(folder, files, { 'batches.meta.txt': 'cat\ndog\n' });
    await assert.rejects(loadCifar10(folder, { expectedRecords }), /batches\.meta\.txt: lists 2 class names, expected 10/);
  });

  it('an archive missing a member, a truncated archive, a file that is not gzip', async () => {
    const root = await fresh();
    const partial = join(root, 'partial.tar.gz');
    await writeFile(partial, archive('cifar-10-batches-bin', files.filter((f) => f.name !== 'data_batch_3.bin'), {}));
    await assert.rejects(loadCifar10(partial, { expectedRecords }), new RegExp(`^Error: ${partial}: missing file cifar-10-batches-bin/data_batch_3\\.bin in the archive`));
    const full = archive('cifar-10-batches-bin', files, {});
    const cut = join(root, 'cut.tar.gz');
    // cut the tar inside the last member's data, then gzip the cut (a clean gzip of a truncated tar)
    const tar = writeTar(files.map((f) => ({ name: `cifar-10-batches-bin/${f.name}`, data: f.bytes })));
    await writeFile(cut, gzipSync(tar.subarray(0, tar.length - 2000)));
    await assert.rejects(loadCifar10(cut, { expectedRecords }), /cut\.tar\.gz: the archive is truncated: entry 'cifar-10-batches-bin\/test_batch\.bin' has \d+ of its 30730 bytes/);
    const cutGzip = join(root, 'cutgzip.tar.gz');
    await writeFile(cutGzip, full.subarray(0, full.length >> 1));
    await assert.rejects(loadCifar10(cutGzip, { expectedRecords }), /cutgzip\.tar\.gz: not a valid gzip file, or truncated/);
    const notGzip = join(root, 'plain.tar.gz');
    await writeFile(notGzip, 'this is not gzip');
    await assert.rejects(loadCifar10(notGzip, { expectedRecords }), /plain\.tar\.gz: not a valid gzip file/);
  });

  it('a missing source, a folder without data, a file that is not an archive', async () => {
    const root = await fresh();
    await assert.rejects(loadCifar10(join(root, 'nope')), /nope: missing \(no such file or folder\)/);
    await writeFile(join(root, 'other.txt'), 'x');
    await assert.rejects(loadCifar10(root), /no CIFAR-10 data here: expected data_batch_1\.bin \(or data_batch_1\.bin\.xz\).*found: other\.txt/);
    await assert.rejects(loadCifar10(join(root, 'other.txt')), /other\.txt: is a file but not a \.tar\.gz archive/);
  });

  it('.xz files: a corrupt one, and no xz program on PATH', async (t) => {
    if (!(await hasXz())) return t.skip('the xz program is not installed');
    const root = await fresh();
    const bad = join(root, 'bad.bin.xz');
    await writeFile(bad, 'not xz data');
    await assert.rejects(readXz(bad), new RegExp(`^Error: ${bad}: xz failed with exit code 1: .*format`));
    const path = process.env.PATH;
    process.env.PATH = join(root, 'empty-bin');
    try {
      await assert.rejects(readXz(bad), new RegExp(`^Error: ${bad}: reading \\.xz files needs the 'xz' program \\(package xz-utils\\), which is not on PATH`));
    } finally {
      process.env.PATH = path;
    }
  });
});

describe('tar reader', () => {
  it('any chunking of the stream gives the same files', async () => {
    const files = [
      { name: 'a/one.bin', data: Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff) },
      { name: 'a/empty', data: new Uint8Array(0) },
      { name: 'a/two.bin', data: Uint8Array.from({ length: 513 }, (_, i) => (i * 7) & 0xff) },
    ];
    const tar = writeTar(files);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }), async (sizes) => {
        async function* chunks(): AsyncGenerator<Uint8Array> {
          let pos = 0;
          for (let i = 0; pos < tar.length; i++) {
            const n = sizes[i % sizes.length]!;
            yield tar.subarray(pos, pos + n);
            pos += n;
          }
        }
        const got = await readTar(chunks(), () => true, 'test.tar');
        assert.deepEqual([...got.keys()], files.map((f) => f.name));
        for (const f of files) assert.deepEqual(got.get(f.name), f.data);
      }),
      { numRuns: 40 },
    );
  });

  it("reads GNU tar's own archives: gnu (long names), posix/pax, ustar with a prefix, ./-relative names", async (t) => {
    const root = await fresh();
    const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/file-with-a-long-name.bin`;
    await mkdir(join(root, 'src', long, '..'), { recursive: true });
    const payload = Uint8Array.from({ length: 5000 }, (_, i) => (i * 13) & 0xff);
    await writeFile(join(root, 'src', long), payload);
    for (const format of ['gnu', 'posix', 'ustar']) {
      const out = join(root, `${format}.tar.gz`);
      try {
        execFileSync('tar', ['-czf', out, `--format=${format}`, '-C', join(root, 'src'), long]);
      } catch {
        return t.skip('GNU tar is not available');
      }
      const got = await readTarGz(out, (n) => n === long);
      assert.deepEqual(got.get(long), payload, format);
    }
    const rel = join(root, 'rel.tar.gz');
    execFileSync('tar', ['-czf', rel, '-C', join(root, 'src'), `./${long}`]);
    assert.deepEqual((await readTarGz(rel, (n) => n === long)).get(long), payload);
  });

  it('refuses a header with a bad checksum', async () => {
    const tar = writeTar([{ name: 'x', data: new Uint8Array(10) }]);
    tar[0] = 0x79; // 'y': the name changed, the checksum did not
    await assert.rejects(readTar([tar], () => true, 'bad.tar'), /bad\.tar: tar header 1: checksum mismatch/);
  });
});

function toyDataset(labels: number[], k: number): Dataset {
  const n = labels.length;
  return {
    name: 'toy',
    images: Uint8Array.from({ length: n * 3 * 2 * 2 }, (_, i) => Math.floor(i / 12)),
    labels: Int32Array.from(labels),
    numClasses: k,
    classNames: Array.from({ length: k }, (_, i) => `c${i}`),
    shape: [3, 2, 2],
    normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
    coarseLabels: Int32Array.from(labels, (l) => l % 2),
  };
}

describe('dataset helpers', () => {
  it('subset by count and by indices copies images, labels and coarse labels', () => {
    const ds = toyDataset([0, 1, 2, 0, 1], 3);
    const first = subset(ds, 2);
    assert.deepEqual(first.labels, Int32Array.of(0, 1));
    assert.equal(first.images.length, 2 * 12);
    const picked = subset(ds, [4, 0]);
    assert.deepEqual(picked.labels, Int32Array.of(1, 0));
    assert.deepEqual(picked.coarseLabels, Int32Array.of(1, 0));
    assert.deepEqual([...picked.images.subarray(0, 12)], new Array<number>(12).fill(4));
    assert.throws(() => subset(ds, 6), /count 6 is not an integer in 0\.\.5/);
    assert.throws(() => subset(ds, [5]), /index 5 is outside 0\.\.4/);
  });

  it('splitValidation (stratified): exact per-class shares, disjoint, complete, seeded', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 10, maxLength: 300 }),
        fc.double({ min: 0.05, max: 0.9, noNaN: true }),
        fc.integer(),
        (labels, fraction, seed) => {
          const ds = toyDataset(labels, 5);
          const n = labels.length;
          const want = Math.round(n * fraction);
          fc.pre(want >= 1);
          const { train, validation } = splitValidation(ds, fraction, seed);
          assert.equal(validation.labels.length, want);
          assert.equal(train.labels.length + validation.labels.length, n);
          // each image (identified by its pixel value = original index) lands in exactly one part
          const ids = (d: Dataset): number[] => Array.from({ length: d.labels.length }, (_, i) => d.images[i * 12]!);
          assert.deepEqual([...ids(train), ...ids(validation)].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
          // per class: floor or ceil of its exact share
          const all = classCounts(ds);
          const val = classCounts(validation);
          all.forEach((m, c) => {
            const exact = (want * m) / n;
            assert.ok(val[c]! >= Math.floor(exact) && val[c]! <= Math.ceil(exact), `class ${c}: ${val[c]} of ${m}, share ${exact}`);
          });
          const again = splitValidation(ds, fraction, seed);
          assert.deepEqual(again.validation.images, validation.images);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('splitValidation by count, random (unstratified) mode, and bad arguments', () => {
    const ds = toyDataset(Array.from({ length: 100 }, (_, i) => i % 4), 4);
    const a = splitValidation(ds, 30, 1, { stratified: false });
    assert.equal(a.validation.labels.length, 30);
    assert.notDeepEqual(splitValidation(ds, 30, 2, { stratified: false }).validation.images, a.validation.images);
    assert.deepEqual(classCounts(splitValidation(ds, 20, 5).validation), [5, 5, 5, 5]);
    assert.throws(() => splitValidation(ds, 0, 1), /neither a fraction/);
    assert.throws(() => splitValidation(ds, 101, 1), /neither a fraction/);
    assert.throws(() => splitValidation(ds, 2.5, 1), /neither a fraction/);
  });

  it('computeNormalization matches a direct float64 computation', () => {
    const rng = new Rng(3);
    const images = Uint8Array.from({ length: 7 * 3 * 4 * 5 }, () => rng.int(256));
    const got = computeNormalization(images, [3, 4, 5]);
    for (let c = 0; c < 3; c++) {
      const vals: number[] = [];
      for (let i = 0; i < 7; i++) for (let p = 0; p < 20; p++) vals.push(images[(i * 3 + c) * 20 + p]! / 255);
      const m = vals.reduce((a, b) => a + b, 0) / vals.length;
      const s = Math.sqrt(vals.reduce((a, b) => a + (b - m) ** 2, 0) / vals.length);
      assert.ok(Math.abs(got.mean[c]! - m) < 1e-12 && Math.abs(got.std[c]! - s) < 1e-12);
    }
  });
});

describe('tar.gz reading', () => {
  it('stops once the wanted files are found, and names a missing archive', async () => {
    const root = await fresh();
    const path = join(root, 'a.tar.gz');
    const tar = writeTar([{ name: 'x', data: Uint8Array.of(1) }, { name: 'y', data: Uint8Array.of(2) }]);
    // garbage after the first member's blocks: never reached when only 'x' is wanted
    await writeFile(path, gzipSync(Buffer.concat([tar.subarray(0, 1024), Buffer.alloc(512, 0x41)])));
    assert.deepEqual([...(await readTarGz(path, (n) => n === 'x', 1)).keys()], ['x']);
    await assert.rejects(readTarGz(path, () => true), /a\.tar\.gz: tar header 2: checksum mismatch/);
    await assert.rejects(readTarGz(join(root, 'none.tar.gz'), () => true), /none\.tar\.gz: missing file/);
  });
});
