// The decoded images of one image-folder tree, cached as one binary file so
// later epochs and later runs skip libvips:
//
//   "OCIMGCAC" | u32 version | u32 header length | header (JSON) | pixels (N×3×S×S u8) | labels (N i32 LE) | SHA-256 of header + pixels + labels
//
// The header holds the key: the image size, the resize mode, the classes and
// every source file's relative path, size and mtime. A file whose key differs
// (a file added, removed, edited or touched; another size or mode) is stale;
// one whose checksum or layout is wrong is corrupt; both are rebuilt, with a
// message naming the file and why. Written atomically (temp + rename).
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../engine/io/atomic.ts';

export const CACHE_FOLDER = '.onecycle-cache';
const MAGIC = Buffer.from('OCIMGCAC', 'latin1');
export const CACHE_VERSION = 1;
/** the project's own cache, for folders it cannot write into */
const PROJECT_CACHE = fileURLToPath(new URL('../.cache/folders/', import.meta.url));

/** One image file of a tree: what the cache is keyed by. */
export interface TreeFile {
  /** relative to the tree, '/'-separated */
  rel: string;
  path: string;
  label: number;
  size: number;
  mtimeMs: number;
}

/** What a tree decoded to, beside its pixels: all of it kept in the cache's header. */
export interface CachedTree {
  key: string;
  classNames: string[];
  files: { rel: string; size: number; mtimeMs: number }[];
  /** files that could not be decoded (relative path and why) */
  skipped: { path: string; reason: string }[];
  grayscale: number;
  alpha: number;
  ignored: string[];
}

export interface CacheKey {
  imageSize: number;
  mode: string;
  classNames: readonly string[];
  files: readonly TreeFile[];
}

interface Header {
  imageSize: number;
  mode: string;
  classNames: string[];
  files: [string, number, number, number][];
  count: number;
  skipped: { path: string; reason: string }[];
  grayscale: number;
  alpha: number;
  createdAt: string;
}

export const cacheFileName = (tree: string, imageSize: number, mode: string): string => `${tree}-${imageSize}px-${mode}.bin`;

/**
 * ROOT/.onecycle-cache when ROOT can be written to; else the project's
 * .cache/folders/<hash of ROOT>/ (a read-only mount, someone else's folder).
 */
export async function defaultCacheDir(root: string): Promise<string> {
  const beside = join(root, CACHE_FOLDER);
  try {
    await mkdir(beside, { recursive: true });
    await access(beside, fsc.W_OK);
    return beside;
  } catch {
    return join(PROJECT_CACHE, createHash('sha256').update(root).digest('hex').slice(0, 16));
  }
}

const headerFiles = (files: readonly TreeFile[]): Header['files'] => files.map((f) => [f.rel, f.size, f.mtimeMs, f.label]);

/** Why the cached header no longer matches the files (null: it does). */
function staleness(h: Header, k: CacheKey): string | null {
  if (h.imageSize !== k.imageSize || h.mode !== k.mode) return `made for ${h.imageSize}px (${h.mode}), not ${k.imageSize}px (${k.mode})`;
  if (JSON.stringify(h.classNames) !== JSON.stringify(k.classNames)) return `its classes (${h.classNames.join(', ')}) differ from the folder's (${k.classNames.join(', ')})`;
  const was = new Map(h.files.map((f) => [f[0], f]));
  const now = new Set(k.files.map((f) => f.rel));
  const added = k.files.filter((f) => !was.has(f.rel));
  const removed = h.files.filter((f) => !now.has(f[0]));
  const changed = k.files.filter((f) => {
    const w = was.get(f.rel);
    return w && (w[1] !== f.size || w[2] !== f.mtimeMs || w[3] !== f.label);
  });
  if (!added.length && !removed.length && !changed.length) return null;
  const parts: string[] = [];
  if (added.length) parts.push(`${added.length} file${added.length > 1 ? 's' : ''} added (${added[0]!.rel}${added.length > 1 ? ', …' : ''})`);
  if (removed.length) parts.push(`${removed.length} removed (${removed[0]![0]}${removed.length > 1 ? ', …' : ''})`);
  if (changed.length) parts.push(`${changed.length} changed since (size or modification time: ${changed[0]!.rel}${changed.length > 1 ? ', …' : ''})`);
  return `stale: ${parts.join(', ')}`;
}

