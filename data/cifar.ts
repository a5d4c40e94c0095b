// CIFAR-10 and CIFAR-100 in their official binary formats
// (https://www.cs.toronto.edu/~kriz/cifar.html), read from the extracted folder,
// from the official `.tar.gz` archive, or from per-file `.xz` copies (decompressed
// by the `xz` program, as in ../shared/data).
//
//   CIFAR-10 record:  [label u8] [1024 R] [1024 G] [1024 B]           3073 bytes
//   CIFAR-100 record: [coarse u8] [fine u8] [1024 R] [1024 G] [1024 B] 3074 bytes
//   each plane 32×32 row-major, so the 3072 pixel bytes are already CHW.
//
//   cifar-10-batches-bin/  data_batch_1.bin … data_batch_5.bin (10000 each), test_batch.bin (10000), batches.meta.txt
//   cifar-100-binary/      train.bin (50000), test.bin (10000), fine_label_names.txt, coarse_label_names.txt
//
// Every file is checked: a whole number of records, exactly the expected count
// (fewer: truncated; more: oversized), every label in range; a refused file's
// error names its path and the reason. The label-name files are optional (the
// names are then CIFAR-10's well-known ten, or numbers for CIFAR-100) but, when
// present, must list exactly the right number of names.
import { spawn } from 'node:child_process';
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type Dataset, type Normalization } from './dataset.ts';
import { readTarGz } from './tar.ts';

export type CifarVariant = 'cifar10' | 'cifar100';

/** Standard per-channel constants (of the training set, pixels on [0, 1]). */
export const CIFAR10_NORMALIZATION: Normalization = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };
export const CIFAR100_NORMALIZATION: Normalization = { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] };

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;

export const IMAGE_BYTES = 3072;
export const CIFAR_SHAPE: readonly [number, number, number] = [3, 32, 32];

export interface CifarLayout {
  variant: CifarVariant;
  /** the folder inside the archive */
  folder: string;
  /** the official archive's file name */
  archive: string;
  trainFiles: readonly string[];
  testFile: string;
  /** label bytes before each image: 1 (CIFAR-10) or 2 (coarse, fine: CIFAR-100) */
  labelBytes: number;
  recordBytes: number;
  numClasses: number;
  numCoarseClasses: number;
  /** records in each training file and in the test file */
  trainRecordsPerFile: number;
  testRecords: number;
  classNamesFile: string;
  coarseClassNamesFile: string | null;
  normalization: Normalization;
}

export const CIFAR10: CifarLayout = {
  variant: 'cifar10',
  folder: 'cifar-10-batches-bin',
  archive: 'cifar-10-binary.tar.gz',
  trainFiles: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
  testFile: 'test_batch.bin',
  labelBytes: 1,
  recordBytes: 1 + IMAGE_BYTES,
  numClasses: 10,
  numCoarseClasses: 0,
  trainRecordsPerFile: 10000,
  testRecords: 10000,
  classNamesFile: 'batches.meta.txt',
  coarseClassNamesFile: null,
  normalization: CIFAR10_NORMALIZATION,
};

export const CIFAR100: CifarLayout = {
  variant: 'cifar100',
  folder: 'cifar-100-binary',
  archive: 'cifar-100-binary.tar.gz',
  trainFiles: ['train.bin'],
  testFile: 'test.bin',
  labelBytes: 2,
  recordBytes: 2 + IMAGE_BYTES,
  numClasses: 100,
  numCoarseClasses: 20,
  trainRecordsPerFile: 50000,
  testRecords: 10000,
  classNamesFile: 'fine_label_names.txt',
  coarseClassNamesFile: 'coarse_label_names.txt',
  normalization: CIFAR100_NORMALIZATION,
};

export const cifarLayout = (v: CifarVariant): CifarLayout => (v === 'cifar10' ? CIFAR10 : CIFAR100);

export interface CifarOptions {
  /** which training files to read, 1-based (CIFAR-10: 1..5; default all) */
  trainFiles?: number[];
  /**
   * records expected per training file and in the test file (default: the
   * official counts). Only for reduced copies of the data, as tests make.
   */
  expectedRecords?: { train?: number; test?: number };
}

export interface CifarSplits {
  train: Dataset;
  test: Dataset;
}

/** Pixels and labels of one batch file, validated. */
export interface CifarRecords {
  images: Uint8Array;
  labels: Int32Array;
  coarseLabels?: Int32Array;
}

