// Downloads from a local HTTP server on 127.0.0.1 (never the internet) serving
// a generated CIFAR-10-layout archive: a good download lands atomically and
// loads; a wrong checksum, an HTTP error, a cut connection or a refused one
// leave nothing behind (and an older file untouched).
import assert from 'node:assert/strict';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCifar10 } from '../data/cifar.ts';
import { CIFAR10_ARCHIVE, CIFAR100_ARCHIVE, downloadCifar, downloadFile, fileMd5 } from '../data/download.ts';
import { generatedCifar10Archive } from './cifarArchive.ts';

const N = 4;
const { archive: ARCHIVE, md5: MD5 } = generatedCifar10Archive(11, N);

let server: Server;
let base: string;
let dir: string;
const hits: Record<string, number> = {};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'download-test-'));
  server = createServer((req, res) => {
    const url = req.url ?? '';
    hits[url] = (hits[url] ?? 0) + 1;
    if (url === '/cifar-10-binary.tar.gz') {
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': ARCHIVE.length });
      // in pieces, as a real server would send it
      for (let i = 0; i < ARCHIVE.length; i += 10_000) res.write(ARCHIVE.subarray(i, i + 10_000));
      res.end();
    } else if (url === '/chunked') {
      res.writeHead(200);
      res.end(ARCHIVE);
    } else if (url === '/redirect') {
      res.writeHead(302, { location: '/cifar-10-binary.tar.gz' });
      res.end();
    } else if (url === '/corrupt') {
      const bad = Buffer.from(ARCHIVE);
      bad[1000]! ^= 1;
      res.writeHead(200, { 'content-length': bad.length });
      res.end(bad);
    } else if (url === '/cut') {
      res.writeHead(200, { 'content-length': ARCHIVE.length });
      res.write(ARCHIVE.subarray(0, ARCHIVE.length >> 1), () => res.destroy());
    } else {
      res.writeHead(404, 'Not Found');
      res.end('no such file');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

let caseNo = 0;
const fresh = (): string => join(dir, `case-${caseNo++}`);

describe('downloads', () => {
  it('streams the archive to disk, checks its MD5, reports progress, leaves no temporary file; the archive loads', async () => {
    const d = fresh();
    const dest = join(d, 'cifar-10-binary.tar.gz');
    const progress: [number, number | null][] = [];
    const got = await downloadFile(`${base}/cifar-10-binary.tar.gz`, dest, { md5: MD5, onProgress: (r, t) => progress.push([r, t]) });
    assert.deepEqual(got, { path: dest, bytes: ARCHIVE.length, md5: MD5 });
    assert.deepEqual(new Uint8Array(await readFile(dest)), new Uint8Array(ARCHIVE));
    assert.deepEqual(progress[progress.length - 1], [ARCHIVE.length, ARCHIVE.length]);
    assert.deepEqual(await readdir(d), ['cifar-10-binary.tar.gz']);
    const { train, test } = await loadCifar10(dest, { expectedRecords: { train: N, test: N } });
    assert.equal(train.labels.length, 5 * N);
    assert.equal(test.labels.length, N);
  });

  it('follows redirects, and accepts a response without a length', async () => {
    for (const path of ['/redirect', '/chunked']) {
      const dest = join(fresh(), 'a.tar.gz');
      assert.equal((await downloadFile(`${base}${path}`, dest, { md5: MD5 })).md5, MD5);
    }
  });

  it('downloadCifar fetches once, then reuses the verified file', async () => {
    const d = fresh();
    const url = `${base}/cifar-10-binary.tar.gz`;
    const before = hits['/cifar-10-binary.tar.gz'] ?? 0;
    const path = await downloadCifar('cifar10', d, { url, md5: MD5 });
    assert.equal(path, join(d, 'cifar-10-binary.tar.gz'));
    assert.equal(await downloadCifar('cifar10', d, { url, md5: MD5 }), path);
    assert.equal(hits['/cifar-10-binary.tar.gz'], before + 1);
    await downloadCifar('cifar10', d, { url, md5: MD5, force: true });
    assert.equal(hits['/cifar-10-binary.tar.gz'], before + 2);
    // a damaged local copy is fetched again
    await writeFile(path, 'damaged');
    await downloadCifar('cifar10', d, { url, md5: MD5 });
    assert.equal(await fileMd5(path), MD5);
  });

  it('refuses a checksum mismatch: nothing written, an older file untouched', async () => {
    const d = fresh();
    const dest = join(d, 'cifar-10-binary.tar.gz');
    await assert.rejects(
      downloadFile(`${base}/corrupt`, dest, { md5: MD5 }),
      new RegExp(`/corrupt: MD5 checksum mismatch: got [0-9a-f]{32}, expected ${MD5} \\(the download is corrupt or the server sent another file\\); .* was not written`),
    );
    assert.deepEqual(await readdir(d), []);
    await writeFile(dest, 'older');
    await assert.rejects(downloadCifar('cifar10', d, { url: `${base}/corrupt`, md5: MD5 }), /MD5 checksum mismatch/);
    assert.equal(await readFile(dest, 'utf8'), 'older');
    assert.deepEqual(await readdir(d), ['cifar-10-binary.tar.gz']);
  });

  it('refuses an HTTP error, a connection cut midway, and a refused connection', async () => {
    const d = fresh();
    const dest = join(d, 'x.tar.gz');
    await assert.rejects(downloadFile(`${base}/nope`, dest), /\/nope: download failed: HTTP 404 Not Found/);
    await assert.rejects(downloadFile(`${base}/cut`, dest, { md5: MD5 }), /\/cut: download (interrupted after \d+ bytes|truncated: received \d+ of \d+ bytes)/);
    assert.deepEqual(await readdir(d).catch(() => []), [], 'nothing left behind');
    // a port nobody listens on: bind one, note it, close it
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    await assert.rejects(downloadFile(`http://127.0.0.1:${port}/x`, dest), /download failed \(.*ECONNREFUSED/);
  });

  it('the official archives are pinned to the MD5 sums published on the CIFAR page', () => {
    assert.equal(CIFAR10_ARCHIVE.url, 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz');
    assert.equal(CIFAR10_ARCHIVE.md5, 'c32a1d4ab5d03f1284b67883e8d87530');
    assert.equal(CIFAR100_ARCHIVE.url, 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz');
    assert.equal(CIFAR100_ARCHIVE.md5, '03b5dce01913d631647c71ecec9e9cb8');
  });
});
