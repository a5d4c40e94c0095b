// Image folders in the convention torchvision's ImageFolder, Keras'
// image_dataset_from_directory and fastai read: ROOT/CLASS/*.{jpg,jpeg,png,webp},
// either with train/ and val/ (or test/) subfolders, or one tree split here
// (seeded, stratified). Decoding and resizing is libvips' (sharp), many images
// at a time; the decoded pixels are cached (data/imageCache.ts) so later runs
// skip it. Class order is the sorted folder names, as torchvision's.
import { readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, extname, join, resolve, sep } from 'node:path';
import { type Dataset, type Normalization, computeNormalization, datasetSize, splitValidation } from './dataset.ts';
import { CACHE_FOLDER, type CachedTree, type TreeFile, cacheFileName, defaultCacheDir, readImageCache, writeImageCache } from './imageCache.ts';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'] as const;
export const RESIZE_MODES = ['crop', 'pad'] as const;
/** crop: resize the shorter side to the size, then cut the centre square; pad: fit inside it, letterboxed in black */
export type ResizeMode = (typeof RESIZE_MODES)[number];

export const isImageFile = (name: string): boolean => (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());

export interface DecodedImage {
  /** 3×size×size pixels, channel-major (CHW), 0..255 */
  pixels: Uint8Array;
  /** what was converted to RGB: a grayscale image, an alpha channel dropped (or both) */
  grayscale: boolean;
  alpha: boolean;
}

/**
 * One image file (or its bytes) → RGB, size×size, CHW. Grayscale is expanded to
 * three channels; an alpha channel is dropped, as PIL's convert('RGB') does.
 * Throws on an unreadable or damaged file (libvips' warnings count as errors: a
 * truncated JPEG is refused, not half-decoded).
 */
let sharpModule: (typeof import('sharp'))['default'] | undefined;

export async function decodeImage(input: string | Uint8Array, size: number, mode: ResizeMode = 'crop'): Promise<DecodedImage> {
  // loaded on first use: the configuration imports this module, and libvips is only needed to decode
  sharpModule ??= (await import('sharp')).default;
  const sharp = sharpModule;
  // the bytes once (libvips would open the file twice: header, then pixels), read
  // synchronously: an async read takes several trips through the thread pool libvips' jobs queue on
  const bytes = typeof input === 'string' ? readFileSync(input) : input;
  const img = sharp(bytes, { failOn: 'warning' });
  const meta = await img.metadata();
  const channels = meta.channels ?? 3;
  const alpha = meta.hasAlpha ?? false;
  const grayscale = channels - (alpha ? 1 : 0) === 1;
  const { data, info } = await img
    .removeAlpha()
    .toColourspace('srgb')
    .resize(size, size, mode === 'crop' ? { fit: 'cover', position: 'centre' } : { fit: 'contain', background: { r: 0, g: 0, b: 0 } })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new Error(`decoded to ${info.width}×${info.height}×${info.channels}, expected ${size}×${size}×3`);
  }
  // libvips gives HWC; the datasets hold CHW
  const plane = size * size;
  const pixels = new Uint8Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    pixels[p] = data[3 * p]!;
    pixels[plane + p] = data[3 * p + 1]!;
    pixels[2 * plane + p] = data[3 * p + 2]!;
  }
  return { pixels, grayscale, alpha };
}

/** Why a file could not be decoded, in one line ("VipsJpeg: premature end of JPEG file"). */
export const decodeFailure = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim();

export interface DecodeOptions {
  size: number;
  mode: ResizeMode;
  /** refuse the first unreadable image instead of skipping it */
  strict?: boolean;
  /** images decoded at a time (default: twice the cores, at least 4) */
  concurrency?: number;
}

export interface DecodedTree extends CachedTree {
  /** N×3×size×size */
  images: Uint8Array;
  labels: Int32Array;
}

/**
 * Decodes every file, `concurrency` at a time (libvips works on its own
 * threads, so the event loop only keeps the pool fed). The images keep the
 * files' order; unreadable ones are left out and listed in `skipped`.
 */
