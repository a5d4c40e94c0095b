// Datasets, batches and augmentation.
export {
  type Dataset, type Normalization, type SplitOptions, datasetSize, imageSize, checkDataset, classCounts, subset,
  splitValidation, computeNormalization,
} from './dataset.ts';
export {
  type CifarVariant, type CifarLayout, type CifarOptions, type CifarSplits, type CifarRecords, type CifarSource, CIFAR10,
  CIFAR100, CIFAR10_CLASSES, CIFAR10_NORMALIZATION, CIFAR100_NORMALIZATION, CIFAR_SHAPE, IMAGE_BYTES, cifarLayout,
  loadCifar, loadCifar10, loadCifar100, parseCifarRecords, encodeCifarRecords, parseClassNames, resolveCifarSource, readXz, hasXz,
} from './cifar.ts';
export { type SyntheticOptions, SYNTHETIC_CLASSES, syntheticDataset } from './synthetic.ts';
export {
  type ArchiveInfo, type DownloadOptions, type Downloaded, type CifarDownloadOptions, CIFAR10_ARCHIVE, CIFAR100_ARCHIVE,
  downloadFile, downloadCifar, fileMd5,
} from './download.ts';
export { type LoaderOptions, type LoaderState, type Batch, BatchLoader, epochOrder, batchRng, mixSeed } from './loader.ts';
export {
  type AugmentOptions, type ImageShape, AUGMENT_PARAMS_PER_IMAGE, Augmenter, sampleAugmentParams, normalizationTable,
  augmentReference, packBytes,
} from './augment.ts';
export { type TarEntry, readTar, readTarGz, writeTar } from './tar.ts';
export {
  type ResizeMode, type DecodedImage, type ImageFolderOptions, type ImageFolderSplits, type ImageFolderReport, IMAGE_EXTENSIONS, RESIZE_MODES,
  isImageFile, decodeImage, decodeFiles, scanTree, loadImageFolder, collectImageFiles,
} from './imageFolder.ts';
export { CACHE_FOLDER, CACHE_VERSION, readImageCache, writeImageCache, defaultCacheDir } from './imageCache.ts';
