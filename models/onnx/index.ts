// Public surface of the ONNX builder: proto I/O, native weights, the decoder graph and the
// one-call file builder.
export {
  onnx,
  DataType,
  PROTOBUF_LIMIT_BYTES,
  loadOnnxModel,
  saveOnnxModel,
  decodeOnnxModel,
  encodeOnnxModel,
  resolveExternalData,
  getInitializer,
  tensorToFloat32,
  tensorElementCount,
  tensorDataBytes,
  initializerBytes,
  type ModelProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
  type AttributeProto,
  type SaveOptions,
  type SaveResult,
  type LoadOptions,
} from './proto.ts';
export { GraphBuilder, float, type AttrValue, type Dim } from './graph-builder.ts';
export {
  initWeights,
  validateWeights,
  expectedWeightShapes,
  countWeightElements,
  layerPlan,
  type WeightTensor,
  type DecoderWeights,
  type LayerPlan,
} from '../arch/weights.ts';
export {
  buildDecoderModel,
  parameterInitializerNames,
  cacheNames,
  DECODER_OPSET,
  MS_OPSET,
  MASK_VALUE,
  DIMS,
  METADATA_KEYS,
  type BuildOptions,
} from './build-decoder.ts';
export { buildModelFile, loadArchSpec, type BuildModelFileOptions, type BuildModelFileResult } from './build-model-file.ts';
