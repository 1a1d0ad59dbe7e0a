/**
 * The native addon's JS-visible contract: every function and class bindings/ exports, with
 * the argument order and result shapes of bindings/*.cpp. Only lib/ wrappers call these; they
 * validate first (types, ranges, sizes), so the addon re-checks only what protects memory.
 *
 * Conventions of the addon (see bindings/):
 * - Sizes are plain numbers (rows n, queries m, dimension d, neighbours k); matrices are
 *   row-major typed arrays read in place (pinned until the work ends, never copied).
 * - Functions named here as returning a Promise run on a worker thread; the others are O(1).
 * - Caller-allocated outputs (`distances`, `indices`, `out`, `dst`) are filled in place;
 *   other results are Float32Arrays over native storage.
 * - Failures reject (or throw) with a TypeError / RangeError, or an Error whose `code` is one
 *   of AnomalensError's codes; callNative / callNativeSync turn those into AnomalensError.
 */

/** A float tensor as the addon returns it. */
export interface NativeTensor {
  data: Float32Array;
  shape: number[];
}

export type NativeKnnMetric = 'l2sq' | 'l2' | 'ip' | 'cosine';
export type NativeKnnScreening = 'auto' | 'off' | 'bf16';

// ---- runtime (bindings/addon.cpp) -----------------------------------------------------------

export interface NativeBackendInfo {
  name: string;
  available: boolean;
}

// ---- io (bindings/safetensors.cpp) ----------------------------------------------------------

export interface NativeSafetensors {
  /** Float dtypes (F32/F16/BF16/F64) come as float32; others have `data: null`. */
  tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array | null }>;
  metadata: Record<string, string>;
}

// ---- nn (bindings/backbone.cpp) -------------------------------------------------------------

export interface NativeLayerProfile {
  name: string;
  impl: string;
  ms: number;
  gflop: number;
}

/** A loaded backbone (created only by loadBackbone). */
export interface NativeBackbone {
  readonly arch: string;
  taps(): string[];
  availableTaps(): string[];
  /** Output shape of `tap` for an input of `shape` ([n, 3, h, w]). */
  tapShape(tap: string, shape: number[]): number[];
  /** Forward pass of `data` ([n, 3, h, w]) up to the deepest of `taps`. */
  extract(
    data: Float32Array,
    shape: number[],
    taps: string[],
    profile: boolean,
  ): Promise<{ outputs: Record<string, NativeTensor>; profile?: NativeLayerProfile[] }>;
  /** Throws ERR_BUSY while an extract() is in flight. */
  dispose(): void;
}

// ---- knn (bindings/knn.cpp, knn_faiss.cpp) --------------------------------------------------

/**
 * What MemoryBank and FaissIndex handles share: exclusive writes (add), concurrent reads
 * (search, save), and one busy state in the addon that refuses a write or a dispose while any
 * operation is in flight (ERR_BUSY) and everything after dispose (ERR_DISPOSED).
 */
export interface NativeVectorStore {
  readonly size: number;
  /** 0 (MemoryBank) or null (FaissIndex) once disposed. */
  readonly dim: number | null;
  readonly metric: string | null;
  readonly disposed: boolean;
  /** Appends `n` rows of `dim` values. */
  add(rows: Float32Array, n: number): Promise<void>;
  /** The k nearest of `m` queries into caller-allocated m x k outputs. */
  search(queries: Float32Array, m: number, k: number, distances: Float32Array, indices: Int32Array): Promise<void>;
  /** Atomic write (temporary file, fsync, rename). */
  save(path: string): Promise<void>;
  dispose(): void;
}

export interface NativeMemoryBank extends NativeVectorStore {
  /** 'auto' or 'bf16' when searches are screened, else 'off'. */
  readonly screening: NativeKnnScreening;
}

export interface NativeMemoryBankClass {
  new (dim: number, metric: NativeKnnMetric, screening: NativeKnnScreening): NativeMemoryBank;
  load(path: string, screening: NativeKnnScreening): Promise<NativeMemoryBank>;
}

