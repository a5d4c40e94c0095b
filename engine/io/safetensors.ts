// The safetensors format (huggingface/safetensors), read and written to the
// letter of the reference implementation (`safetensors/src/tensor.rs`) so the
// files load with `safetensors.torch.load_file`:
//
//   [8 bytes: header length N, u64 little-endian]
//   [N bytes: UTF-8 JSON {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...},
//             padded with spaces to a multiple of 8]
//   [byte buffer: each tensor's elements, C order, little-endian; offsets are relative to its start]
//
// Writing follows the reference byte for byte: tensors sorted by descending dtype
// alignment then name (so every tensor starts aligned for its type), the header
// padded with spaces to 8. Reading refuses, naming the file and the reason,
// everything the reference refuses (header length beyond the file or 100 MB, bad
// UTF-8/JSON, offsets that do not tile the buffer exactly, sizes that disagree
// with dtype·shape) and also unknown dtypes and malformed entries.
import { endianness } from 'node:os';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic.ts';

/** The dtypes this implementation reads and writes; F16/BF16 travel as raw 16-bit patterns. */
export type SafetensorsDType = 'BOOL' | 'U8' | 'I8' | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

export type TensorArray =
  | Float32Array | Float64Array | Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array
  | BigInt64Array | BigUint64Array;

/** A tensor to write; `dtype` defaults from the array type (Float32Array → F32, BigInt64Array → I64, ...). */
export interface TensorEntry {
  shape: readonly number[];
  data: TensorArray;
  dtype?: SafetensorsDType;
}

export interface StoredTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: TensorArray;
}

export interface SafetensorsFile {
  tensors: Record<string, StoredTensor>;
  metadata: Record<string, string>;
}

type ArrayCtor = { new (buffer: ArrayBuffer): TensorArray; readonly BYTES_PER_ELEMENT: number; readonly name: string };

interface DTypeInfo {
  size: number;
  /** the reference's enum order (increasing alignment); writing sorts by it descending */
  rank: number;
  array: ArrayCtor;
}

const DTYPES: Record<SafetensorsDType, DTypeInfo> = {
  BOOL: { size: 1, rank: 0, array: Uint8Array },
  U8: { size: 1, rank: 1, array: Uint8Array },
  I8: { size: 1, rank: 2, array: Int8Array },
  // ranks 3, 4: F8_E5M2, F8_E4M3 (not supported here)
  I16: { size: 2, rank: 5, array: Int16Array },
  U16: { size: 2, rank: 6, array: Uint16Array },
  F16: { size: 2, rank: 7, array: Uint16Array },
  BF16: { size: 2, rank: 8, array: Uint16Array },
  I32: { size: 4, rank: 9, array: Int32Array },
  U32: { size: 4, rank: 10, array: Uint32Array },
  F32: { size: 4, rank: 11, array: Float32Array },
  F64: { size: 8, rank: 12, array: Float64Array },
  I64: { size: 8, rank: 13, array: BigInt64Array },
  U64: { size: 8, rank: 14, array: BigUint64Array },
};

/** The reference refuses headers above this (MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

export function dtypeSize(dtype: SafetensorsDType): number {
  return DTYPES[dtype].size;
}

function isDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}

/** A refused file: `path` names it, `reason` says what is wrong. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: not a valid safetensors file: ${reason}`);
  }
}

function checkHostEndianness(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: big-endian hosts are not supported (the format is little-endian)');
}

function defaultDType(data: TensorArray): SafetensorsDType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Uint32Array) return 'U32';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Uint16Array) return 'U16';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof BigUint64Array) return 'U64';
  throw new Error('safetensors: unsupported array type');
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The encoded file as its header plus one byte view per tensor (no copy of the data), in file order. */
export interface EncodedSafetensors {
  header: Uint8Array;
  chunks: Uint8Array[];
  byteLength: number;
}

