// Atomic writes and checkpoints: round trip, pruning, every kind of corruption
// refused with its path, and writers killed mid-write (SIGKILL of a child
// process) leaving the previous checkpoint loadable and consistent.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { removeStaleTemps, writeFileAtomic } from '../engine/io/atomic.ts';
import { CheckpointError, listCheckpoints, loadCheckpoint, saveCheckpoint } from '../engine/io/checkpoint.ts';
import { Rng } from '../engine/random.ts';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'checkpoint-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
const fresh = async (): Promise<string> => {
  const d = join(dir, `case-${n++}`);
  await mkdir(d);
  return d;
};

describe('writeFileAtomic', () => {
  it('replaces the target and leaves no temporary file', async () => {
    const d = await fresh();
    const p = join(d, 'a.txt');
    await writeFileAtomic(p, 'one');
    await writeFileAtomic(p, new Uint8Array([116, 119, 111]));
    assert.equal(await readFile(p, 'utf8'), 'two');
    assert.deepEqual(await readdir(d), ['a.txt']);
  });

  it('a stream that fails midway leaves the old file intact and no temporary file', async () => {
    const d = await fresh();
    const p = join(d, 'a.bin');
    await writeFileAtomic(p, 'old contents');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(1 << 16);
      throw new Error('connection reset');
    }
    await assert.rejects(writeFileAtomic(p, failing()), /connection reset/);
    assert.equal(await readFile(p, 'utf8'), 'old contents');
    assert.deepEqual(await readdir(d), ['a.bin']);
  });

  it('removeStaleTemps clears what a crashed writer left', async () => {
    const d = await fresh();
    await writeFile(join(d, '.a.bin.tmp-999-deadbeef'), 'partial');
    await writeFile(join(d, 'keep.bin'), 'x');
    assert.deepEqual(await removeStaleTemps(d), ['.a.bin.tmp-999-deadbeef']);
    assert.deepEqual(await readdir(d), ['keep.bin']);
  });
});

interface Sidecar {
  step: number;
  optimizer: { lr: number; velocities: number[][] };
  rng: Rng['state'];
  config: { model: string };
}

function sampleCheckpoint(step: number): { tensors: Parameters<typeof saveCheckpoint>[1]['tensors']; sidecar: Sidecar; step: number } {
  const rng = new Rng(step);
  const w = Float32Array.from({ length: 300 }, () => rng.normal());
  return {
    step,
    tensors: {
      'conv.weight': { shape: [10, 3, 10], data: w },
      'bn.num_batches_tracked': { shape: [], data: BigInt64Array.of(BigInt(step)) },
      labels: { shape: [4], data: Int32Array.of(1, 2, 3, step) },
    },
    sidecar: { step, optimizer: { lr: 0.1 * step, velocities: [[0.5, -0.25]] }, rng: rng.state, config: { model: 'resnet20' } },
  };
}