export interface NativeFaissIndex extends NativeVectorStore {
  readonly isTrained: boolean;
  readonly factory: string | null;
  /** -1 (or null once disposed) when the index has no IVF level. */
  readonly nprobe: number | null;
  /** -1 (or null once disposed) when the index is not HNSW. */
  readonly efSearch: number | null;
  train(x: Float32Array, n: number): Promise<void>;
  setNprobe(value: number): void;
  setEfSearch(value: number): void;
}

export interface NativeFaissIndexClass {
  new (dim: number, factory: string, metric: 'l2sq' | 'ip'): NativeFaissIndex;
  load(path: string): Promise<NativeFaissIndex>;
}

// ---- sampling (bindings/knn_coreset.cpp) ----------------------------------------------------

export interface NativeCoresetOptions {
  count: number;
  seed: number;
  projectionDim: number;
  projection: 'uniform' | 'gaussian';
  precision: 'float16' | 'float32';
  startPoints: number;
}

// ---- metrics (bindings/metrics.cpp) ---------------------------------------------------------

/** Score blocks with their labels; `dims` holds n, h, w per block. */
export interface NativeMetricsSpec {
  scores: (Float32Array | Float64Array)[];
  labels: Uint8Array[];
  dims: number[];
  names: string[];
  labelNames: string[];
  /** -1: strict 0/1/255 labels. */
  maskThreshold: number;
  engine: number;
  countingMin: number;
}

export interface NativeMetricsResult {
  auroc: number | null;
  averagePrecision: number | null;
  f1: number | null;
  f1Threshold: number | null;
  aupro: number | null;
  positives: number;
  negatives: number;
  regions: number;
}

export interface NativeCurve {
  x: Float64Array;
  y: Float64Array;
  thresholds: Float64Array;
}

// ---- train (bindings/train.cpp, train_params.cpp) -------------------------------------------

/** [n, c, h, w, k, kh, kw, strideH, strideW, padH, padW]: input, output channels, kernel, stride, padding. */
export type NativeConvGeometry = [number, number, number, number, number, number, number, number, number, number, number];
/** Which gradients to compute, in the order of the result's fields; all when omitted. */
export type NativeWants = boolean[];

/** Gradients of a (transposed) convolution or linear layer; null where not wanted. */
export interface NativeConvGradients {
  dx: Float32Array | null;
  dw: Float32Array | null;
  db: Float32Array | null;
}

/** Batch-norm forward: saveMean / saveVar (the batch statistics) are null in frozen mode. */
export interface NativeBatchNormForward {
  y: Float32Array;
  saveMean: Float32Array | null;
  saveVar: Float32Array | null;
}

export interface NativeBatchNormGradients {
  dx: Float32Array | null;
  dgamma: Float32Array | null;
  dbeta: Float32Array | null;
}

export interface NativeParamInfo {
  shape: number[];
  frozen: boolean;
  hasGrad: boolean;
  step: number;
  stateKeys: string[];
}

/**
 * Parameters by name with gradients and optimiser state. Accessors copy; the steps run on a
 * worker and resolve a number (clipGradNorm: the total norm, addEwcPenalty: the penalty, the
 * optimisers: 0). While a step (or, for a network's stores, a forward / backward) is in
 * flight, everything but names() and info() throws ERR_BUSY.
 */
export interface NativeTrainParams {
  add(name: string, shape: number[], value: Float32Array): void;
  names(): string[];
  info(name: string): NativeParamInfo;
  value(name: string): Float32Array;
  grad(name: string): Float32Array | null;
  state(name: string, key: string): Float32Array | null;
  setValue(name: string, value: Float32Array): void;
  setGrad(name: string, grad: Float32Array): void;
  setState(name: string, key: string, value: Float32Array): void;
  /** Adam's step count of one parameter. */
  setStep(name: string, step: number): void;
  freeze(prefix: string): number;
  unfreeze(prefix: string): number;
  zeroGrad(): void;
  sgdStep(lr: number, momentum: number, dampening: number, weightDecay: number, nesterov: boolean): Promise<number>;
  adamStep(lr: number, beta1: number, beta2: number, eps: number, weightDecay: number): Promise<number>;
  clipGradNorm(maxNorm: number): Promise<number>;
  addEwcPenalty(lambda: number): Promise<number>;
}

