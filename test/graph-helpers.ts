// Builders for small ONNX models used by the graph-* tests (float32 tensors, opset 13).
import { onnx } from '../runtime/onnx/proto.js';

export type NodeSpec = { op: string; inputs: string[]; outputs: string[]; name?: string; attrs?: onnx.IAttributeProto[]; domain?: string };

export function valueInfo(name: string, shape: (number | string)[], elemType = 1): onnx.ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType, shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  });
}

export function floatInit(name: string, dims: number[], fill = 0.01): onnx.TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  return onnx.TensorProto.create({ name, dims, dataType: 1, floatData: Array(n).fill(fill) });
}

export const ints = (name: string, v: number[]): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
export const int = (name: string, v: number): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: v });
export const graphAttr = (name: string, g: onnx.IGraphProto): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.GRAPH, g });

export function node(s: NodeSpec): onnx.NodeProto {
  return onnx.NodeProto.create({ opType: s.op, input: s.inputs, output: s.outputs, name: s.name ?? '', attribute: s.attrs ?? [], domain: s.domain ?? '' });
}

export function model(spec: {
  nodes: NodeSpec[];
  inputs: onnx.ValueInfoProto[];
  outputs: onnx.ValueInfoProto[];
  inits?: onnx.TensorProto[];
}): onnx.ModelProto {
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: onnx.GraphProto.create({
      name: 'g',
      node: spec.nodes.map(node),
      input: spec.inputs,
      output: spec.outputs,
      initializer: spec.inits ?? [],
    }),
  });
}
