/** The training engine: backward ops, losses, parameters and optimisers. */
export * from './ops.js';
export * from './losses.js';
export { TrainParams } from './params.js';
export type { SgdOptions, AdamOptions, ParamInfo } from './params.js';
export { TrainResnet, TRAINABLE_ARCHS, RESNET_TAPS, V2_PREFIXES } from './resnet.js';
export type { TrainableArch, ResnetTap, ResnetForwardOptions } from './resnet.js';
export { compactnessStep, PANDA_SGD } from './step.js';
export type { CompactnessStepOptions, CompactnessStepResult } from './step.js';
export { pandaFineTune, pandaFrozenPrefixes, pandaCacheTap, pooledFeatures } from './panda.js';
export type { PandaOptions, PandaResult } from './panda.js';
export { saveCheckpoint, loadCheckpoint } from './checkpoint.js';
export type { CheckpointNet, OptimiserKind, SaveCheckpointOptions, ApplyCheckpointOptions } from './checkpoint.js';
export { computeFisher, writeFisher, readFisher } from './fisher.js';
export type { FisherOptions, FisherResult, FisherFile, ReadFisherOptions } from './fisher.js';
export { fitLinearHead } from './linear-head.js';
export type { LinearHead, LinearHeadOptions, FittedLinearHead } from './linear-head.js';
export { TrainRd, RD_TEACHERS, RD_ADAM, cosinePixelLoss } from './rd.js';
export type { RdTeacher, RdForwardOptions, RdStepResult, RdStepSeconds } from './rd.js';