export interface NativeTrainParamsClass {
  /** A standalone store. */
  new (): NativeTrainParams;
  /** A view of a network's parameters or BN buffers (the same tensors, the network's busy state). */
  new (net: NativeTrainResnet | NativeTrainRd, which: 'params' | 'buffers'): NativeTrainParams;
}

/** A trainable ResNet; forward / backward hold it (and its stores) busy until they settle. */
export interface NativeTrainResnet {
  taps(): string[];
  /** [n, c, h, w] of a tap's output ('input': the image) for an h x w image. */
  tapShape(tap: string, n: number, h: number, w: number): number[];
  /** Floats kept for the backward since the last forward. */
  keptFloats(): number;
  /** Seconds per '<stage> <op> forward|backward' since the last resetProfile(); ERR_BUSY while busy. */
  profile(): Record<string, number>;
  resetProfile(): void;
  /** Drops the activations the last forward kept. */
  release(): void;
  /** x [n, c, h, w] from `startTap` ('input' or a tap whose output x is) to the last tap. */
  forward(x: Float32Array, shape: number[], bnTrain: boolean, startTap: string): Promise<Float32Array>;
  /** The gradient of the last forward's output into the parameters' gradients. */
  backward(dOut: Float32Array): Promise<void>;
  /** PANDA's whole step (forward, pooling, compactness, backward, EWC, clipping, SGD) in one call. */
  compactnessStep(
    x: Float32Array, shape: number[], centre: Float32Array, bnTrain: boolean, startTap: string, maxNorm: number | null,
    ewcLambda: number | null, lr: number, momentum: number, dampening: number, weightDecay: number, nesterov: boolean,
  ): Promise<{ loss: number; gradNorm: number | null; features: Float32Array }>;
}

export interface NativeTrainResnetClass {
  /** v2Prefix: the ONNX Model Zoo initializer prefix ('' for torchvision archs). */
  new (arch: string, lastTap: string, v2Prefix: string): NativeTrainResnet;
}

/** One Reverse Distillation step: the loss, per scale (finest first), wall seconds of its parts. */
export interface NativeRdStepResult {
  loss: number;
  scaleLosses: number[];
  seconds: { forward: number; loss: number; backward: number; adam: number };
}

/**
 * Reverse Distillation's student (one-class bottleneck + decoder, bindings/train_rd.cpp); every
 * operation holds it (and the TrainParams views of its stores) busy until it settles. The
 * teacher taps f[i] are [n, tapChannels(i), h[i], w[i]], read in place.
 */
export interface NativeTrainRd {
  /** Channels of teacher tap i (0..2). */
  tapChannels(i: number): number;
  /** Floats kept for the backward since the last recorded forward. */
  keptFloats(): number;
  /** The decoder's three outputs, finest first, shaped as the taps. */
  forward(f: Float32Array[], n: number, h: number[], w: number[], bnTrain: boolean, record: boolean): Promise<Float32Array[]>;
  /** The gradients of the last recorded forward's outputs into the parameters' gradients. */
  backward(g: Float32Array[]): Promise<void>;
  /** Forward (BN in training mode), loss ('map', or the per-pixel cosine), backward, Adam. */
  trainStep(
    f: Float32Array[], n: number, h: number[], w: number[],
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, pixelLoss: boolean,
  ): Promise<NativeRdStepResult>;
}

export interface NativeTrainRdClass {
  /** arch: the teacher (resnet18, resnet34, resnet50, resnet50_v2, wide_resnet50_2). */
  new (arch: string): NativeTrainRd;
}

// ---- the addon --------------------------------------------------------------------------------

export interface NativeAddon {
  // runtime
  setNumThreads(n: number): void;
  numThreads(): number;
  backends(): NativeBackendInfo[];

  // io
  readSafetensors(path: string): Promise<NativeSafetensors>;

  // image: 8-bit pixels, caller-allocated outputs
  /** Pillow-exact bilinear resize of h x w x c bytes (c = 1 or 3) into dst (oh x ow x c). */
  resizeBilinear(src: Uint8Array, height: number, width: number, channels: number, outHeight: number, outWidth: number, dst: Uint8Array): Promise<void>;
  /** `pixels` pixels of 1..4 channels to RGB in dst (pixels x 3). */
  toRgb(src: Uint8Array, pixels: number, channels: number, dst: Uint8Array): Promise<void>;
  /**
   * Resize, crop, /255 and normalise a batch into out ([n, 3, outHeight, outWidth]); geometry
   * holds 7 numbers per image: height, width, channels, resizeHeight, resizeWidth, top, left.
   */
  preprocessBatch(
    images: Uint8Array[],
    geometry: number[],
    outHeight: number,
    outWidth: number,
    mean: readonly number[],
    std: readonly number[],
    out: Float32Array,
  ): Promise<void>;

