// Image folder: decoding every image with libvips (what the first epoch of the
// first run costs) against reading the decoded-image cache (what later runs
// cost: listing and stat'ing the files to check the key, reading the file,
// checking its SHA-256). Generates N small JPEGs in a temporary folder.
//
//   node --import tsx bench/folder-cache.ts [--images 5000] [--source 64] [--size 32] [--rounds 3] [--keep]
import { mkdirSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { Rng } from '../engine/random.ts';
import { loadImageFolder } from '../data/imageFolder.ts';

const { values } = parseArgs({
  options: { images: { type: 'string' }, source: { type: 'string' }, size: { type: 'string' }, rounds: { type: 'string' }, keep: { type: 'boolean' } },
});
const N = Number(values.images ?? 5000);
const SOURCE = Number(values.source ?? 64);
const SIZE = Number(values.size ?? 32);
const ROUNDS = Number(values.rounds ?? 3);
const CLASSES = 10;

async function generate(root: string): Promise<void> {
  const rng = new Rng(0);
  for (let c = 0; c < CLASSES; c++) mkdirSync(join(root, `class${c}`), { recursive: true });
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    const c = i % CLASSES;
    const raw = Buffer.alloc(SOURCE * SOURCE * 3);
    for (let p = 0; p < raw.length; p++) raw[p] = (c * 25 + rng.int(64) + (p % 97)) & 255;
    jobs.push(sharp(raw, { raw: { width: SOURCE, height: SOURCE, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(root, `class${c}`, `${i}.jpg`)));
    if (jobs.length >= 32) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
}

const time = async (f: () => Promise<unknown>): Promise<number> => {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const root = await mkdtemp(join(tmpdir(), 'onecycle-folder-bench-'));
try {
  process.stdout.write(`generating ${N} ${SOURCE}×${SOURCE} JPEGs in ${root} … `);
  process.stdout.write(`${(await time(() => generate(root))).toFixed(1)} s\n`);
  const opts = { root, imageSize: SIZE, seed: 0 };
  const decode: number[] = [];
  const cached: number[] = [];
  // the first cached load decodes and writes the cache
  const write = await time(() => loadImageFolder(opts));
  for (let r = 0; r < ROUNDS; r++) {
    decode.push(await time(() => loadImageFolder({ ...opts, cache: false })));
    cached.push(await time(async () => {
      const l = await loadImageFolder(opts);
      if (!l.report.caches[0]!.hit) throw new Error('the cache was not read');
    }));
  }
  const d = median(decode);
  const c = median(cached);
  const [l1, l5] = loadavg();
  process.stdout.write(
    [
      `${N} images ${SOURCE}×${SOURCE} JPEG → ${SIZE}×${SIZE} (crop), median of ${ROUNDS}:`,
      `  decode (sharp, parallel):     ${d.toFixed(3)} s  ${(N / d).toFixed(0).padStart(8)} images/s`,
      `  cache (stat + read + SHA-256): ${c.toFixed(3)} s  ${(N / c).toFixed(0).padStart(8)} images/s`,
      `  ratio decode / cache: ${(d / c).toFixed(1)}×   (first load, decode + write cache: ${write.toFixed(3)} s)`,
      `  load average ${l1!.toFixed(2)}, ${l5!.toFixed(2)} (1, 5 min)`,
    ].join('\n') + '\n',
  );
} finally {
  if (values.keep) process.stdout.write(`kept ${root}\n`);
  else rmSync(root, { recursive: true, force: true });
}