/** Parses one batch file's bytes; `path` names it in errors. */
export function parseCifarRecords(bytes: Uint8Array, layout: CifarLayout, path: string, expected: number): CifarRecords {
  const rb = layout.recordBytes;
  const name = layout.variant === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100';
  if (bytes.byteLength % rb !== 0) {
    throw new Error(
      `${path}: ${bytes.byteLength} bytes is not a whole number of ${rb}-byte ${name} records ` +
        `(${Math.floor(bytes.byteLength / rb)} records and ${bytes.byteLength % rb} stray bytes: truncated, or not a ${name} batch file)`,
    );
  }
  const n = bytes.byteLength / rb;
  if (n < expected) throw new Error(`${path}: truncated: holds ${n} records, expected ${expected}`);
  if (n > expected) throw new Error(`${path}: oversized: holds ${n} records, expected ${expected}`);
  const images = new Uint8Array(n * IMAGE_BYTES);
  const labels = new Int32Array(n);
  const coarse = layout.labelBytes === 2 ? new Int32Array(n) : undefined;
  for (let i = 0; i < n; i++) {
    const at = i * rb;
    const fine = bytes[at + layout.labelBytes - 1]!;
    if (fine >= layout.numClasses) {
      throw new Error(`${path}: record ${i} has ${coarse ? 'fine ' : ''}label ${fine}, outside 0..${layout.numClasses - 1} (not a ${name} file?)`);
    }
    labels[i] = fine;
    if (coarse) {
      const c = bytes[at]!;
      if (c >= layout.numCoarseClasses) {
        throw new Error(`${path}: record ${i} has coarse label ${c}, outside 0..${layout.numCoarseClasses - 1} (not a ${name} file?)`);
      }
      coarse[i] = c;
    }
    images.set(bytes.subarray(at + layout.labelBytes, at + rb), i * IMAGE_BYTES);
  }
  return coarse ? { images, labels, coarseLabels: coarse } : { images, labels };
}

/**
 * The inverse of parseCifarRecords: records in the official binary layout
 * (e.g. to export a dataset, or to build test files). CIFAR-100 needs `coarseLabels`.
 */
export function encodeCifarRecords(images: Uint8Array, labels: Int32Array, layout: CifarLayout, coarseLabels?: Int32Array): Uint8Array {
  const n = labels.length;
  if (images.length !== n * IMAGE_BYTES) throw new Error(`encodeCifarRecords: ${images.length} pixel bytes for ${n} images of 3×32×32`);
  if (layout.labelBytes === 2 && coarseLabels?.length !== n) throw new Error('encodeCifarRecords: CIFAR-100 records need a coarse label per image');
  const out = new Uint8Array(n * layout.recordBytes);
  for (let i = 0; i < n; i++) {
    const at = i * layout.recordBytes;
    if (layout.labelBytes === 2) out[at] = coarseLabels![i]!;
    out[at + layout.labelBytes - 1] = labels[i]!;
    out.set(images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES), at + layout.labelBytes);
  }
  return out;
}

/** Parses a label-names file (one name a line, blank lines ignored). */
export function parseClassNames(text: string, expected: number, path: string): string[] {
  const names = text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length !== expected) throw new Error(`${path}: lists ${names.length} class names, expected ${expected}`);
  return names;
}

let xzAvailable: Promise<boolean> | null = null;

/** Whether the `xz` program can be run. */
export function hasXz(): Promise<boolean> {
  xzAvailable ??= new Promise((resolve) => {
    const p = spawn('xz', ['--version'], { stdio: 'ignore' });
    p.on('error', () => resolve(false));
    p.on('exit', (code) => resolve(code === 0));
  });
  return xzAvailable;
}

/** Decompresses an `.xz` file with `xz -dc` (Node has no xz decoder). */
export function readXz(path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn('xz', ['-dc', '--', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'ENOENT'
          ? new Error(`${path}: reading .xz files needs the 'xz' program (package xz-utils), which is not on PATH; or decompress it first with 'xz -dk'`)
          : new Error(`${path}: cannot run xz (${e.message})`),
      );
    });
    p.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${path}: xz failed with exit code ${code}: ${Buffer.concat(err).toString().trim()}`));
    });
  });
}

async function exists(path: string): Promise<'file' | 'dir' | null> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}

/** Where a variant's files are: a folder of batch files (plain or .xz) or the official archive. */
export type CifarSource = { kind: 'folder'; path: string } | { kind: 'archive'; path: string };

/**
 * Resolves `source`: the batch folder itself (`cifar-10-batches-bin/`), a folder
 * holding it or the archive, or the `.tar.gz` archive.
 */
export async function resolveCifarSource(layout: CifarLayout, source: string): Promise<CifarSource> {
  const kind = await exists(source);
  if (kind === null) throw new Error(`${source}: missing (no such file or folder)`);
  if (kind === 'file') {
    if (/\.(tar\.gz|tgz)$/.test(source)) return { kind: 'archive', path: source };
    throw new Error(`${source}: is a file but not a .tar.gz archive; give the ${layout.folder} folder or the ${layout.archive} archive`);
  }
  const first = layout.trainFiles[0]!;
  if ((await exists(join(source, first))) === 'file' || (await exists(join(source, `${first}.xz`))) === 'file') {
    return { kind: 'folder', path: source };
  }
  if ((await exists(join(source, layout.folder))) === 'dir') return resolveCifarSource(layout, join(source, layout.folder));
  if ((await exists(join(source, layout.archive))) === 'file') return { kind: 'archive', path: join(source, layout.archive) };
  const listing = (await readdir(source)).slice(0, 8).join(', ');
  throw new Error(
    `${source}: no ${layout.variant === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100'} data here: expected ${first} (or ${first}.xz), ` +
      `a ${layout.folder}/ folder or ${layout.archive} (found: ${listing || 'nothing'})`,
  );
}

