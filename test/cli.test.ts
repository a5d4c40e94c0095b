// The command line as a user meets it, through `node --import tsx cli/main.ts`:
// every command's --help, the exit codes (0 ok, 1 error, 2 unknown command),
// bad flag values and bad recipes refused with the flag or file named, every
// recipe in recipes/ valid, `eval` on a tiny trained run agreeing with the
// run's summary, and `download` from a local 127.0.0.1 server (never the internet).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS, type TrainConfig, readRecipe, resolveConfig, totalIterations, validateConfig } from '../run/config.ts';
import { runTraining } from '../run/train.ts';
import type { EvalReport } from '../run/eval.ts';
import type { Device } from '../gpu/device.ts';
import { loadCifar10 } from '../data/cifar.ts';
import { generatedCifar10Archive } from './cifarArchive.ts';
import { buildSchedules } from '../run/schedules.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const tmp = (): string => mkdtempSync(join(tmpdir(), 'onecycle-cli-'));

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a child process (asynchronously: the test's own HTTP server must keep answering). */
function cli(args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: Ran): string => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/** The commands `main.ts --help` lists. */
async function listedCommands(): Promise<string[]> {
  const r = await cli(['--help']);
  assert.equal(r.code, 0, show(r));
  const section = r.stdout.split('commands:')[1] ?? '';
  return section
    .split('\n')
    .map((l) => /^\s{2}(\S+)\s/.exec(l)?.[1])
    .filter((c): c is string => c !== undefined);
}

describe('cli: commands and help', () => {
  it('lists its commands; each one has a --help that exits 0 and lists its flags', async () => {
    const commands = await listedCommands();
    for (const c of ['train', 'range-test', 'eval', 'download', 'bench', 'experiment']) assert.ok(commands.includes(c), `${c} missing from ${commands.join(', ')}`);
    const expected: Record<string, string[]> = {
      train: ['--recipe', '--model', '--batch-size', '--max-lr', '--resume', '--out'],
      'range-test': ['--start-lr', '--end-lr', '--steps', '--recipe'],
      eval: ['--checkpoint', '--dataset', '--data', '--test-subset', '--batch-size', '--out'],
      download: ['--dataset', '--dir', '--url', '--md5', '--force'],
      bench: ['--quick', '--json', '--compare', '--only', '--no-peer', '--profile'],
      experiment: ['--dry-run', '--probe', '--out', '--quiet', 'report FOLDER'],
    };
    for (const c of commands) {
      const r = await cli([c, '--help']);
      assert.equal(r.code, 0, `${c} --help: ${show(r)}`);
      assert.match(r.stdout, new RegExp(`usage: npm start -- ${c}`), c);
      for (const flag of [...(expected[c] ?? []), '--help']) assert.ok(r.stdout.includes(flag), `${c} --help does not list ${flag}`);
    }
  });

  it('an unknown command exits 2 with the usage', async () => {
    const r = await cli(['trian']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /unknown command 'trian'/);
    assert.match(r.stderr, /commands:/);
  });
});

describe('cli: bad flags and recipes', () => {
  const refused: [string[], RegExp][] = [
    [['train', '--batch-size', 'abc'], /--batch-size: expected an integer, got 'abc'/],
    [['train', '--lr-max', '1'], /Unknown option '--lr-max'/],
    [['train', '--model', 'nope'], /unknown model 'nope' \(one of resnet8, .*smallcnn, or a model file's path/],
    [['train', '--dataset', 'cifar10'], /dataset 'cifar10' needs --data/],
    [['train', '--max-lr', 'fast'], /--max-lr: expected a number, got 'fast'/],
    [['train', '--milestones', '100,x'], /--milestones: expected an integer, got 'x'/],
    [['range-test', '--mode', 'sideways'], /--mode: expected exp or linear, got 'sideways'/],
    [['eval'], /--checkpoint PATH is required/],
    [['eval', '--checkpoint', 'x', '--batch-size', '0'], /--batch-size: expected a positive integer, got '0'/],
    [['eval', '--checkpoint', 'x', '--dataset', 'mnist'], /--dataset: unknown dataset 'mnist'/],
    [['download', '--dataset', 'synthetic'], /--dataset: 'synthetic' is built in/],
    [['download', '--md5', 'abc'], /--md5: expected 32 hexadecimal digits, got 'abc'/],
    [['download', '--url', 'ftp://example.org/a.tar.gz'], /--url: expected an http:\/\/ or https:\/\/ URL/],
  ];
  for (const [args, message] of refused) {
    it(`${args.join(' ')}: exit 1, '${message.source.slice(0, 40)}'`, async () => {
      const r = await cli(args);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '', 'nothing on stdout');
    });
  }

  it('a recipe with an unknown key, or not JSON, or missing, is refused naming the file', async () => {
    const dir = tmp();
    const cases: [string, string | null, RegExp][] = [
      ['unknown-key.json', JSON.stringify({ model: 'resnet8', learningRate: 0.1 }), /unknown-key\.json: unknown recipe key 'learningRate'/],
      ['broken.json', '{"model": "resnet8",', /broken\.json: recipe is not valid JSON/],
      ['array.json', '[1, 2]', /array\.json: recipe must be a JSON object/],
      ['bad-value.json', JSON.stringify({ batchSize: 0 }), /bad-value\.json: batchSize must be a positive integer at most 65536, got 0/],
      ['absent.json', null, /absent\.json: cannot read recipe/],
    ];
    for (const [name, text, message] of cases) {
      const path = join(dir, name);
      if (text !== null) writeFileSync(path, text);
      const r = await cli(['train', '--recipe', path]);
      assert.equal(r.code, 1, `${name}: ${show(r)}`);
      assert.match(r.stderr, message, name);
    }
  });
});

describe('recipes/', () => {
  const dir = join(ROOT, 'recipes');
  const load = (name: string): TrainConfig => {
    const path = join(dir, name);
    const recipe = readRecipe(path);
    // the CIFAR recipes leave the data path to --data
    return resolveConfig(recipe, recipe.dataset && recipe.dataset !== 'synthetic' ? { data: '/path/to/cifar' } : {}, path);
  };

  it('every recipe parses, validates and builds its schedules', () => {
    const names = readdirSync(dir).filter((n) => n.endsWith('.json'));
    for (const n of ['resnet56-onecycle.json', 'resnet56-piecewise.json', 'synthetic-onecycle.json', 'synthetic-constant.json']) assert.ok(names.includes(n), n);
    for (const name of names) {
      const c = load(name);
      const trainSize = c.dataset === 'synthetic' ? c.syntheticTrain : 50000;
      const total = totalIterations(c, trainSize);
      const s = buildSchedules(c, total, c.maxLr as number);
      for (const step of [0, Math.floor(total / 2), total - 1]) {
        assert.ok(s.lr(step) > 0 && Number.isFinite(s.lr(step)), `${name}: lr at ${step}`);
        assert.ok(s.momentum(step) >= 0 && s.momentum(step) < 1, `${name}: momentum at ${step}`);
      }
      const text = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { description?: string };
      assert.ok(text.description && text.description.length > 40, `${name} says what it is`);
    }
  });

  it("the super-convergence pair is the paper's: 0.1-3 in 10k iterations against 0.35 stepped at 50k/70k of 80k", () => {
    const oc = load('resnet56-onecycle.json');
    assert.deepEqual(
      [oc.model, oc.dataset, oc.schedule, oc.maxLr, oc.minLr, oc.iterations, oc.batchSize, oc.weightDecay, oc.momentum, oc.minMomentum, oc.cycleMomentum],
      ['resnet56', 'cifar10', 'one-cycle', 3, 0.1, 10000, 1000, 1e-4, 0.95, 0.85, true],
    );
    const s = buildSchedules(oc, 10000, 3);
    assert.equal(s.lr(0), 0.1);
    assert.equal(Math.max(...Array.from({ length: 10000 }, (_, i) => s.lr(i))), 3);
    assert.ok(s.lr(9999) < 0.1, 'annihilated below the cycle minimum at the end');
    const pc = load('resnet56-piecewise.json');
    assert.deepEqual(
      [pc.model, pc.schedule, pc.maxLr, pc.milestones, pc.gamma, pc.iterations, pc.batchSize, pc.weightDecay, pc.momentum, pc.cycleMomentum],
      ['resnet56', 'step', 0.35, [50000, 70000], 0.1, 80000, 1000, 1e-4, 0.9, false],
    );
    const p = buildSchedules(pc, 80000, 0.35);
    assert.ok(Math.abs(p.lr(60000) - 0.035) < 1e-12 && Math.abs(p.lr(79999) - 0.0035) < 1e-12);
  });

  it('the synthetic pair differs only in the schedule (same model, data and budget)', () => {
    const oc = load('synthetic-onecycle.json');
    const cst = load('synthetic-constant.json');
    assert.equal(oc.dataset, 'synthetic');
    assert.equal(oc.schedule, 'one-cycle');
    assert.equal(cst.schedule, 'constant');
    const budget = (c: TrainConfig) => [c.model, c.width, c.imageSize, c.syntheticTrain, c.syntheticTest, c.batchSize, c.iterations, c.weightDecay, c.seed];
    assert.deepEqual(budget(cst), budget(oc));
  });
});

describe('cli: eval', () => {
  let device: Device;
  let run: string;
  let summary: { testAccuracy: number; steps: number };
  before(async () => {
    device = await testDevice();
    run = tmp();
    // a tiny run (as test/train.test.ts's): smallcnn width 4 on 16×16 synthetic images
    const config = validateConfig(
      { ...DEFAULTS, model: 'smallcnn', width: 4, imageSize: 16, syntheticTrain: 256, syntheticTest: 100, batchSize: 32, iterations: 24, logEvery: 4, maxLr: 0.4, out: run },
      'test',
    );
    await runTraining(config, { device, quiet: true, log: () => {} });
    summary = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')) as typeof summary;
  });
  after(destroyTestDevice);

  it('on a run folder: the accuracy of its summary, per class, and eval.json beside summary.json', async () => {
    const r = await cli(['eval', '--checkpoint', run]);
    assert.equal(r.code, 0, show(r));
    assert.ok(r.stdout.includes(`accuracy ${(100 * summary.testAccuracy).toFixed(2)}%`), `summary says ${summary.testAccuracy}\n${show(r)}`);
    assert.match(r.stdout, /per class:\n\s+disk\s+\d+\.\d\d%/);
    const report = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as EvalReport;
    assert.ok(Math.abs(report.accuracy - summary.testAccuracy) < 1e-6, `eval ${report.accuracy}, summary ${summary.testAccuracy}`);
    assert.equal(report.step, summary.steps);
    assert.equal(report.images, 100);
    assert.equal(report.perClass.length, 10);
    assert.equal(report.perClass.reduce((a, p) => a + p.total, 0), 100);
    assert.equal(report.perClass.reduce((a, p) => a + p.correct, 0), report.correct);
    assert.equal(report.confusion.flat().reduce((a, b) => a + b, 0), 100);
    assert.ok(Number.isFinite(report.loss) && report.loss > 0);
  });

  it('on one checkpoint folder, with a test subset, another batch size and --out', async () => {
    const ckpt = join(run, 'checkpoints', readFileSync(join(run, 'checkpoints', 'latest'), 'utf8').trim());
    const out = join(tmp(), 'sub', 'e.json');
    const r = await cli(['eval', '--checkpoint', ckpt, '--test-subset', '40', '--batch-size', '16', '--out', out, '--quiet']);
    assert.equal(r.code, 0, show(r));
    const report = JSON.parse(readFileSync(out, 'utf8')) as EvalReport;
    assert.equal(report.images, 40);
    assert.equal(report.batchSize, 16);
    assert.equal(report.checkpoint, ckpt);
    assert.equal(r.stderr.includes('evaluating'), false, '--quiet');
  });

  it('a missing or corrupt checkpoint: exit 1, the path and the reason', async () => {
    const missing = join(tmp(), 'nothing-here');
    let r = await cli(['eval', '--checkpoint', missing]);
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes(`--checkpoint ${missing}: no such file or folder`), show(r));

    const empty = tmp();
    r = await cli(['eval', '--checkpoint', empty]);
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes(`${empty}: cannot load checkpoint: no checkpoint here`), show(r));

    // a damaged copy of the run: one flipped byte in the weights
    const copy = tmp();
    const ckptName = readFileSync(join(run, 'checkpoints', 'latest'), 'utf8').trim();
    cpSync(join(run, 'checkpoints'), join(copy, 'checkpoints'), { recursive: true });
    const weights = join(copy, 'checkpoints', ckptName, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 1]! ^= 0xff;
    writeFileSync(weights, bytes);
    r = await cli(['eval', '--checkpoint', copy]);
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes(`${weights}: cannot load checkpoint: SHA-256`), show(r));
    assert.equal(existsSync(join(copy, 'eval.json')), false);

    // a truncated state.json
    writeFileSync(join(copy, 'checkpoints', ckptName, 'state.json'), '{"format": "onecycle-gpu-chec');
    r = await cli(['eval', '--checkpoint', copy]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /state\.json: cannot load checkpoint: is not valid JSON/);
  });
});