  // nn
  /** The class of loadBackbone's results; not constructible from JS. */
  NativeBackbone: { readonly prototype: NativeBackbone };
  loadBackbone(arch: string, path: string): Promise<NativeBackbone>;

  // knn
  knnSearch(
    database: Float32Array,
    n: number,
    queries: Float32Array,
    m: number,
    d: number,
    k: number,
    metric: NativeKnnMetric,
    distances: Float32Array,
    indices: Int32Array,
    screening: NativeKnnScreening,
  ): Promise<void>;
  knnEngineInfo(): { scanKernel: 'avx512' | 'avx2' | 'scalar'; bf16Screening: boolean };
  MemoryBank: NativeMemoryBankClass;
  FaissIndex: NativeFaissIndexClass;

  // sampling
  /**
   * The selected rows in selection order; shorter than options.count when `cancel[0]` was
   * set. onProgress(done, total) runs on the main thread at most every 100 ms and once at the end.
   */
  coresetSubsample(
    features: Float32Array,
    n: number,
    d: number,
    options: NativeCoresetOptions,
    onProgress?: (done: number, total: number) => void,
    cancel?: Int32Array,
  ): Promise<Int32Array>;
  coresetProjectedFeatures(features: Float32Array, n: number, d: number, options: NativeCoresetOptions): Promise<Float32Array>;
  coresetProjectionMatrix(d: number, options: NativeCoresetOptions): Float32Array;
  coresetStartRows(n: number, options: NativeCoresetOptions): Int32Array;

  // maps: float32 maps, `out` optional (written in place and resolved; else a new array)
  mapsResizeBilinear(maps: Float32Array, shape: number[], size: number[], out: Float32Array | undefined): Promise<Float32Array>;
  /** The same with align_corners = true. */
  mapsResizeBilinearAlignCorners(maps: Float32Array, shape: number[], size: number[], out: Float32Array | undefined): Promise<Float32Array>;
  mapsGaussianBlur(maps: Float32Array, shape: number[], sigma: number, truncate: number, out: Float32Array | undefined): Promise<Float32Array>;
  mapsCosineDistance(a: Float32Array, b: Float32Array, shape: number[], eps: number, out: Float32Array | undefined): Promise<Float32Array>;
  mapsL2Distance(a: Float32Array, b: Float32Array, shape: number[], squared: boolean, out: Float32Array | undefined): Promise<Float32Array>;

  // metrics
  metrics(spec: NativeMetricsSpec & { flags: number; fprLimit: number }): Promise<NativeMetricsResult>;
  metricsCurve(
    spec: NativeMetricsSpec & { curve: 'roc' | 'pr' | 'pro'; dropIntermediate: boolean; decimate: number },
  ): Promise<NativeCurve>;

