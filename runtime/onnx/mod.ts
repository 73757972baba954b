// ONNX I/O for Cleave: model decode/encode, tensor conversion, the node-id rule, sub-model extraction
// and the one tensor comparison. Other modules import from here; the conformance runner is separate.
export {
  onnx, decodeModel, encodeModel, loadModelFile, tensorProtoToArray, arrayToTensorProto, nodeIds,
  int64ToNumber, int64ToBigInt, dtypeFromElemType, elemTypeFromDType, arrayCtorFor, allTensors,
} from './proto.js';
export {
  extractStages, stageInterfaces, stagesFromCuts, writeStages, probeTypes, nodeReads, outerScopeRefs,
  isConstantNode, stageFileName,
} from './extract.js';
export { compareTensors, assertTensorEqual, DEFAULT_TOLERANCE, halfToFloat, bfloatToFloat } from './tensor-compare.js';

export type { DecodedTensor, TypedArray, Int64, LongLike } from './proto.js';
export type {
  StageManifestEntry, SplitManifest, StageInterface, ExtractedStage, ExtractResult, ExtractOptions,
} from './extract.js';
export type { ComparableTensor, Tolerance, CompareResult } from './tensor-compare.js';
