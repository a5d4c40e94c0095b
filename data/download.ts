// Downloads a dataset archive: streamed to a temporary file beside the target
// while its MD5 is computed, renamed into place only when size and checksum are
// right (engine/io/atomic.ts), so an interrupted or corrupt download never leaves
// a file that looks complete.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import type { CifarVariant } from './cifar.ts';

export interface ArchiveInfo {
  url: string;
  /** hex MD5 of the archive, as published on the dataset's page */
  md5: string;
  bytes: number;
  file: string;
}

// https://www.cs.toronto.edu/~kriz/cifar.html lists the MD5 sums; the sizes are those of the same files.
export const CIFAR10_ARCHIVE: ArchiveInfo = {
  url: 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
  md5: 'c32a1d4ab5d03f1284b67883e8d87530',
  bytes: 170052171,
  file: 'cifar-10-binary.tar.gz',
};
export const CIFAR100_ARCHIVE: ArchiveInfo = {
  url: 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz',
  md5: '03b5dce01913d631647c71ecec9e9cb8',
  bytes: 168513733,
  file: 'cifar-100-binary.tar.gz',
};

export interface DownloadOptions {
  /** expected hex MD5; the file is refused (not written) on a mismatch */
  md5?: string;
  onProgress?: (receivedBytes: number, totalBytes: number | null) => void;
  signal?: AbortSignal;
}

export interface Downloaded {
  path: string;
  bytes: number;
  md5: string;
}

/** Hex MD5 of a file on disk. */
export async function fileMd5(path: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Streams `url` to `dest` atomically, checking the length the server announced and, if given, the MD5. */
export async function downloadFile(url: string, dest: string, options: DownloadOptions = {}): Promise<Downloaded> {
  let res: Response;
  try {
    res = await fetch(url, options.signal ? { signal: options.signal } : {});
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause?.message ?? (e as Error).message;
    throw new Error(`${url}: download failed (${cause})`);
  }
  if (!res.ok || !res.body) throw new Error(`${url}: download failed: HTTP ${res.status} ${res.statusText}`);
  const header = res.headers.get('content-length');
  const total = header !== null && /^\d+$/.test(header) ? Number(header) : null;
  const hash = createHash('md5');
  let received = 0;
  let md5 = '';
  const body = res.body;
  async function* checked(): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of body) {
        hash.update(chunk);
        received += chunk.byteLength;
        options.onProgress?.(received, total);
        yield chunk;
      }
    } catch (e) {
      const cause = (e as Error & { cause?: Error }).cause?.message ?? (e as Error).message;
      throw new Error(`${url}: download interrupted after ${received} bytes (${cause}); ${dest} was not written`);
    }
    // Throwing here, before writeFileAtomic renames, leaves `dest` untouched.
    if (total !== null && received !== total) {
      throw new Error(`${url}: download truncated: received ${received} of ${total} bytes; ${dest} was not written`);
    }
    md5 = hash.digest('hex');
    if (options.md5 && md5 !== options.md5.toLowerCase()) {
      throw new Error(
        `${url}: MD5 checksum mismatch: got ${md5}, expected ${options.md5.toLowerCase()} ` +
          `(the download is corrupt or the server sent another file); ${dest} was not written`,
      );
    }
  }
  const bytes = await writeFileAtomic(dest, checked());
  return { path: dest, bytes, md5 };
}

export interface CifarDownloadOptions extends DownloadOptions {
  /** another URL (a mirror, or a local server in tests) */
  url?: string;
  /** download even if a file with the right checksum is already there */
  force?: boolean;
}

/**
 * The official archive of `variant` in `dir`, downloaded unless a file with the
 * expected MD5 is already there. Returns its path (give it to loadCifar).
 */
export async function downloadCifar(variant: CifarVariant, dir: string, options: CifarDownloadOptions = {}): Promise<string> {
  const info = variant === 'cifar10' ? CIFAR10_ARCHIVE : CIFAR100_ARCHIVE;
  const dest = join(dir, info.file);
  const md5 = options.md5 ?? info.md5;
  if (!options.force) {
    const present = await stat(dest).then((s) => s.isFile(), () => false);
    if (present && (await fileMd5(dest)) === md5) return dest;
  }
  const o: DownloadOptions = { md5 };
  if (options.onProgress) o.onProgress = options.onProgress;
  if (options.signal) o.signal = options.signal;
  await downloadFile(options.url ?? info.url, dest, o);
  return dest;
}