export async function decodeFiles(files: readonly TreeFile[], o: DecodeOptions): Promise<Omit<DecodedTree, 'key' | 'classNames' | 'ignored'>> {
  const per = 3 * o.size * o.size;
  const results: (Uint8Array | null)[] = new Array(files.length).fill(null);
  const skipped: { path: string; reason: string }[] = [];
  let grayscale = 0;
  let alpha = 0;
  let next = 0;
  let failed: Error | null = null;
  const worker = async (): Promise<void> => {
    while (next < files.length && !failed) {
      const i = next++;
      const f = files[i]!;
      try {
        const d = await decodeImage(f.path, o.size, o.mode);
        results[i] = d.pixels;
        if (d.grayscale) grayscale++;
        if (d.alpha) alpha++;
      } catch (e) {
        const reason = decodeFailure(e);
        if (o.strict) failed ??= new Error(`${f.path}: cannot decode: ${reason} (--strict refuses unreadable images; without it they are skipped)`);
        else skipped.push({ path: f.rel, reason });
      }
    }
  };
  const n = Math.max(1, o.concurrency ?? Math.max(4, 2 * availableParallelism()));
  await Promise.all(Array.from({ length: Math.min(n, files.length) }, worker));
  if (failed) throw failed;
  const kept = results.filter((r) => r !== null).length;
  const images = new Uint8Array(kept * per);
  const labels = new Int32Array(kept);
  let k = 0;
  results.forEach((r, i) => {
    if (!r) return;
    images.set(r, k * per);
    labels[k++] = files[i]!.label;
  });
  skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { images, labels, skipped, grayscale, alpha, files: files.map(({ rel, size, mtimeMs }) => ({ rel, size, mtimeMs })) };
}

// ------------------------------------------------------------------ scanning

export interface ScannedTree {
  /** the tree's folder */
  dir: string;
  classNames: string[];
  /** image files in class order, then by name */
  files: TreeFile[];
  /** non-image files (and stray files outside class folders), relative to dir */
  ignored: string[];
  /** class folders with no image */
  emptyClasses: string[];
}

async function listDir(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${dir}: cannot read the folder: ${code === 'ENOENT' ? 'no such folder' : code === 'ENOTDIR' ? 'not a folder' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Every file under `dir` (recursively), relative to it, sorted. */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await listDir(join(dir, prefix))).sort((a, b) => byName(a.name, b.name))) {
    const rel = prefix ? join(prefix, e.name) : e.name;
    if (e.isDirectory()) out.push(...(await walk(dir, rel)));
    else if (e.isFile() || e.isSymbolicLink()) out.push(rel);
  }
  return out;
}

/**
 * Lists one tree: its class folders (sorted names; `classes` imposes another
 * tree's), the image files in each (subfolders included, as torchvision),
 * with their sizes and modification times (the cache's key).
 */
export async function scanTree(dir: string, classes?: readonly string[]): Promise<ScannedTree> {
  const entries = await listDir(dir);
  const folders = entries.filter((e) => e.isDirectory() && e.name !== CACHE_FOLDER && !e.name.startsWith('.')).map((e) => e.name).sort(byName);
  const ignored = entries.filter((e) => !e.isDirectory() && e.name !== CACHE_FOLDER).map((e) => e.name).sort(byName);
  const classNames = classes ? [...classes] : folders;
  if (classes) {
    const extra = folders.filter((f) => !classes.includes(f));
    if (extra.length) throw new Error(`${dir}: class folder${extra.length > 1 ? 's' : ''} ${extra.map((f) => `'${f}'`).join(', ')} not in the training tree (its classes: ${classes.join(', ')})`);
  }
  const files: TreeFile[] = [];
  const emptyClasses: string[] = [];
  for (let label = 0; label < classNames.length; label++) {
    const name = classNames[label]!;
    if (!folders.includes(name)) {
      emptyClasses.push(name);
      continue;
    }
    const images: string[] = [];
    for (const rel of await walk(join(dir, name))) {
      const relPath = join(name, rel);
      // hidden files are not images, whatever their name says (macOS' ._photo.jpg beside photo.jpg)
      if (!isImageFile(rel) || basename(rel).startsWith('.')) ignored.push(relPath);
      else images.push(relPath);
    }
    // the stats all at once: the thread pool overlaps them (a cache hit is mostly this)
    const stats = await Promise.all(images.map((relPath) => stat(join(dir, relPath))));
    images.forEach((relPath, i) => {
      files.push({ rel: relPath.split(sep).join('/'), path: join(dir, relPath), label, size: stats[i]!.size, mtimeMs: stats[i]!.mtimeMs });
    });
    const count = images.length;
    if (count === 0) emptyClasses.push(name);
  }
  return { dir, classNames, files, ignored, emptyClasses };
}

