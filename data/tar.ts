// A small streaming reader for tar archives (POSIX ustar, plus the GNU long-name
// and pax extensions a modern tar may emit), enough for the official CIFAR
// `.tar.gz` files, and a ustar writer for building test archives.
//
// A tar is a sequence of 512-byte header blocks, each followed by the entry's
// data padded to 512; two zero blocks end it. Header fields used here: name
// [0,100), size [124,136) in octal (or GNU base-256 when its first byte has the
// high bit set), checksum [148,156), type flag 156, magic [257,263), prefix
// [345,500) (ustar only; GNU uses that space for other fields).
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';

const BLOCK = 512;

export interface TarEntry {
  name: string;
  size: number;
  /** '0' (or '\0') regular file, '5' folder, ...: the ustar type flag */
  type: string;
}

function cstring(b: Uint8Array, start: number, len: number): string {
  let end = start;
  while (end < start + len && b[end] !== 0) end++;
  return Buffer.from(b.subarray(start, end)).toString('utf8');
}

function parseSize(b: Uint8Array, where: string): number {
  const field = b.subarray(124, 136);
  if (field[0]! & 0x80) {
    // GNU base-256: big-endian, the first byte's high bit only marks the encoding
    let v = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    return v;
  }
  const text = cstring(field, 0, 12).trim();
  if (text !== '' && !/^[0-7]+$/.test(text)) throw new Error(`${where}: bad size field ${JSON.stringify(text)} in a tar header`);
  return text === '' ? 0 : parseInt(text, 8);
}

function checksumOk(b: Uint8Array): boolean {
  const stored = cstring(b, 148, 8).trim();
  if (!/^[0-7]+$/.test(stored)) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  const want = parseInt(stored, 8);
  return want === unsigned || want === signed;
}

/** pax extended header records: "LEN key=value\n" */
function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const text = Buffer.from(data).toString('utf8');
  let pos = 0;
  while (pos < text.length) {
    const space = text.indexOf(' ', pos);
    if (space < 0) break;
    const len = parseInt(text.slice(pos, space), 10);
    if (!(len > 0)) break;
    const rec = text.slice(space + 1, pos + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    pos += len;
  }
  return out;
}

const normalise = (name: string): string => name.replace(/^(\.\/)+/, '');

/**
 * Reads a tar stream and returns the data of the regular files for which
 * `want(name)` is true (names without a leading './'). Other entries are skipped
 * without being kept. `source` names the archive in error messages. With
 * `stopAfter`, reading stops once that many files were found.
 */