export type CacheRead =
  | { ok: true; tree: Omit<CachedTree, 'ignored'> & { images: Uint8Array; labels: Int32Array } }
  /** why the cache was not used; null when there is none */
  | { ok: false; why: string | null };

/** Reads and checks a cache file against the files it must describe. */
export async function readImageCache(path: string, key: CacheKey): Promise<CacheRead> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, why: code === 'ENOENT' ? null : `cannot be read (${code ?? (e as Error).message})` };
  }
  const corrupt = (why: string): CacheRead => ({ ok: false, why: `corrupt: ${why}` });
  if (buf.length < 16 + 32 || !buf.subarray(0, 8).equals(MAGIC)) return corrupt('not an image cache (wrong magic bytes or too short)');
  const version = buf.readUInt32LE(8);
  if (version !== CACHE_VERSION) return { ok: false, why: `written by cache format version ${version}; this is version ${CACHE_VERSION}` };
  const headerLength = buf.readUInt32LE(12);
  if (16 + headerLength + 32 > buf.length) return corrupt(`header length ${headerLength} runs past the end of the file (${buf.length} bytes)`);
  const body = buf.subarray(16, buf.length - 32);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(buf.subarray(buf.length - 32))) return corrupt('SHA-256 checksum mismatch (the file was damaged or truncated)');
  let h: Header;
  try {
    h = JSON.parse(body.subarray(0, headerLength).toString('utf8')) as Header;
  } catch (e) {
    return corrupt(`header is not JSON (${(e as Error).message})`);
  }
  const per = 3 * h.imageSize * h.imageSize;
  if (!Number.isInteger(h.count) || !Array.isArray(h.files) || !Array.isArray(h.classNames) || headerLength + h.count * (per + 4) !== body.length) {
    return corrupt(`${body.length - headerLength} payload bytes do not hold ${h.count} images of 3×${h.imageSize}×${h.imageSize} and their labels`);
  }
  const stale = staleness(h, key);
  if (stale) return { ok: false, why: stale };
  const pixelsAt = 16 + headerLength;
  const images = new Uint8Array(h.count * per);
  images.set(buf.subarray(pixelsAt, pixelsAt + h.count * per));
  const labelBytes = buf.subarray(pixelsAt + h.count * per, pixelsAt + h.count * (per + 4));
  const labels = new Int32Array(h.count);
  for (let i = 0; i < h.count; i++) labels[i] = labelBytes.readInt32LE(4 * i);
  if (labels.some((l) => l < 0 || l >= h.classNames.length)) return corrupt(`a label is outside 0..${h.classNames.length - 1}`);
  return {
    ok: true,
    tree: {
      key: digest.toString('hex'),
      classNames: h.classNames,
      files: h.files.map(([rel, size, mtimeMs]) => ({ rel, size, mtimeMs })),
      skipped: h.skipped,
      grayscale: h.grayscale,
      alpha: h.alpha,
      images,
      labels,
    },
  };
}

/** Writes the decoded tree to `path` atomically. */
export async function writeImageCache(
  path: string,
  tree: Omit<CachedTree, 'key' | 'ignored'> & { images: Uint8Array; labels: Int32Array },
  key: CacheKey,
): Promise<void> {
  const header: Header = {
    imageSize: key.imageSize,
    mode: key.mode,
    classNames: [...key.classNames],
    files: headerFiles(key.files),
    count: tree.labels.length,
    skipped: tree.skipped,
    grayscale: tree.grayscale,
    alpha: tree.alpha,
    createdAt: new Date().toISOString(),
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(16);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(CACHE_VERSION, 8);
  prefix.writeUInt32LE(headerBytes.length, 12);
  const labels = Buffer.alloc(4 * tree.labels.length);
  tree.labels.forEach((l, i) => labels.writeInt32LE(l, 4 * i));
  const digest = createHash('sha256').update(headerBytes).update(tree.images).update(labels).digest();
  await writeFileAtomic(path, Buffer.concat([prefix, headerBytes, tree.images, labels, digest]));
}