  // methods: PatchCore and PaDiM kernels
  /** Locally aware patch features of two layers ([n, c, h, w] each): [n * ha * wa, outDim]. */
  patchcoreEmbed(a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], layerDim: number, outDim: number): Promise<Float32Array>;
  /** The channel subset of the layers concatenated at the first one's grid: [n, channels, h, w]. */
  padimEmbed(layers: Float32Array[], shapes: number[][], channels: Int32Array): Promise<Float32Array>;
  /** Per-position mean [p, d] and inverse regularised covariance [p, d, d] of [n, d, p] embeddings. */
  padimFit(embeddings: Float32Array, shape: number[], reg: number): Promise<[Float32Array, Float32Array]>;
  /** Mahalanobis distances [n, p] of [n, d, p] embeddings. */
  padimScore(embeddings: Float32Array, shape: number[], mean: Float32Array, precision: Float32Array): Promise<Float32Array>;

  // train: forward/backward pairs and losses (new Float32Arrays over native memory), the
  // parameter store, the trainable ResNet, Reverse Distillation's student
  trainConv2dForward(x: Float32Array, weight: Float32Array, bias: Float32Array | null, geometry: NativeConvGeometry): Promise<Float32Array>;
  trainConv2dBackward(x: Float32Array, weight: Float32Array, dy: Float32Array, geometry: NativeConvGeometry, wants: NativeWants): Promise<NativeConvGradients>;
  /** PyTorch's transposed-convolution weight layout [c (in), k (out), kh, kw]. */
  trainConvTranspose2dForward(x: Float32Array, weight: Float32Array, bias: Float32Array | null, geometry: NativeConvGeometry): Promise<Float32Array>;
  trainConvTranspose2dBackward(x: Float32Array, weight: Float32Array, dy: Float32Array, geometry: NativeConvGeometry, wants: NativeWants): Promise<NativeConvGradients>;
  /**
   * Training mode (frozen false): batch statistics, runningMean / runningVar updated in place
   * when given. Frozen: mean and variance given, nothing updated.
   */
  trainBatchNormForward(
    x: Float32Array,
    gamma: Float32Array | null,
    beta: Float32Array | null,
    shape: number[],
    eps: number,
    frozen: boolean,
    mean: Float32Array | null,
    variance: Float32Array | null,
    momentum: number,
    runningMean: Float32Array | null,
    runningVar: Float32Array | null,
  ): Promise<NativeBatchNormForward>;
  trainBatchNormBackward(
    x: Float32Array,
    gamma: Float32Array | null,
    mean: Float32Array,
    variance: Float32Array,
    dy: Float32Array,
    shape: number[],
    eps: number,
    frozen: boolean,
    wants: NativeWants,
  ): Promise<NativeBatchNormGradients>;
  trainReluForward(x: Float32Array): Promise<Float32Array>;
  trainReluBackward(y: Float32Array, dy: Float32Array): Promise<Float32Array>;
  trainAddForward(a: Float32Array, b: Float32Array): Promise<Float32Array>;
  trainConcatForward(xs: Float32Array[], n: number, channels: number[], h: number, w: number): Promise<Float32Array>;
  trainConcatBackward(dy: Float32Array, n: number, channels: number[], h: number, w: number): Promise<Float32Array[]>;
  trainGlobalAvgPoolForward(x: Float32Array, shape: number[]): Promise<Float32Array>;
  trainGlobalAvgPoolBackward(dy: Float32Array, shape: number[]): Promise<Float32Array>;
  /** geometry: [n, c, h, w, k, stride, padding] (torch.nn.MaxPool2d). */
  trainMaxPool2dForward(x: Float32Array, geometry: number[]): Promise<Float32Array>;
  /** Each output's gradient to its window's first maximum. */
  trainMaxPool2dBackward(x: Float32Array, dy: Float32Array, geometry: number[]): Promise<Float32Array>;
  /** shape: [n, d, k]. */
  trainLinearForward(x: Float32Array, weight: Float32Array, bias: Float32Array | null, shape: number[]): Promise<Float32Array>;
  trainLinearBackward(x: Float32Array, weight: Float32Array, dy: Float32Array, shape: number[], wants: NativeWants): Promise<NativeConvGradients>;
  /** shape: [n, d]. */
  trainCompactnessLoss(features: Float32Array, centre: Float32Array, shape: number[]): Promise<{ loss: number; grad: Float32Array }>;
  /** shape: [n, m] (m values per sample). */
  trainCosineMapLoss(a: Float32Array, b: Float32Array, shape: number[], eps: number): Promise<{ loss: number; gradA: Float32Array; gradB: Float32Array }>;
  trainEwcPenalty(theta: Float32Array, thetaStar: Float32Array, fisher: Float32Array, lambda: number): Promise<{ loss: number; grad: Float32Array }>;
  /** shape: [n, c, hw]; the mean over n and hw of 1 - cos over c. */
  trainCosinePixelLoss(a: Float32Array, b: Float32Array, shape: number[], eps: number): Promise<{ loss: number; gradA: Float32Array; gradB: Float32Array }>;
  TrainParams: NativeTrainParamsClass;
  TrainResnet: NativeTrainResnetClass;
  TrainRd: NativeTrainRdClass;
}