export async function readTar(
  stream: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  want: (name: string) => boolean,
  source: string,
  stopAfter = Infinity,
): Promise<Map<string, Uint8Array>> {
  const found = new Map<string, Uint8Array>();
  const header = new Uint8Array(BLOCK);
  let headerFill = 0;
  let ended = false;
  let blocks = 0;
  // the entry whose data is being consumed
  type Pending = TarEntry & { data: Uint8Array | null; filled: number; skip: number };
  let entry: Pending | null = null;
  let longName: string | null = null;
  let paxPath: string | null = null;
  let paxSize: number | null = null;

  const finishEntry = (): void => {
    const e = entry!;
    entry = null;
    if (e.type === 'L') {
      longName = cstring(e.data!, 0, e.data!.length);
    } else if (e.type === 'x') {
      const pax = parsePax(e.data!);
      paxPath = pax.path ?? null;
      paxSize = pax.size !== undefined ? Number(pax.size) : null;
    } else if (e.data) {
      found.set(e.name, e.data);
      if (found.size >= stopAfter) ended = true;
    }
  };

  const startEntry = (): void => {
    blocks++;
    const where = `${source}: tar header ${blocks}`;
    if (header.every((v) => v === 0)) {
      ended = true;
      return;
    }
    if (!checksumOk(header)) throw new Error(`${where}: checksum mismatch (not a tar archive, or corrupt)`);
    const magic = cstring(header, 257, 6);
    const isPosixUstar = magic === 'ustar' && header[262] === 0;
    let name = cstring(header, 0, 100);
    if (isPosixUstar) {
      const prefix = cstring(header, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const type = String.fromCharCode(header[156]!);
    let size = parseSize(header, where);
    if (type !== 'L' && type !== 'x' && type !== 'g') {
      if (longName !== null) name = longName;
      if (paxPath !== null) name = paxPath;
      if (paxSize !== null) size = paxSize;
      longName = paxPath = null;
      paxSize = null;
    }
    name = normalise(name);
    const isFile = type === '0' || type === '\0' || type === '7';
    const keep = type === 'L' || type === 'x' || (isFile && want(name));
    entry = { name, size, type, data: keep ? new Uint8Array(size) : null, filled: 0, skip: (BLOCK - (size % BLOCK)) % BLOCK };
    if (size === 0) {
      finishEntry();
    }
  };

  for await (const chunk of stream) {
    let pos = 0;
    while (pos < chunk.length && !ended) {
      if (entry) {
        const e: Pending = entry;
        if (e.filled < e.size) {
          const n = Math.min(e.size - e.filled, chunk.length - pos);
          e.data?.set(chunk.subarray(pos, pos + n), e.filled);
          e.filled += n;
          pos += n;
          if (e.filled === e.size && e.skip === 0) finishEntry();
        } else {
          const n = Math.min(e.skip, chunk.length - pos);
          e.skip -= n;
          pos += n;
          if (e.skip === 0) finishEntry();
        }
      } else {
        const n = Math.min(BLOCK - headerFill, chunk.length - pos);
        header.set(chunk.subarray(pos, pos + n), headerFill);
        headerFill += n;
        pos += n;
        if (headerFill === BLOCK) {
          headerFill = 0;
          startEntry();
        }
      }
    }
    if (ended) break;
  }
  if (entry !== null) {
    const e: TarEntry & { filled: number } = entry;
    throw new Error(`${source}: the archive is truncated: entry '${e.name}' has ${e.filled} of its ${e.size} bytes`);
  }
  if (headerFill !== 0) throw new Error(`${source}: the archive is truncated inside a tar header`);
  return found;
}

/** readTar over a gzip-compressed archive on disk (`.tar.gz`/`.tgz`). */
export async function readTarGz(path: string, want: (name: string) => boolean, stopAfter = Infinity): Promise<Map<string, Uint8Array>> {
  const file = createReadStream(path);
  const gunzip = createGunzip();
  file.on('error', (e) => gunzip.destroy(e)); // pipe() does not forward the source's errors
  file.pipe(gunzip);
  try {
    return await readTar(gunzip, want, path, stopAfter);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') {
      throw new Error(`${path}: not a valid gzip file, or truncated (${(e as Error).message})`);
    }
    if (code === 'ENOENT') throw new Error(`${path}: missing file`);
    throw e;
  } finally {
    file.destroy();
    gunzip.destroy();
  }
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar archive of regular files (names up to 100 bytes), ending with the two zero blocks. */
export function writeTar(files: { name: string; data: Uint8Array }[], mtime = 0): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    if (name.byteLength > 100) throw new Error(`writeTar: name longer than 100 bytes: ${f.name}`);
    const h = new Uint8Array(BLOCK);
    h.set(name, 0);
    h.set(Buffer.from(octal(0o644, 8)), 100);
    h.set(Buffer.from(octal(0, 8)), 108);
    h.set(Buffer.from(octal(0, 8)), 116);
    h.set(Buffer.from(octal(f.data.byteLength, 12)), 124);
    h.set(Buffer.from(octal(mtime, 12)), 136);
    h.fill(0x20, 148, 156);
    h[156] = 0x30; // '0': regular file
    h.set(Buffer.from('ustar\x0000'), 257);
    let sum = 0;
    for (const v of h) sum += v;
    h.set(Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `), 148);
    parts.push(h, f.data, new Uint8Array((BLOCK - (f.data.byteLength % BLOCK)) % BLOCK));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  return Buffer.concat(parts);
}
