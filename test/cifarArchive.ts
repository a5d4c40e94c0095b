// A generated archive in the official cifar-10-binary.tar.gz layout (N random
// records per batch file), for the download and loader tests: never the internet.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { CIFAR10, encodeCifarRecords } from '../data/cifar.ts';
import { writeTar } from '../data/tar.ts';
import { Rng } from '../engine/random.ts';

export function generatedCifar10Archive(seed: number, recordsPerFile: number): { archive: Buffer; md5: string } {
  const rng = new Rng(seed);
  const members = [...CIFAR10.trainFiles, CIFAR10.testFile].map((name) => {
    const labels = Int32Array.from({ length: recordsPerFile }, () => rng.int(10));
    const images = Uint8Array.from({ length: recordsPerFile * 3072 }, () => rng.int(256));
    return { name: `cifar-10-batches-bin/${name}`, data: encodeCifarRecords(images, labels, CIFAR10) };
  });
  const archive = gzipSync(writeTar(members));
  return { archive, md5: createHash('md5').update(archive).digest('hex') };
}