/** Lays out a safetensors file exactly as the reference serializer does. */
export function encodeSafetensorsChunks(tensors: Record<string, TensorEntry>, metadata?: Record<string, string>): EncodedSafetensors {
  checkHostEndianness();
  const entries = Object.entries(tensors).map(([name, t]) => {
    if (name === METADATA_KEY) throw new Error(`safetensors: '${METADATA_KEY}' is reserved and cannot name a tensor`);
    const dtype = t.dtype ?? defaultDType(t.data);
    if (!isDType(dtype)) throw new Error(`safetensors: tensor '${name}' has unknown dtype '${String(dtype)}'`);
    const info = DTYPES[dtype];
    if (!(t.data instanceof info.array)) {
      throw new Error(`safetensors: tensor '${name}' is ${dtype}, which needs a ${info.array.name}, got ${t.data.constructor.name}`);
    }
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new Error(`safetensors: tensor '${name}' has invalid shape [${t.shape.join(', ')}]`);
    }
    if (numel(t.shape) !== t.data.length) {
      throw new Error(`safetensors: tensor '${name}' has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    }
    return { name, dtype, info, shape: [...t.shape], data: t.data };
  });
  entries.sort((a, b) => b.info.rank - a.info.rank || utf8Compare(a.name, b.name));

  // Built by hand so keys keep this order (a JS object would move integer-like names first).
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors: metadata '${k}' must be a string, got ${typeof v}`);
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const bytes = new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength);
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${offset + bytes.byteLength}]}`);
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, chunks, byteLength: header.byteLength + offset };
}

/** The whole file in one buffer. */
export function encodeSafetensors(tensors: Record<string, TensorEntry>, metadata?: Record<string, string>): Uint8Array {
  const { header, chunks, byteLength } = encodeSafetensorsChunks(tensors, metadata);
  const out = new Uint8Array(byteLength);
  out.set(header, 0);
  let pos = header.byteLength;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/** Writes a safetensors file atomically (temporary file, fsync, rename), streaming the tensors without a copy. */
export async function writeSafetensors(path: string, tensors: Record<string, TensorEntry>, metadata?: Record<string, string>): Promise<number> {
  const { header, chunks } = encodeSafetensorsChunks(tensors, metadata);
  async function* all(): AsyncGenerator<Uint8Array> {
    yield header;
    yield* chunks;
  }
  return writeFileAtomic(path, all());
}

interface ParsedEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

/** Parses and validates the header; returns the entries and where the byte buffer starts. */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  path = '<buffer>',
): { entries: ParsedEntry[]; metadata: Record<string, string>; dataStart: number } {
  const fail = (reason: string): never => {
    throw new SafetensorsError(path, reason);
  };
  if (bytes.byteLength < 8) fail(`the file is ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.byteLength) {
    fail(`header length ${headerLen} exceeds the file (${bytes.byteLength} bytes, so at most ${bytes.byteLength - 8})`);
  }
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    fail('the header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail(`the header does not start with '{' (it starts with ${JSON.stringify(text.slice(0, 16))})`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(`the header is ${describe(json)}, not a JSON object`);

  const metadataPairs: [string, string][] = [];
  const entries: ParsedEntry[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`${METADATA_KEY} is ${describe(value)}, not an object`);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`${METADATA_KEY}['${k}'] is ${describe(v)}, not a string`);
        metadataPairs.push([k, v as string]);
      }
      continue;
    }
    const what = `tensor '${name}'`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`${what}: entry is ${describe(value)}, not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`${what}: dtype is ${describe(dtype)}, not a string`);
    if (!isDType(dtype)) fail(`${what}: unknown or unsupported dtype '${dtype}' (supported: ${Object.keys(DTYPES).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${what}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`${what}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`${what}: data_offsets [${begin}, ${end}] end before they begin`);
    const dt = dtype as SafetensorsDType;
    const count = numel(shape as number[]);
    const need = count * DTYPES[dt].size;
    if (!Number.isSafeInteger(need)) fail(`${what}: shape ${JSON.stringify(shape)} is too large`);
    if (end - begin !== need) {
      fail(`${what}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dt} × [${(shape as number[]).join(', ')}] needs ${need}`);
    }
    entries.push({ name, dtype: dt, shape: shape as number[], begin, end });
  }

  const dataStart = 8 + headerLen;
  const bufferLen = bytes.byteLength - dataStart;
  // Like the reference: sorted by offsets, the tensors must tile the byte buffer exactly.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: ParsedEntry | null = null;
  for (const e of sorted) {
    if (e.end > bufferLen) {
      fail(`tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] lie outside the ${bufferLen}-byte data buffer (the file is truncated or the offsets are wrong)`);
    }
    if (e.begin < pos) fail(`tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev!.name}' [${prev!.begin}, ${prev!.end}]`);
    if (e.begin > pos) fail(`tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] leave a gap of ${e.begin - pos} unused bytes before it`);
    pos = e.end;
    prev = e;
  }
  if (pos !== bufferLen) fail(`the data buffer has ${bufferLen} bytes but the tensors cover ${pos} (${bufferLen - pos} trailing bytes)`);
  // fromEntries defines own properties, so even a key named '__proto__' stays data
  return { entries, metadata: Object.fromEntries(metadataPairs), dataStart };
}

/** Decodes a whole safetensors file held in memory; the tensors are copies (aligned, independent of `bytes`). */
export function decodeSafetensors(bytes: Uint8Array, path = '<buffer>'): SafetensorsFile {
  checkHostEndianness();
  const { entries, metadata, dataStart } = parseSafetensorsHeader(bytes, path);
  const tensors = Object.fromEntries(
    entries.map((e): [string, StoredTensor] => {
      // A fresh, aligned copy (Buffer.slice would share memory with the file's buffer).
      const copy = new Uint8Array(e.end - e.begin);
      copy.set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
      return [e.name, { dtype: e.dtype, shape: e.shape, data: new DTYPES[e.dtype].array(copy.buffer) }];
    }),
  );
  return { tensors, metadata };
}

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new SafetensorsError(path, `cannot be read (${(e as Error).message})`);
  }
  return decodeSafetensors(bytes, path);
}
