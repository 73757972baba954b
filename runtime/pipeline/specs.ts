// TensorSpec from an ONNX ValueInfo: name, dtype and shape (symbolic dims kept as their names).
import { dtypeFromElemType, int64ToNumber, type onnx } from '../onnx/proto.js';
import type { TensorSpec } from '../../protocols/deployment.js';

export function specOf(v: onnx.IValueInfoProto): TensorSpec {
  const t = v.type?.tensorType;
  return {
    name: v.name ?? '',
    dtype: dtypeFromElemType(t?.elemType ?? 0),
    shape: (t?.shape?.dim ?? []).map((d, i) => (d.dimValue !== undefined && d.dimValue !== null && int64ToNumber(d.dimValue) > 0 ? int64ToNumber(d.dimValue) : d.dimParam || `d${i}`)),
  };
}
