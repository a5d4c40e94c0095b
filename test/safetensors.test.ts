// safetensors: byte-exact against the reference implementation's own test
// vectors, round trips of every dtype (fast-check), and every malformed file
// refused with its path and the reason.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type SafetensorsDType, type TensorArray, SafetensorsError, decodeSafetensors, encodeSafetensors, readSafetensors,
  writeSafetensors,
} from '../engine/io/safetensors.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const f32le = (...v: number[]): number[] => [...new Uint8Array(Float32Array.from(v).buffer)];
const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];
const u64le = (n: number): number[] => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return [...b];
};

describe('safetensors: reference byte vectors', () => {
  // huggingface/safetensors safetensors/src/tensor.rs, test_serialization_forced_alignement:
  // "attn0", F32, shape [1, 1, 2, 3], data 0..5 → header of 65 bytes padded with 7 spaces to 72.
  it('F32 tensor with header padding (tensor.rs test_serialization_forced_alignement)', () => {
    const got = encodeSafetensors({ attn0: { shape: [1, 1, 2, 3], data: Float32Array.from([0, 1, 2, 3, 4, 5]) } });
    const want = [
      ...u64le(72),
      ...ascii('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}'),
      ...ascii('       '),
      ...f32le(0, 1, 2, 3, 4, 5),
    ];
    assert.deepEqual([...got], want);
  });

  // tensor.rs test_empty: no tensors → "{}" plus 6 spaces; with metadata {"framework": "pt"} → 40-byte header.
  it('empty file, with and without metadata (tensor.rs test_empty)', () => {
    assert.deepEqual([...encodeSafetensors({})], [...u64le(8), ...ascii('{}      ')]);
    assert.deepEqual(
      [...encodeSafetensors({}, { framework: 'pt' })],
      [...u64le(40), ...ascii('{"__metadata__":{"framework":"pt"}}     ')],
    );
  });

  // bindings/python/tests/test_simple.py test_serialization: np.zeros((2, 2), int32).
  it('I32 zeros (python test_simple.py test_serialization)', () => {
    const got = encodeSafetensors({ test: { shape: [2, 2], data: new Int32Array(4) } });
    const want = [...ascii('@\0\0\0\0\0\0\0{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}    '), ...new Array<number>(16).fill(0)];
    assert.deepEqual([...got], want);
    const back = decodeSafetensors(got);
    assert.deepEqual(back.tensors.test, { dtype: 'I32', shape: [2, 2], data: new Int32Array(4) });
  });

  it('orders tensors as the reference: descending dtype alignment, then name', () => {
    const bytes = encodeSafetensors({
      b: { shape: [1], data: new Uint8Array(1) },
      a: { shape: [1], data: new Float32Array(1) },
      c: { shape: [1], data: new BigInt64Array(1) },
      '10': { shape: [1], data: new Float32Array(1) },
      '9': { shape: [1], data: new Float32Array(1) },
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
    const order = [...header.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
    assert.deepEqual(order, ['c', '10', '9', 'a', 'b']);
  });
});

const DTYPE_ARRAYS: Record<SafetensorsDType, (n: number, r: () => number) => TensorArray> = {
  BOOL: (n, r) => Uint8Array.from({ length: n }, () => r() & 1),
  U8: (n, r) => Uint8Array.from({ length: n }, () => r() & 0xff),
  I8: (n, r) => Int8Array.from({ length: n }, () => r()),
  I16: (n, r) => Int16Array.from({ length: n }, () => r()),
  U16: (n, r) => Uint16Array.from({ length: n }, () => r()),
  F16: (n, r) => Uint16Array.from({ length: n }, () => r()),
  BF16: (n, r) => Uint16Array.from({ length: n }, () => r()),
  I32: (n, r) => Int32Array.from({ length: n }, () => r()),
  U32: (n, r) => Uint32Array.from({ length: n }, () => r()),
  F32: (n, r) => Float32Array.from({ length: n }, () => r() / 7),
  F64: (n, r) => Float64Array.from({ length: n }, () => r() / 7),
  I64: (n, r) => BigInt64Array.from({ length: n }, () => BigInt(r()) * 1_000_003n),
  U64: (n, r) => BigUint64Array.from({ length: n }, () => BigInt(r() >>> 0) * 4_294_967_311n),
};

describe('safetensors: round trip', () => {
  it('every dtype, random shapes (scalars and empty tensors included), metadata', () => {
    const dtypes = Object.keys(DTYPE_ARRAYS) as SafetensorsDType[];
    const tensorArb = fc.record({
      dtype: fc.constantFrom(...dtypes),
      shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }),
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((s) => s !== '__metadata__'), tensorArb, { maxKeys: 6 }),
        fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
        (spec, metadata) => {
          const tensors = Object.fromEntries(
            Object.entries(spec).map(([name, s]) => {
              let x = s.seed | 1;
              const r = (): number => (x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) | 0);
              const n = s.shape.reduce((a, b) => a * b, 1);
              return [name, { dtype: s.dtype, shape: s.shape, data: DTYPE_ARRAYS[s.dtype](n, r) }];
            }),
          );
          const bytes = encodeSafetensors(tensors, metadata);
          const back = decodeSafetensors(bytes);
          assert.deepEqual(back.metadata, { ...metadata });
          assert.deepEqual(Object.keys(back.tensors).sort(), Object.keys(tensors).sort());
          for (const [name, t] of Object.entries(tensors)) assert.deepEqual(back.tensors[name], t, name);
          // every tensor starts aligned for its type, counted from the start of the file
          const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
          assert.equal(n % 8, 0);
          const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')) as Record<string, { data_offsets?: number[]; dtype?: string }>;
          for (const [name, info] of Object.entries(header)) {
            if (name === '__metadata__') continue;
            const size = tensors[name]!.data.BYTES_PER_ELEMENT;
            assert.equal((8 + n + info.data_offsets![0]!) % size, 0, `${name} (${info.dtype}) is misaligned`);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('writes a file atomically and reads it back (PyTorch state_dict with int64 num_batches_tracked)', async () => {
    const path = join(dir, 'model.safetensors');
    const weight = Float32Array.from({ length: 16 * 3 * 3 * 3 }, (_, i) => Math.sin(i));
    await writeSafetensors(
      path,
      {
        'conv1.weight': { shape: [16, 3, 3, 3], data: weight },
        'bn1.running_mean': { shape: [16], data: new Float32Array(16) },
        'bn1.num_batches_tracked': { shape: [], data: BigInt64Array.of(390n) },
        ['__proto__']: { shape: [1], data: Int32Array.of(7) },
      },
      { format: 'pt' },
    );
    const back = await readSafetensors(path);
    assert.deepEqual(back.metadata, { format: 'pt' });
    assert.deepEqual(back.tensors['conv1.weight']!.data, weight);
    assert.deepEqual(back.tensors['bn1.num_batches_tracked'], { dtype: 'I64', shape: [], data: BigInt64Array.of(390n) });
    assert.ok(Object.prototype.hasOwnProperty.call(back.tensors, '__proto__'));
    assert.deepEqual(back.tensors['__proto__']!.data, Int32Array.of(7));
  });

  it('refuses to write what it could not read back', () => {
    assert.throws(() => encodeSafetensors({ x: { shape: [3], data: new Float32Array(2) } }), /'x' has 2 elements but shape \[3\] needs 3/);
    assert.throws(() => encodeSafetensors({ x: { shape: [2], data: new Float32Array(2), dtype: 'I32' } }), /I32, which needs a Int32Array, got Float32Array/);
    assert.throws(() => encodeSafetensors({ x: { shape: [-1], data: new Float32Array(0) } }), /invalid shape/);
    assert.throws(() => encodeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), /reserved/);
  });
});

/** A file from a header (object or raw text) and a data buffer. */
function craft(header: unknown, data: number[] | Uint8Array = [], headerLen?: number): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.byteLength + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

const f32 = (shape: number[], offsets: number[]): object => ({ dtype: 'F32', shape, data_offsets: offsets });

describe('safetensors: malformed files are refused with the path and the reason', () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', new Uint8Array(5), /5 bytes, shorter than the 8-byte header length/],
    ['header length beyond the file', craft({}, [], 4096), /header length 4096 exceeds the file/],
    ['header length beyond 100 MB', craft({}, [], 200_000_000), /header length 200000000 exceeds the 100000000-byte limit/],
    ['header not UTF-8', craft(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1')).map((b, i) => (i === 9 ? 0xff : b)), /not valid UTF-8/],
    ['header not JSON', craft('{"a": '), /not valid JSON/],
    ["header not starting with '{'", craft('[1, 2]'), /does not start with '\{'/],
    ['metadata not strings', craft({ __metadata__: { epoch: 3 } }), /__metadata__\['epoch'\] is number, not a string/],
    ['entry not an object', craft({ w: 5 }), /tensor 'w': entry is number/],
    ['unknown dtype', craft({ w: { dtype: 'F7', shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /tensor 'w': unknown or unsupported dtype 'F7'/],
    ['dtype not a string', craft({ w: { dtype: 32, shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /tensor 'w': dtype is number/],
    ['negative shape', craft({ w: f32([-1], [0, 4]) }, [0, 0, 0, 0]), /tensor 'w': shape \[-1\] is not a list of non-negative integers/],
    ['fractional shape', craft({ w: f32([1.5], [0, 4]) }, [0, 0, 0, 0]), /shape \[1.5\]/],
    ['offsets not a pair', craft({ w: f32([1], [0]) }, [0, 0, 0, 0]), /data_offsets \[0\] is not a pair/],
    ['offsets reversed', craft({ w: f32([0], [4, 0]) }, [0, 0, 0, 0]), /end before they begin/],
    ['offsets disagree with dtype × shape', craft({ w: f32([2], [0, 4]) }, [0, 0, 0, 0]), /hold 4 bytes but F32 × \[2\] needs 8/],
    ['wrong dtype for the bytes (I64 over 4 bytes)', craft({ w: { dtype: 'I64', shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /hold 4 bytes but I64 × \[1\] needs 8/],
    ['offsets beyond the buffer (truncated file)', craft({ w: f32([4], [0, 16]) }, [0, 0, 0, 0, 0, 0, 0, 0]), /lie outside the 8-byte data buffer/],
    ['overlapping tensors', craft({ a: f32([2], [0, 8]), b: f32([1], [4, 8]) }, new Array<number>(8).fill(0)), /tensor 'b': data_offsets \[4, 8\] overlap tensor 'a'/],
    ['a gap between tensors', craft({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, new Array<number>(12).fill(0)), /gap of 4 unused bytes/],
    ['trailing bytes', craft({ a: f32([1], [0, 4]) }, new Array<number>(12).fill(0)), /12 bytes but the tensors cover 4 \(8 trailing bytes\)/],
  ];
  for (const [what, bytes, reason] of cases) {
    it(what, () => {
      assert.throws(
        () => decodeSafetensors(bytes, '/models/bad.safetensors'),
        (e: unknown) => {
          assert.ok(e instanceof SafetensorsError, String(e));
          assert.match(e.message, /^\/models\/bad\.safetensors: not a valid safetensors file: /);
          assert.match(e.reason, reason);
          return true;
        },
      );
    });
  }

  it('a truncated file on disk is refused naming its path; a missing file too', async () => {
    const path = join(dir, 'truncated.safetensors');
    await writeSafetensors(path, { w: { shape: [64], data: new Float32Array(64) } });
    const full = await readFile(path);
    await writeFile(path, full.subarray(0, full.byteLength - 10));
    await assert.rejects(readSafetensors(path), (e: Error) => e instanceof SafetensorsError && e.message.startsWith(path) && /outside the 246-byte data buffer/.test(e.message));
    const missing = join(dir, 'missing.safetensors');
    await assert.rejects(readSafetensors(missing), (e: Error) => e instanceof SafetensorsError && e.message.startsWith(missing) && /cannot be read/.test(e.message));
  });
});