describe('cli: download (from a local 127.0.0.1 server)', () => {
  // a CIFAR-10-layout archive of 4 records per file
  const N = 4;
  const { archive: ARCHIVE, md5: MD5 } = generatedCifar10Archive(5, N);
  let server: Server;
  let base: string;
  let hits = 0;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/cifar-10-binary.tar.gz') {
        hits++;
        res.writeHead(200, { 'content-length': ARCHIVE.length });
        res.end(ARCHIVE);
      } else {
        res.writeHead(404, 'Not Found');
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('downloads, verifies and prints the path for train --data; a second run reuses the file', async () => {
    const dir = join(tmp(), 'datasets');
    const args = ['download', '--dir', dir, '--url', `${base}/cifar-10-binary.tar.gz`, '--md5', MD5];
    let r = await cli(args);
    assert.equal(r.code, 0, show(r));
    const path = join(dir, 'cifar-10-binary.tar.gz');
    assert.ok(r.stdout.includes(`downloaded ${path} (MD5 verified)`), show(r));
    assert.ok(r.stdout.includes(`train with: npm start -- train --dataset cifar10 --data ${path}`), show(r));
    assert.match(r.stderr, /100%/);
    assert.deepEqual(readdirSync(dir), ['cifar-10-binary.tar.gz']);
    const { train } = await loadCifar10(path, { expectedRecords: { train: N, test: N } });
    assert.equal(train.labels.length, 5 * N);
    const before = hits;
    r = await cli(args);
    assert.equal(r.code, 0, show(r));
    assert.ok(r.stdout.includes(`already present ${path}`), show(r));
    assert.equal(hits, before, 'not fetched again');
  });

  it('a checksum mismatch or an HTTP error: exit 1 with the reason, nothing written', async () => {
    const dir = join(tmp(), 'datasets');
    let r = await cli(['download', '--dir', dir, '--url', `${base}/cifar-10-binary.tar.gz`, '--md5', '0'.repeat(32), '--quiet']);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /MD5 checksum mismatch: got [0-9a-f]{32}, expected 0{32}/);
    r = await cli(['download', '--dir', dir, '--url', `${base}/missing.tar.gz`, '--md5', MD5]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /missing\.tar\.gz: download failed: HTTP 404/);
    assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], []);
  });
});
