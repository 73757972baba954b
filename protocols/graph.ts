// The partition graph: what GraphAnalyzer emits and Planner consumes (wire shape, JSON-safe).
// Nodes are in a topological order; a stage is a contiguous range of that order.

/** Element types, named as ONNX names them (lower case). */
export type DType =
  | 'float32' | 'float16' | 'float64' | 'bfloat16'
  | 'int8' | 'int16' | 'int32' | 'int64'
  | 'uint8' | 'uint16' | 'uint32' | 'uint64'
  | 'bool' | 'string';

/** A dimension is a number when known, or a symbolic name when dynamic. */
export type Dim = number | string;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: Dim[];
  /** Bytes when every dim is known; otherwise an estimate with symbolic dims taken as 1. */
  bytes: number;
}

export interface GraphNode {
  /** Unique within the graph (ONNX node name, or a generated `op_index` when the model has none). */
  id: string;
  op: string;
  /** Tensor names this node reads (initializers excluded). */
  inputs: string[];
  /** Tensor names this node writes. */
  outputs: string[];
  flops: number;
  paramBytes: number;
  outputBytes: number;
  /** Measured on this host by the profiling pass, when it ran. */
  measuredSeconds?: number;
  outputShapes?: Record<string, Dim[]>;
  /** Element type of each output (same keys as outputShapes). */
  outputDtypes?: Record<string, DType>;
  /** Operator domain when not the default ONNX domain (e.g. 'com.microsoft'). */
  domain?: string;
}

export interface GraphEdge {
  from: string;
  to: string;
  bytes: number;
  /** The tensor that flows; edges carrying the same tensor across a cut are paid once. */
  tensor?: string;
}

/** A place the model can be cut: after `after` nodes of the order, these tensors cross. */
export interface Cut {
  after: number;
  tensors: { name: string; bytes: number }[];
  bytes: number;
}

export interface PartitionGraph {
  format: 'onnx' | 'tfjs' | 'graph';
  model?: string;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** Topologically ordered. */
  nodes: GraphNode[];
  edges: GraphEdge[];
  cuts: Cut[];
  totals?: { flops: number; paramBytes: number; nodes: number };
  /** Present when the profiling pass ran: timed runs, ORT threads, median whole-run seconds. */
  profile?: { runs: number; threads: number; runSeconds: number; /** The profiling host's calibrated speed, to scale measured times to other executors. */ flopsPerSec?: number };
  /** Things the analyzer could not do exactly (e.g. shapes inferred statically because ORT refused the model). */
  warnings?: string[];
}
