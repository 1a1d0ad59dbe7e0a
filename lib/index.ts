/**
 * anomalens: visual anomaly detection for Node.js. The public API, by family; nothing else
 * is part of it. What tests reach beyond it (test hooks, internals) is lib/internal.ts.
 */
// core
export { AnomalensError } from './core/errors.js';
export { setNumThreads, numThreads, backends } from './core/runtime.js';
export { createProgress } from './core/progress.js';
// io
export { readSafetensors, writeSafetensors, SafetensorsWriter } from './io/safetensors.js';
export type { NamedTensor, SafetensorsContent } from './io/safetensors.js';
export { resolveWeights, defaultWeights, weightsFor, DEFAULT_WEIGHTS } from './io/weights.js';
export type { ResolveWeightsOptions } from './io/weights.js';
export { writeFeatures } from './io/features.js';
export type { FeatureSource, FeaturesSummary, WriteFeaturesOptions } from './io/features.js';
// image
export {
  decodeImage, decodeImageRaw, listImages, loadBatch, preprocessImages, resizeImage, squareResize,
  IMAGENET_PREPROCESS, IMAGENET_MEAN, IMAGENET_STD, IMAGE_EXTENSIONS,
} from './image/images.js';
export type { Preprocess, DecodedImage, RawImage, ImageBatch } from './image/images.js';
// data
export { openMvtec, openFolders, batches } from './data/datasets.js';
export type { Sample, Dataset, FolderLayout, BatchOptions, SampleBatch, SampleMask } from './data/datasets.js';
// nn
export { Backbone, ARCHS, TORCHVISION_ARCHS, ONNX_V2_ARCHS, tapsOf } from './nn/backbone.js';
export type { Arch, BackboneOptions, LayerProfile, Tensor4 } from './nn/backbone.js';
// knn
export { knnSearch, knnEngineInfo, KNN_METRICS, KNN_SCREENING } from './knn/exact.js';
export type { KnnMetric, KnnScreening, KnnSearchOptions } from './knn/exact.js';
export { KNN_MAX_K } from './knn/rows.js';
export type { KnnResult, KnnOutput, Matrix } from './knn/rows.js';
export { MemoryBank } from './knn/bank.js';
export type { MemoryBankOptions } from './knn/bank.js';
export { FaissIndex } from './knn/faiss.js';
export type { FaissIndexOptions, FaissMetric } from './knn/faiss.js';
// sampling
export { coresetSubsample } from './sampling/coreset.js';
export type { CoresetOptions, CoresetProjectionOptions } from './sampling/coreset.js';
// maps
export { resizeBilinear, gaussianBlur, cosineDistanceMap, l2DistanceMap, MAX_BLUR_RADIUS } from './maps/maps.js';
export type { MapShape3, MapShape4, MapOutputOptions, ResizeBilinearOptions, GaussianBlurOptions, CosineDistanceOptions, L2DistanceOptions } from './maps/maps.js';
// metrics
export { imageAuroc, pixelAuroc, aupro, f1Max, averagePrecision, rocCurve, prCurve, proCurve, Evaluator } from './metrics/metrics.js';
export type {
  AuproOptions, CurveOptions, Evaluation, EvaluatorBatch, EvaluatorOptions, F1Max, ImageMetrics, LabelOptions, Labels, Maps,
  MaskMap, Masks, PixelMetrics, PrCurve, ProCurve, RocCurve, ScoreMap, Scores,
} from './metrics/metrics.js';
// detector
export { Detector, METHODS, DEFAULT_ARCH, IMAGE_LEVEL_METHODS } from './detector/detector.js';
export type { DetectorOptions, EvaluateOptions, EvaluationReport, ImageInput, MethodName, Prediction, ProgressEvent } from './detector/detector.js';
export { fitThresholds, applyThresholds, THRESHOLD_METHODS } from './detector/thresholds.js';
export type { Thresholds, ThresholdsLike, ThresholdMethod, ThresholdFallback, ScoreRange, FitThresholdsOptions, ThresholdedPrediction } from './detector/thresholds.js';
// methods: Reverse Distillation's anomaly map and teacher taps
export { rdAnomalyMap, rdTaps } from './methods/reverse-distillation.js';
export { sesSelect } from './methods/panda.js';
export type { PandaMethodOptions, PandaEpochEvent } from './methods/panda.js';
export type { ReverseDistillationOptions, RdEpochEvent } from './methods/reverse-distillation.js';
// report
export { writeOverlay, renderOverlay, detectorOverlayRange } from './report/overlay.js';
export type { OverlayOptions, RenderOptions } from './report/overlay.js';
export { writeScoresCsv } from './report/csv.js';
export type { CsvValue } from './report/csv.js';
export { evaluateWithReport, writeReport, reportJson } from './report/write.js';
export type { ReportInput, ReportOptions } from './report/write.js';
export type { ReportRecord } from './report/gallery.js';
// The service and the queue load from 'anomalens/serve' (fastify and BullMQ are heavy); their types are here too.
export type { ServeOptions, PredictResult, MapFormat, WorkerOptions, PredictWorker, EnqueueOptions } from './serve/index.js';
// train: backward ops, losses, parameters and optimisers, trainable ResNets, PANDA's step,
// Reverse Distillation's student
export * from './train/index.js';
