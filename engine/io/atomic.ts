// Crash-safe file writes. A reader sees either the old file or the complete new
// one, never a torn mixture: the bytes go to a temporary file in the same folder
// (rename is only atomic within one filesystem), the file is fsynced so its data
// is on disk before its name is, rename replaces the target in one step, and the
// folder is fsynced so the rename itself survives a power cut.
//
// A crash leaves at worst a stray `.NAME.tmp-*` file beside the target; nothing
// reads those, and `removeStaleTemps` clears them.
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const TEMP_MARK = '.tmp-';

/** The name of a fresh temporary file beside `path` (hidden, unique per call). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** True for names made by tempPathFor (any target, any process). */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.includes(TEMP_MARK);
}

/** fsyncs a folder so renames and creations inside it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  let h: FileHandle | null = null;
  try {
    h = await open(dir, fsc.O_RDONLY | (fsc.O_DIRECTORY ?? 0));
    await h.sync();
  } catch (e) {
    // Some filesystems (and Windows) cannot fsync a folder; the rename is still atomic there.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'ENOTSUP') throw e;
  } finally {
    await h?.close();
  }
}

/** Writes every chunk to a new file at `path` and fsyncs it (no rename: for files inside a temporary folder). */
export async function writeFileDurable(path: string, data: Uint8Array | string | AsyncIterable<Uint8Array>): Promise<number> {
  const h = await open(path, 'wx');
  let bytes = 0;
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      await writeAll(h, buf);
      bytes = buf.byteLength;
    } else {
      for await (const chunk of data) {
        await writeAll(h, chunk);
        bytes += chunk.byteLength;
      }
    }
    await h.sync();
  } finally {
    await h.close();
  }
  return bytes;
}

const WRITE_PIECE = 1 << 22;

async function writeAll(h: FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.byteLength) {
    // pieces of 4 MiB: large tensors do not hold one threadpool thread for long
    const { bytesWritten } = await h.write(buf, off, Math.min(WRITE_PIECE, buf.byteLength - off));
    off += bytesWritten;
  }
}

/**
 * Replaces `path` with `data` atomically: temporary file in the same folder,
 * fsync, rename over the target, fsync the folder. On any error the temporary
 * file is removed and the target is untouched. Creates the folder if needed.
 * `data` may be an async iterable of chunks (a download stream); returns the bytes written.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | AsyncIterable<Uint8Array>): Promise<number> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = tempPathFor(path);
  try {
    const bytes = await writeFileDurable(tmp, data);
    await rename(tmp, path);
    await fsyncDir(dir);
    return bytes;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Deletes temporary files and folders left in `dir` by interrupted atomic writes
 * (of any process: only call it where no other writer is active).
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const stale = names.filter(isTempName);
  for (const n of stale) await rm(join(dir, n), { recursive: true, force: true });
  return stale;
}
