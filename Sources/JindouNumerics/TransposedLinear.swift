// x · W with the weight used untransposed (y = x·W rather than x·Wᵀ): MLA's absorbed
// decode multiplies each head's query by its slice of kv_b_proj this way
// (q_latent = q_nope · W_UK, W_UK being [nope, kv_lora_rank]), and the expanded form of a
// llama.cpp file expands keys by its stored W_UKᵀ (k_nope = c · W_UKᵀ), so no transposed copy
// of a weight is ever made.
//
// Bytes read per call: rows × columns × sizeof(weight element) once, plus the inputs;
// each widened row is reused for every token, so a decode batch of T tokens reads the
// weight once. Roofline: memory bandwidth / (rows × columns × element size) calls per s.

/// For each token t: y[t·outputStride + c] = Σᵢ x[t·inputStride + i] · W[i, c].
/// `x` holds `weight.rows` features per token, `y` receives `weight.columns`.
public func linearTransposed(
    _ x: UnsafePointer<Float>, tokens: Int, inputStride: Int, weight: WeightMatrix,
    into y: UnsafeMutablePointer<Float>, outputStride: Int
) {
    kernels.linearTransposed(x, tokens: tokens, inputStride: inputStride, weight: weight, into: y, outputStride: outputStride)
}
