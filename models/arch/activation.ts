// FFN activation functions a decoder can be built with; shared by the ONNX builder, the checkpoint
// layouts and the trainer, so none of them has to import another for the name.

/**
 * FFN activations: exact erf GELU; GPT-2's tanh approximation (Hugging Face `gelu_new`,
 * Hendrycks & Gimpel 2016 eq. 2); ReLU (OPT). SwiGLU blocks use SiLU on the gate (spec `mlp`).
 */
export const ACTIVATIONS = ['gelu', 'gelu_tanh', 'relu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];