/** Reads `name` from a folder, as is or through xz; null for an optional file that is absent. */
async function readFromFolder(dir: string, name: string, optional: boolean): Promise<{ bytes: Uint8Array; path: string } | null> {
  const plain = join(dir, name);
  if ((await exists(plain)) === 'file') return { bytes: await readFile(plain), path: plain };
  const xz = `${plain}.xz`;
  if ((await exists(xz)) === 'file') return { bytes: await readXz(xz), path: xz };
  if (optional) return null;
  throw new Error(`${plain}: missing file (nor ${basename(xz)} beside it)`);
}

/** Loads the training and test sets of a variant from `source` (see resolveCifarSource). */
export async function loadCifar(variant: CifarVariant, source: string, options: CifarOptions = {}): Promise<CifarSplits> {
  const layout = cifarLayout(variant);
  const which = options.trainFiles ?? layout.trainFiles.map((_, i) => i + 1);
  for (const k of which) {
    if (!Number.isInteger(k) || k < 1 || k > layout.trainFiles.length) {
      throw new Error(`loadCifar: training file ${k} does not exist (${variant} has ${layout.trainFiles.length}, numbered from 1)`);
    }
  }
  const trainNames = which.map((k) => layout.trainFiles[k - 1]!);
  const expectTrain = options.expectedRecords?.train ?? layout.trainRecordsPerFile;
  const expectTest = options.expectedRecords?.test ?? layout.testRecords;
  const nameFiles = [layout.classNamesFile, ...(layout.coarseClassNamesFile ? [layout.coarseClassNamesFile] : [])];

  const resolved = await resolveCifarSource(layout, source);
  type Got = { bytes: Uint8Array; path: string } | null;
  let get: (name: string, optional: boolean) => Promise<Got>;
  if (resolved.kind === 'folder') {
    get = (name, optional) => readFromFolder(resolved.path, name, optional);
  } else {
    const wanted = new Set([...trainNames, layout.testFile, ...nameFiles].map((f) => `${layout.folder}/${f}`));
    const members = await readTarGz(resolved.path, (n) => wanted.has(n), wanted.size);
    get = async (name, optional) => {
      const member = `${layout.folder}/${name}`;
      const bytes = members.get(member);
      if (bytes) return { bytes, path: `${resolved.path}:${member}` };
      if (optional) return null;
      throw new Error(`${resolved.path}: missing file ${member} in the archive`);
    };
  }

  // Reading all files at once lets several xz processes run in parallel.
  const [trainFiles, testFile, ...names] = await Promise.all([
    Promise.all(trainNames.map((n) => get(n, false))),
    get(layout.testFile, false),
    ...nameFiles.map((n) => get(n, true)),
  ]);
  const fineNames = names[0]
    ? parseClassNames(Buffer.from(names[0].bytes).toString('utf8'), layout.numClasses, names[0].path)
    : variant === 'cifar10'
      ? [...CIFAR10_CLASSES]
      : Array.from({ length: layout.numClasses }, (_, i) => String(i));
  const coarseNames = layout.coarseClassNamesFile
    ? names[1]
      ? parseClassNames(Buffer.from(names[1].bytes).toString('utf8'), layout.numCoarseClasses, names[1].path)
      : Array.from({ length: layout.numCoarseClasses }, (_, i) => String(i))
    : undefined;

  const toDataset = (parts: CifarRecords[], split: string): Dataset => {
    const n = parts.reduce((a, p) => a + p.labels.length, 0);
    const single = parts.length === 1 ? parts[0]! : null; // used as is, no copy
    const ds: Dataset = {
      name: `${variant}-${split}`,
      images: single?.images ?? new Uint8Array(n * IMAGE_BYTES),
      labels: single?.labels ?? new Int32Array(n),
      numClasses: layout.numClasses,
      classNames: fineNames,
      shape: CIFAR_SHAPE,
      normalization: layout.normalization,
    };
    if (coarseNames) {
      ds.coarseLabels = single?.coarseLabels ?? new Int32Array(n);
      ds.coarseClassNames = coarseNames;
    }
    if (single) return ds;
    let at = 0;
    for (const p of parts) {
      ds.images.set(p.images, at * IMAGE_BYTES);
      ds.labels.set(p.labels, at);
      if (p.coarseLabels) ds.coarseLabels!.set(p.coarseLabels, at);
      at += p.labels.length;
    }
    return ds;
  };
  const train = toDataset(trainFiles.map((f) => parseCifarRecords(f!.bytes, layout, f!.path, expectTrain)), 'train');
  const test = toDataset([parseCifarRecords(testFile!.bytes, layout, testFile!.path, expectTest)], 'test');
  return { train, test };
}

export const loadCifar10 = (source: string, options?: CifarOptions): Promise<CifarSplits> => loadCifar('cifar10', source, options);
export const loadCifar100 = (source: string, options?: CifarOptions): Promise<CifarSplits> => loadCifar('cifar100', source, options);