// ------------------------------------------------------------------ the folder as datasets

export interface ImageFolderOptions {
  root: string;
  /** side of the square images the network sees */
  imageSize: number;
  resize?: ResizeMode;
  /** one tree: the fraction held out as the test set (default 0.2) */
  testFraction?: number;
  /** seeds the one-tree split */
  seed?: number;
  strict?: boolean;
  /** where the decoded images are cached (default ROOT/.onecycle-cache, or the project's .cache/folders/ when ROOT is read-only) */
  cacheDir?: string;
  /** false: decode every time (benchmarks) */
  cache?: boolean;
  concurrency?: number;
  log?: (line: string) => void;
}

export interface ImageFolderReport {
  layout: 'train/val' | 'one tree';
  /** where each tree's images came from: the cache file, and whether it was read or (re)written */
  caches: { tree: string; path: string | null; hit: boolean }[];
  skipped: { path: string; reason: string }[];
  ignored: number;
  grayscale: number;
  alpha: number;
}

export interface ImageFolderSplits {
  train: Dataset;
  test: Dataset;
  report: ImageFolderReport;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * One tree's decoded images, from the cache when it matches the files, else
 * decoded (and cached). `tree` names it in the cache's file name and messages.
 */
async function loadTree(scan: ScannedTree, tree: string, o: ImageFolderOptions, cacheDir: string | null, log: (s: string) => void): Promise<{ decoded: DecodedTree; cachePath: string | null; hit: boolean }> {
  const mode = o.resize ?? 'crop';
  const cachePath = cacheDir ? join(cacheDir, cacheFileName(tree, o.imageSize, mode)) : null;
  const keyed = { imageSize: o.imageSize, mode, classNames: scan.classNames, files: scan.files };
  if (cachePath) {
    const r = await readImageCache(cachePath, keyed);
    if (r.ok) return { decoded: { ...r.tree, ignored: scan.ignored }, cachePath, hit: true };
    if (r.why) log(`image cache ${cachePath}: ${r.why}; decoding the images again`);
  }
  const t0 = performance.now();
  const d = await decodeFiles(scan.files, { size: o.imageSize, mode, strict: o.strict ?? false, ...(o.concurrency ? { concurrency: o.concurrency } : {}) });
  const secs = (performance.now() - t0) / 1000;
  log(`decoded ${scan.files.length} images of ${scan.dir} to ${o.imageSize}×${o.imageSize} (${mode}) in ${secs.toFixed(1)} s (${(scan.files.length / Math.max(secs, 1e-9)).toFixed(0)} images/s)`);
  const decoded: DecodedTree = { ...d, key: '', classNames: scan.classNames, ignored: scan.ignored };
  let written: string | null = null;
  if (cachePath) {
    try {
      await writeImageCache(cachePath, decoded, keyed);
      written = cachePath;
    } catch (e) {
      log(`image cache ${cachePath}: not written (${(e as Error).message}); the images will be decoded again next time`);
    }
  }
  return { decoded, cachePath: written, hit: false };
}

/**
 * Reads an image folder as a training and a test set. Layouts: ROOT/train/CLASS
 * + ROOT/val/CLASS (or ROOT/test/CLASS), or ROOT/CLASS split here, seeded and
 * stratified, `testFraction` (0.2) of each class going to the test set. The
 * normalisation constants are the training images' channel statistics; the
 * test set uses the same ones.
 */
export async function loadImageFolder(o: ImageFolderOptions): Promise<ImageFolderSplits> {
  const log = o.log ?? (() => {});
  const root = resolve(o.root);
  if (!(await isDir(root))) {
    throw new Error(`--data ${o.root}: ${(await stat(root).catch(() => null)) ? 'not a folder' : 'no such folder'} (give a folder of class folders, ROOT/CLASS/*.jpg, or ROOT/train/CLASS + ROOT/val/CLASS)`);
  }
  const mode = o.resize ?? 'crop';
  if (!RESIZE_MODES.includes(mode)) throw new Error(`resize mode '${String(mode)}' is unknown (one of ${RESIZE_MODES.join(', ')})`);
  const cacheDir = o.cache === false ? null : (o.cacheDir ?? (await defaultCacheDir(root)));
  const testName = (await isDir(join(root, 'val'))) ? 'val' : (await isDir(join(root, 'test'))) ? 'test' : null;
  const split = testName !== null && (await isDir(join(root, 'train')));
  const name = `folder:${basename(root)}`;

  const trainScan = await scanTree(split ? join(root, 'train') : root);
  if (trainScan.classNames.length === 0) {
    throw new Error(`${trainScan.dir}: no class folders (expected ${split ? 'train/CLASS/*.jpg' : 'CLASS/*.jpg, or train/CLASS + val/CLASS'}; image types ${IMAGE_EXTENSIONS.join(', ')})`);
  }
  if (trainScan.files.length === 0) {
    throw new Error(`${trainScan.dir}: no images in its ${trainScan.classNames.length} class folder${trainScan.classNames.length > 1 ? 's' : ''} (image types ${IMAGE_EXTENSIONS.join(', ')})`);
  }
  // torchvision refuses an empty class as well: the network would have an output no image teaches
  if (trainScan.emptyClasses.length) {
    throw new Error(`${trainScan.dir}: class folder${trainScan.emptyClasses.length > 1 ? 's' : ''} ${trainScan.emptyClasses.map((c) => `'${c}'`).join(', ')} hold${trainScan.emptyClasses.length > 1 ? '' : 's'} no image (remove the folder, or add images: every class needs training images)`);
  }
  const trainTree = await loadTree(trainScan, split ? 'train' : 'all', o, cacheDir, log);
  const report: ImageFolderReport = {
    layout: split ? 'train/val' : 'one tree',
    caches: [{ tree: split ? 'train' : 'all', path: trainTree.cachePath, hit: trainTree.hit }],
    skipped: trainTree.decoded.skipped.map((s) => ({ path: join(trainScan.dir, s.path), reason: s.reason })),
    ignored: trainTree.decoded.ignored.length,
    grayscale: trainTree.decoded.grayscale,
    alpha: trainTree.decoded.alpha,
  };
  const shape: [number, number, number] = [3, o.imageSize, o.imageSize];
  const asDataset = (d: { images: Uint8Array; labels: Int32Array }, n: string, normalization: Normalization): Dataset => ({
    name: n, images: d.images, labels: d.labels, numClasses: trainScan.classNames.length, classNames: trainScan.classNames, shape, normalization,
  });
  const none: Normalization = { mean: [0, 0, 0], std: [1, 1, 1] };
  let train: Dataset;
  let test: Dataset;
  if (split) {
    const testScan = await scanTree(join(root, testName!), trainScan.classNames);
    if (testScan.files.length === 0) throw new Error(`${testScan.dir}: no images in its class folders (image types ${IMAGE_EXTENSIONS.join(', ')})`);
    if (testScan.emptyClasses.length) log(`warning: ${testScan.dir}: no test image for class${testScan.emptyClasses.length > 1 ? 'es' : ''} ${testScan.emptyClasses.join(', ')}`);
    const testTree = await loadTree(testScan, testName!, o, cacheDir, log);
    report.caches.push({ tree: testName!, path: testTree.cachePath, hit: testTree.hit });
    report.skipped.push(...testTree.decoded.skipped.map((s) => ({ path: join(testScan.dir, s.path), reason: s.reason })));
    report.ignored += testTree.decoded.ignored.length;
    report.grayscale += testTree.decoded.grayscale;
    report.alpha += testTree.decoded.alpha;
    train = asDataset(trainTree.decoded, `${name}-train`, none);
    test = asDataset(testTree.decoded, `${name}-${testName}`, none);
  } else {
    const all = asDataset(trainTree.decoded, name, none);
    const fraction = o.testFraction ?? 0.2;
    if (!(fraction > 0 && fraction < 1)) throw new Error(`--val-split ${fraction}: the test fraction of a one-tree folder must be in (0, 1)`);
    if (datasetSize(all) < 2) throw new Error(`${root}: ${datasetSize(all)} readable image; a one-tree folder needs at least 2 (one to train on, one to test)`);
    const parts = splitValidation(all, Math.min(Math.max(1, Math.round(datasetSize(all) * fraction)), datasetSize(all) - 1), o.seed ?? 0);
    train = { ...parts.train, name: `${name}-train` };
    test = { ...parts.validation, name: `${name}-test` };
  }
  if (datasetSize(train) === 0) throw new Error(`${trainScan.dir}: none of its ${trainScan.files.length} images could be decoded`);
  const normalization = computeNormalization(train.images, shape);
  // a constant channel would divide by zero
  normalization.std.forEach((s, i) => ((normalization.std as number[])[i] = Math.max(s, 1e-3)));
  train.normalization = normalization;
  test.normalization = normalization;
  summarize(report, root, log);
  return { train, test, report };
}

/** The lines a load prints once: what was skipped (named), ignored and converted. */
function summarize(r: ImageFolderReport, root: string, log: (s: string) => void): void {
  for (const c of r.caches) if (c.hit) log(`${c.tree === 'all' ? root : join(root, c.tree)}: read the decoded images from the cache ${c.path}`);
  if (r.skipped.length) {
    for (const s of r.skipped.slice(0, 10)) log(`warning: skipped ${s.path}: ${s.reason}`);
    log(`warning: ${r.skipped.length} unreadable image${r.skipped.length > 1 ? 's' : ''} skipped${r.skipped.length > 10 ? ' (the first 10 named)' : ''} (--strict refuses them instead)`);
  }
  if (r.grayscale || r.alpha) {
    const parts = [r.grayscale ? `${r.grayscale} grayscale` : '', r.alpha ? `${r.alpha} with an alpha channel (dropped)` : ''].filter(Boolean);
    log(`note: converted to RGB: ${parts.join(', ')} image${r.grayscale + r.alpha > 1 ? 's' : ''}`);
  }
  if (r.ignored) log(`note: ${r.ignored} file${r.ignored > 1 ? 's' : ''} ignored (not ${IMAGE_EXTENSIONS.join('/')}, or outside the class folders)`);
}

/** Image files named by the paths given: files as they are, folders searched recursively (sorted). */
export async function collectImageFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    let s;
    try {
      s = await stat(p);
    } catch {
      throw new Error(`${p}: no such file or folder`);
    }
    if (s.isDirectory()) {
      const found = (await walk(p)).filter((rel) => isImageFile(rel) && !rel.split(sep).some((part) => part.startsWith('.'))).map((rel) => join(p, rel));
      if (!found.length) throw new Error(`${p}: no image files in it (${IMAGE_EXTENSIONS.join(', ')})`);
      out.push(...found);
    } else out.push(p);
  }
  return out;
}