describe('checkpoints', () => {
  it('round trip: tensors bit-exact, sidecar, step; latest follows the newest save', async () => {
    const root = await fresh();
    const a = sampleCheckpoint(100);
    const saved = await saveCheckpoint(root, a);
    assert.equal(saved.name, 'ckpt-000001');
    const back = await loadCheckpoint<Sidecar>(root);
    assert.equal(back.step, 100);
    assert.deepEqual(back.sidecar, a.sidecar);
    assert.deepEqual(back.tensors['conv.weight'], { dtype: 'F32', shape: [10, 3, 10], data: a.tensors['conv.weight']!.data });
    assert.deepEqual(back.tensors['bn.num_batches_tracked']!.data, BigInt64Array.of(100n));
    assert.deepEqual(back.tensors.labels!.data, Int32Array.of(1, 2, 3, 100));

    await saveCheckpoint(root, sampleCheckpoint(200));
    assert.equal((await loadCheckpoint<Sidecar>(root)).step, 200);
    // a specific checkpoint folder loads too
    assert.equal((await loadCheckpoint<Sidecar>(saved.dir)).step, 100);
    // the RNG state restores the stream exactly
    const rng = new Rng(0);
    rng.state = back.sidecar.rng;
    const ref = new Rng(100);
    for (let i = 0; i < 300; i++) ref.normal();
    assert.equal(rng.nextU32(), ref.nextU32());
  });

  it('keeps the newest `keep` checkpoints', async () => {
    const root = await fresh();
    for (let s = 1; s <= 5; s++) await saveCheckpoint(root, sampleCheckpoint(s), { keep: 3 });
    assert.deepEqual((await listCheckpoints(root)).map((c) => c.seq), [3, 4, 5]);
    assert.deepEqual((await readdir(root)).sort(), ['ckpt-000003', 'ckpt-000004', 'ckpt-000005', 'latest']);
    assert.equal((await loadCheckpoint(root)).step, 5);
  });

  it('refuses a sidecar that is not JSON-serialisable, writing nothing', async () => {
    const root = await fresh();
    await assert.rejects(saveCheckpoint(root, { tensors: {}, sidecar: { big: 1n } }), /not JSON-serialisable/);
    assert.deepEqual(await readdir(root), []);
  });

  const corruptions: [string, (ckptDir: string, root: string) => Promise<void>, string, RegExp][] = [
    ['a flipped byte in the weights', async (d) => {
      const p = join(d, 'model.safetensors');
      const b = await readFile(p);
      b[b.byteLength - 3]! ^= 0x10;
      await writeFile(p, b);
    }, 'model.safetensors', /SHA-256 [0-9a-f]{64} differs from [0-9a-f]{64} recorded in state.json/],
    ['truncated weights', async (d) => {
      const p = join(d, 'model.safetensors');
      const b = await readFile(p);
      await writeFile(p, b.subarray(0, 100));
    }, 'model.safetensors', /is 100 bytes but state.json recorded \d+ \(truncated or replaced\)/],
    ['missing weights', async (d) => rm(join(d, 'model.safetensors')), 'model.safetensors', /cannot be read/],
    ['truncated state.json', async (d) => {
      const p = join(d, 'state.json');
      await writeFile(p, (await readFile(p, 'utf8')).slice(0, 40));
    }, 'state.json', /is not valid JSON .*truncated or corrupt/],
    ['a foreign state.json', async (d) => writeFile(join(d, 'state.json'), '{"hello": 1}'), 'state.json', /is not a onecycle-gpu-checkpoint state file/],
    ['a garbage latest pointer', async (_d, root) => writeFile(join(root, 'latest'), '../../etc\n'), 'latest', /does not name a checkpoint folder/],
    ['a latest pointer to a missing folder', async (_d, root) => writeFile(join(root, 'latest'), 'ckpt-000042\n'), 'latest', /names .*ckpt-000042, which does not exist/],
  ];
  for (const [what, corrupt, file, reason] of corruptions) {
    it(`refuses ${what}, naming ${file}`, async () => {
      const root = await fresh();
      const { dir: d } = await saveCheckpoint(root, sampleCheckpoint(7));
      await corrupt(d, root);
      await assert.rejects(loadCheckpoint(root), (e: unknown) => {
        assert.ok(e instanceof CheckpointError, String(e));
        assert.ok(e.path.endsWith(file), `${e.path} should name ${file}`);
        assert.match(e.message, /: cannot load checkpoint: /);
        assert.match(e.reason, reason);
        return true;
      });
    });
  }

  it('refuses a weights file that is not valid safetensors even when its hash matches', async () => {
    const root = await fresh();
    const { dir: d } = await saveCheckpoint(root, sampleCheckpoint(7));
    const garbage = Buffer.from('not a safetensors file at all');
    await writeFile(join(d, 'model.safetensors'), garbage);
    const statePath = join(d, 'state.json');
    const state = JSON.parse(await readFile(statePath, 'utf8')) as { weights: { bytes: number; sha256: string } };
    state.weights.bytes = garbage.byteLength;
    state.weights.sha256 = (await import('node:crypto')).createHash('sha256').update(garbage).digest('hex');
    await writeFile(statePath, JSON.stringify(state));
    await assert.rejects(loadCheckpoint(root), /model\.safetensors: cannot load checkpoint: header length \d+ exceeds/);
  });

  it('refuses a folder with no checkpoint', async () => {
    const root = await fresh();
    await assert.rejects(loadCheckpoint(root), (e: Error) => e instanceof CheckpointError && /no checkpoint here/.test(e.message) && e.message.startsWith(root));
  });

  it('an interrupted save (partial temporary folder, or a folder committed without the pointer) leaves the previous one loaded', async () => {
    const root = await fresh();
    await saveCheckpoint(root, sampleCheckpoint(1));
    // crash while writing the weights: a partial file in a temporary folder
    const tmp = join(root, '.ckpt-000002.tmp-4242-0badc0de');
    await mkdir(tmp);
    await writeFile(join(tmp, 'model.safetensors'), Buffer.alloc(37));
    assert.equal((await loadCheckpoint(root)).step, 1);
    // the next save clears it and carries on
    await saveCheckpoint(root, sampleCheckpoint(2));
    assert.ok(!(await readdir(root)).some((f) => f.startsWith('.')));
    assert.equal((await loadCheckpoint(root)).step, 2);
    // crash after the folder's rename, before `latest` moved: the committed pointer still wins
    const other = await fresh();
    const { dir: d3 } = await saveCheckpoint(other, sampleCheckpoint(3));
    await cp(d3, join(root, 'ckpt-000003'), { recursive: true });
    assert.equal((await loadCheckpoint(root)).step, 2);
    // and the next save numbers past it
    assert.equal((await saveCheckpoint(root, sampleCheckpoint(4))).name, 'ckpt-000004');
  });

  it('writers killed at random points mid-save (SIGKILL) always leave a loadable, consistent checkpoint', async (t) => {
    const root = await fresh();
    const floats = 1 << 22; // 16 MiB of weights, so a save lasts long enough to be caught in the middle
    // The child saves checkpoints in a loop: every weight of step s equals s.
    const child = `
      import { saveCheckpoint, loadCheckpoint } from './engine/io/checkpoint.ts';
      const root = ${JSON.stringify(root)};
      let step = 0;
      try { step = (await loadCheckpoint(root)).step; } catch {}
      for (;;) {
        step++;
        const w = new Float32Array(${floats}).fill(step);
        await saveCheckpoint(root, { step, tensors: { w: { shape: [${floats}], data: w } }, sidecar: { step } });
        process.stdout.write('saved ' + step + '\\n');
      }`;
    let interruptedMidWrite = 0;
    let lastStep = 0;
    for (let attempt = 0; attempt < 8 && (attempt < 3 || interruptedMidWrite === 0); attempt++) {
      const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<NodeJS.Signals | null>((res) => proc.on('exit', (_c, sig) => res(sig)));
      let saves = 0;
      proc.stdout.on('data', (b: Buffer) => (saves += b.toString().split('\n').length - 1));
      // wait for one completed save, then kill as soon as the next save's weights are partly on disk
      const deadline = Date.now() + 20_000;
      let killed = false;
      while (!killed && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1));
        if (saves < 1) continue;
        const temps = (await readdir(root)).filter((f) => f.startsWith('.ckpt-'));
        for (const t of temps) {
          const size = await stat(join(root, t, 'model.safetensors')).then((s) => s.size, () => -1);
          if (size > 0 && size < floats * 4) {
            proc.kill('SIGKILL');
            killed = true;
            break;
          }
        }
      }
      if (!killed) proc.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      // was it really caught mid-write? (the partial weights file is still there)
      for (const t of (await readdir(root)).filter((f) => f.startsWith('.ckpt-'))) {
        const size = await stat(join(root, t, 'model.safetensors')).then((s) => s.size, () => -1);
        if (size >= 0 && size < floats * 4 + 200) interruptedMidWrite++;
      }
      const loaded = await loadCheckpoint<{ step: number }>(root);
      assert.equal(loaded.sidecar.step, loaded.step);
      assert.ok(loaded.step! >= lastStep && loaded.step! >= 1, `step went from ${lastStep} to ${loaded.step}`);
      const w = loaded.tensors.w!.data as Float32Array;
      assert.equal(w.length, floats);
      assert.ok(w.every((v) => v === loaded.step), 'weights belong to the sidecar\'s step');
      lastStep = loaded.step!;
    }
    t.diagnostic(`${interruptedMidWrite} kills landed mid-save; last step loaded ${lastStep}`);
    assert.ok(interruptedMidWrite > 0, 'no kill landed in the middle of a save');
  });
});
