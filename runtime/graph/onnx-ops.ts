// Data: the operator names of the default ONNX domain ('' / 'ai.onnx', opsets 1–22, incl. functions
// and deprecated ops) and how the cost model prices each. A name missing here is MODEL_UNKNOWN_OP.

/** How a default-domain op is priced; ops not listed in OP_COST use `perElement` on their output. */
export type OpCostKind =
  | 'movement'      // reshapes, copies, indexing, shape queries: ~0 FLOPs
  | 'perElement'    // one FLOP per output element
  | 'transcendental' // exp/log/trig-based: TRANSCENDENTAL_FLOPS per output element
  | 'reduction'     // one FLOP per input element
  | 'special';      // priced by its own formula in flops.ts

export const STANDARD_ONNX_OPS: ReadonlySet<string> = new Set([
  'Abs', 'Acos', 'Acosh', 'Add', 'AffineGrid', 'And', 'ArgMax', 'ArgMin', 'Asin', 'Asinh', 'Atan', 'Atanh',
  'Attention', 'AveragePool', 'BatchNormalization', 'Bernoulli', 'BitShift', 'BitwiseAnd', 'BitwiseNot',
  'BitwiseOr', 'BitwiseXor', 'BlackmanWindow', 'Cast', 'CastLike', 'Ceil', 'Celu', 'CenterCropPad', 'Clip',
  'Col2Im', 'Compress', 'Concat', 'ConcatFromSequence', 'Constant', 'ConstantOfShape', 'Conv', 'ConvInteger',
  'ConvTranspose', 'Cos', 'Cosh', 'CumSum', 'DFT', 'DeformConv', 'DepthToSpace', 'DequantizeLinear', 'Det',
  'Div', 'Dropout', 'DynamicQuantizeLinear', 'Einsum', 'Elu', 'Equal', 'Erf', 'Exp', 'Expand', 'EyeLike',
  'Flatten', 'Floor', 'GRU', 'Gather', 'GatherElements', 'GatherND', 'Gelu', 'Gemm', 'GlobalAveragePool',
  'GlobalLpPool', 'GlobalMaxPool', 'Greater', 'GreaterOrEqual', 'GridSample', 'GroupNormalization',
  'HammingWindow', 'HannWindow', 'HardSigmoid', 'HardSwish', 'Hardmax', 'Identity', 'If', 'ImageDecoder',
  'InstanceNormalization', 'IsInf', 'IsNaN', 'LRN', 'LSTM', 'LayerNormalization', 'LeakyRelu', 'Less',
  'LessOrEqual', 'Log', 'LogSoftmax', 'Loop', 'LpNormalization', 'LpPool', 'MatMul', 'MatMulInteger', 'Max',
  'MaxPool', 'MaxRoiPool', 'MaxUnpool', 'Mean', 'MeanVarianceNormalization', 'MelWeightMatrix', 'Min', 'Mish',
  'Mod', 'Momentum', 'Mul', 'Multinomial', 'Neg', 'NegativeLogLikelihoodLoss', 'NonMaxSuppression', 'NonZero',
  'Not', 'OneHot', 'Optional', 'OptionalGetElement', 'OptionalHasElement', 'Or', 'PRelu', 'Pad', 'Pow',
  'QLinearConv', 'QLinearMatMul', 'QuantizeLinear', 'RMSNormalization', 'RNN', 'RandomNormal',
  'RandomNormalLike', 'RandomUniform', 'RandomUniformLike', 'Range', 'Reciprocal', 'ReduceL1', 'ReduceL2',
  'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSum',
  'ReduceSumSquare', 'RegexFullMatch', 'Relu', 'Reshape', 'Resize', 'ReverseSequence', 'RoiAlign',
  'RotaryEmbedding', 'Round', 'STFT', 'Scan', 'Scatter', 'ScatterElements', 'ScatterND', 'Selu',
  'SequenceAt', 'SequenceConstruct', 'SequenceEmpty', 'SequenceErase', 'SequenceInsert', 'SequenceLength',
  'SequenceMap', 'Shape', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh', 'Size', 'Slice', 'Softmax',
  'SoftmaxCrossEntropyLoss', 'Softplus', 'Softsign', 'SpaceToDepth', 'Split', 'SplitToSequence', 'Sqrt',
  'Squeeze', 'StringConcat', 'StringNormalizer', 'StringSplit', 'Sub', 'Sum', 'Swish', 'Tan', 'Tanh',
  'TensorScatter', 'TfIdfVectorizer', 'ThresholdedRelu', 'Tile', 'TopK', 'Transpose', 'Trilu', 'Unique',
  'Unsqueeze', 'Upsample', 'Where', 'Xor',
  // deprecated / removed but still found in old models
  'ATen', 'Affine', 'Crop', 'DynamicSlice', 'GRUUnit', 'GivenTensorFill', 'ImageScaler', 'ParametricSoftplus',
  'Scale', 'ScaledTanh', 'Adagrad', 'Adam', 'Gradient', 'GraphCall',
]);

