// `download`: fetches the official CIFAR-10 or CIFAR-100 binary archive with
// data/download.ts (streamed to a temporary file, MD5-checked, renamed into
// place only when complete; a file already there with the right checksum is
// kept) and prints the path to give `train --data`.
import { parseArgs } from 'node:util';
import { CIFAR10_ARCHIVE, CIFAR100_ARCHIVE, downloadCifar } from '../data/download.ts';

/** Inside .cache/, which .gitignore covers: a 170 MB archive never lands among the sources. */
export const DEFAULT_DOWNLOAD_DIR = '.cache/datasets';

export const DOWNLOAD_HELP = `usage: npm start -- download [flags]

Downloads the official binary archive of CIFAR-10 or CIFAR-100 into --dir, checks its MD5 and moves it
into place only when complete (an interrupted or corrupt download leaves nothing behind). An archive
already there with the right MD5 is kept. Prints the path to pass to 'train --data'.

flags:
  --dataset cifar10|cifar100    which dataset [cifar10]
  --dir DIR                     folder to download into [${DEFAULT_DOWNLOAD_DIR}]
  --url URL                     another source (a mirror) [${CIFAR10_ARCHIVE.url}, or CIFAR-100's]
  --md5 HASH                    expected MD5 (32 hex digits) [the official archive's]
  --force                       download again even if a verified archive is there
  --quiet                       no progress lines on stderr
  --help                        this text

exit status: 0 archive in place and verified; 1 error (download failed, checksum mismatch, bad flag).`;

const DOWNLOAD_FLAGS = {
  dataset: { type: 'string' },
  dir: { type: 'string' },
  url: { type: 'string' },
  md5: { type: 'string' },
  force: { type: 'boolean' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

export interface DownloadArgs {
  dataset: 'cifar10' | 'cifar100';
  dir: string;
  url?: string | undefined;
  md5?: string | undefined;
  force: boolean;
  quiet: boolean;
}

/** Parses download's flags; null for --help. */
export function parseDownloadArgs(argv: string[]): DownloadArgs | null {
  const { values, positionals } = parseArgs({ args: argv, options: DOWNLOAD_FLAGS, allowPositionals: true, strict: true });
  if (values.help) return null;
  if (positionals.length) throw new Error(`unexpected argument '${positionals[0]}' (flags start with --)`);
  const dataset = values.dataset ?? 'cifar10';
  if (dataset === 'synthetic') throw new Error("--dataset: 'synthetic' is built in; there is nothing to download");
  if (dataset !== 'cifar10' && dataset !== 'cifar100') throw new Error(`--dataset: expected cifar10 or cifar100, got '${dataset}'`);
  if (values.md5 !== undefined && !/^[0-9a-f]{32}$/i.test(values.md5)) throw new Error(`--md5: expected 32 hexadecimal digits, got '${values.md5}'`);
  if (values.url !== undefined) {
    let protocol = '';
    try {
      protocol = new URL(values.url).protocol;
    } catch {
      // reported below
    }
    if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`--url: expected an http:// or https:// URL, got '${values.url}'`);
  }
  if (values.dir !== undefined && values.dir.trim() === '') throw new Error('--dir: expected a folder, got an empty string');
  return { dataset, dir: values.dir ?? DEFAULT_DOWNLOAD_DIR, url: values.url, md5: values.md5, force: Boolean(values.force), quiet: Boolean(values.quiet) };
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

export async function downloadCommand(argv: string[]): Promise<number> {
  const a = parseDownloadArgs(argv);
  if (!a) {
    process.stdout.write(`${DOWNLOAD_HELP}\n`);
    return 0;
  }
  const info = a.dataset === 'cifar10' ? CIFAR10_ARCHIVE : CIFAR100_ARCHIVE;
  const url = a.url ?? info.url;
  const log = (s: string): void => void (a.quiet || process.stderr.write(`${s}\n`));
  let fetched = false;
  let lastTenth = -1;
  let lastMb = -1;
  const path = await downloadCifar(a.dataset, a.dir, {
    url,
    ...(a.md5 ? { md5: a.md5 } : {}),
    force: a.force,
    onProgress: (received, total) => {
      if (!fetched) log(`downloading ${url} into ${a.dir}${total !== null ? ` (${mb(total)})` : ''}`);
      fetched = true;
      // a line per tenth (or per 20 MB when the size is unknown): readable in logs, unlike a redrawn bar
      if (total) {
        const tenth = Math.floor((10 * received) / total);
        if (tenth > lastTenth) log(`  ${10 * tenth}%  ${mb(received)}`);
        lastTenth = tenth;
      } else if (Math.floor(received / 20e6) > lastMb) {
        lastMb = Math.floor(received / 20e6);
        log(`  ${mb(received)}`);
      }
    },
  });
  process.stdout.write(
    `${fetched ? 'downloaded' : 'already present'} ${path} (MD5 verified)\n` +
      `train with: npm start -- train --dataset ${a.dataset} --data ${path}\n`,
  );
  return 0;
}
