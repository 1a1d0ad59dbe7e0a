/** anomalens: visual anomaly detection for Node.js. */
export { AnomalensError } from './errors.js';
export { setNumThreads, numThreads, backends } from './runtime.js';
export { readSafetensors, writeSafetensors, SafetensorsWriter } from './safetensors.js';
export type { NamedTensor, SafetensorsContent } from './safetensors.js';
export { Backbone, ARCHS, TORCHVISION_ARCHS, ONNX_V2_ARCHS, tapsOf } from './backbone.js';
export type { Arch, BackboneOptions, LayerProfile, Tensor4 } from './backbone.js';
export {
  decodeImage, decodeImageRaw, listImages, loadBatch, preprocessImages, resizeImage, resizedSize, outputSize,
  centerCropOffset, squareResize, IMAGENET_PREPROCESS, IMAGENET_MEAN, IMAGENET_STD, IMAGE_EXTENSIONS,
} from './images.js';
export type { Preprocess, DecodedImage, RawImage, ImageBatch } from './images.js';
export { writeFeatures } from './features.js';
export type { FeatureSource, FeaturesSummary, WriteFeaturesOptions } from './features.js';
export { createProgress } from './progress.js';
export { imageAuroc, pixelAuroc, aupro, f1Max, averagePrecision, rocCurve, prCurve, proCurve, Evaluator } from './metrics.js';
export type {
  AuproOptions, CurveOptions, Evaluation, EvaluatorBatch, EvaluatorOptions, F1Max, ImageMetrics, LabelOptions, Labels, Maps,
  MaskMap, Masks, PixelMetrics, PrCurve, ProCurve, RocCurve, ScoreMap, Scores,
} from './metrics.js';
export { knnSearch, knnEngineInfo, MemoryBank, KNN_METRICS, KNN_MAX_K, KNN_SCREENING } from './knn.js';
export type { KnnMetric, KnnResult, KnnOutput, KnnScreening, KnnSearchOptions, Matrix, MemoryBankOptions } from './knn.js';
export { FaissIndex } from './knn-faiss.js';
export type { FaissIndexOptions, FaissMetric } from './knn-faiss.js';
export { coresetSubsample, coresetProjectedFeatures, coresetProjectionMatrix, coresetStartIndices } from './knn-coreset.js';
export type { CoresetOptions, CoresetProjectionOptions } from './knn-coreset.js';
export { openMvtec, openFolders, batches, binariseMask, resizeMaskNearest } from './datasets.js';
export type { Sample, Dataset, FolderLayout, BatchOptions, SampleBatch, SampleMask } from './datasets.js';
export { fitThresholds, applyThresholds, parseThresholds, minMaxNormalize, THRESHOLD_METHODS } from './thresholds.js';
export type { Thresholds, ThresholdsLike, ThresholdMethod, ThresholdFallback, ScoreRange, FitThresholdsOptions, ThresholdedPrediction } from './thresholds.js';
export { writeOverlay, renderOverlay, maskContour, writeScoresCsv, csvField, JET_LUT } from './overlay.js';
export type { OverlayOptions, RenderOptions, CsvValue } from './overlay.js';
export { resolveWeights, parseHfSpec, hfUrl, hfCachePath, defaultCacheDir, defaultEndpoint, isHfSpec, DEFAULT_HF_ENDPOINT } from './weights.js';
export type { ResolveWeightsOptions, HfSpec } from './weights.js';
export { Detector, METHODS, sha256File } from './detector.js';
export { rdAnomalyMap, rdTaps } from './methods/reverse-distillation.js';
export type { ReverseDistillationOptions, RdEpochEvent } from './methods/reverse-distillation.js';
export type { DetectorOptions, EvaluationReport, ImageInput, MethodName, Prediction, ProgressEvent } from './detector.js';
export { resizeBilinear, gaussianBlur, gaussianRadius, cosineDistanceMap, l2DistanceMap, MAX_BLUR_RADIUS } from './maps.js';
export type { MapShape3, MapShape4, MapOutputOptions, ResizeBilinearOptions, GaussianBlurOptions, CosineDistanceOptions, L2DistanceOptions } from './maps.js';
export * from './train/index.js';