/** ONNX domains that mean the default operator set. */
export const DEFAULT_DOMAINS: ReadonlySet<string> = new Set(['', 'ai.onnx']);

/** FLOPs charged per element for exp/log/trig-style activations (a polynomial's worth of work). */
export const TRANSCENDENTAL_FLOPS = 4;

const MOVEMENT = [
  'Cast', 'CastLike', 'Compress', 'Concat', 'ConcatFromSequence', 'Constant', 'ConstantOfShape', 'DepthToSpace',
  'Dropout', 'Expand', 'EyeLike', 'Flatten', 'Gather', 'GatherElements', 'GatherND', 'Identity', 'NonZero',
  'OneHot', 'Optional', 'OptionalGetElement', 'OptionalHasElement', 'Pad', 'Range', 'Reshape',
  'ReverseSequence', 'Scatter', 'ScatterElements', 'ScatterND', 'SequenceAt', 'SequenceConstruct',
  'SequenceEmpty', 'SequenceErase', 'SequenceInsert', 'SequenceLength', 'Shape', 'Size', 'Slice',
  'SpaceToDepth', 'Split', 'SplitToSequence', 'Squeeze', 'Tile', 'Transpose', 'Trilu', 'Unsqueeze',
  'CenterCropPad', 'Crop', 'DynamicSlice', 'TensorScatter', 'RandomNormal', 'RandomNormalLike',
  'RandomUniform', 'RandomUniformLike',
] as const;
const TRANSCENDENTAL = [
  'Acos', 'Acosh', 'Asin', 'Asinh', 'Atan', 'Atanh', 'Cos', 'Cosh', 'Elu', 'Erf', 'Exp', 'Gelu', 'Log', 'Mish',
  'Pow', 'Selu', 'Sigmoid', 'Sin', 'Sinh', 'Softplus', 'Softsign', 'Sqrt', 'Swish', 'Tan', 'Tanh', 'Celu',
  'ParametricSoftplus', 'ScaledTanh', 'Reciprocal',
] as const;
const REDUCTION = [
  'ArgMax', 'ArgMin', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean',
  'ReduceMin', 'ReduceProd', 'ReduceSum', 'ReduceSumSquare', 'GlobalAveragePool', 'GlobalMaxPool',
  'GlobalLpPool', 'CumSum', 'TopK', 'Hardmax',
] as const;
const SPECIAL = [
  'Conv', 'ConvInteger', 'QLinearConv', 'DeformConv', 'ConvTranspose', 'Gemm', 'MatMul', 'MatMulInteger',
  'QLinearMatMul', 'Einsum', 'AveragePool', 'MaxPool', 'LpPool', 'MaxRoiPool', 'BatchNormalization',
  'InstanceNormalization', 'LayerNormalization', 'GroupNormalization', 'RMSNormalization', 'LRN',
  'MeanVarianceNormalization', 'LpNormalization', 'Softmax', 'LogSoftmax', 'Attention', 'RotaryEmbedding',
  'Resize', 'Upsample', 'LSTM', 'GRU', 'RNN', 'If', 'Loop', 'Scan', 'HardSigmoid', 'HardSwish',
] as const;

export const OP_COST: ReadonlyMap<string, OpCostKind> = new Map<string, OpCostKind>([
  ...MOVEMENT.map((o) => [o, 'movement'] as const),
  ...TRANSCENDENTAL.map((o) => [o, 'transcendental'] as const),
  ...REDUCTION.map((o) => [o, 'reduction'] as const),
  ...SPECIAL.map((o) => [o, 'special'] as const),
]);
