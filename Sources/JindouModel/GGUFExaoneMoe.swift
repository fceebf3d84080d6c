// llama.cpp's `exaone-moe`: LG's K-EXAONE (transformers' ExaoneMoeForCausalLM) as
// convert_hf_to_gguf.py writes it (conversion/exaone.py `ExaoneMoEModel`, on Exaone4Model)
// and llama.cpp reads it (src/models/exaone-moe.cpp):
//   exaone-moe.{block_count (trunk + nextn_predict_layers), attention.sliding_window
//               (required), attention.sliding_window_pattern (per-layer bools; else a
//               period, default 4), the routed keys of GGUFRoutedFeedForward.swift
//               (expert_gating_func required), expert_shared_feed_forward_length}
//   blk.N.{attn_norm, attn_q/k/v, attn_output, attn_q_norm / attn_k_norm, ffn_norm, the
//          routed tensors; exp_probs_b.bias is `mlp.e_score_correction_bias`}
// Sliding layers rotate (NEOX) and global layers are NoPE, as Exaone4Attention does. The
// llama3 `rope_freqs` factors and a separate sliding-layer rope base are not read: refused.

extension GGUFTensorNames {
    /// K-EXAONE keeps the selection bias on the MoE block, not on its router.
    static let exaoneMoeLayerSuffixes: [String: String] = [
        "mlp.e_score_correction_bias": "exp_probs_b.bias",
    ]
}

extension GGUFModelMetadata {
    func exaoneMoe() throws -> ModelDescription {
        let (layerCount, prediction) = try decoderLayers()
        if file.tensor("rope_freqs.weight") != nil || file.tensor("blk.0.rope_freqs.weight") != nil {
            throw GGUFError(path: file.path, reason: "tensor 'rope_freqs.weight' is present: llama3 rotary factors are not supported for exaone-moe")
        }
        if let base = value(arch("rope.freq_base_swa")), base.double != (try number(arch("rope.freq_base"), default: 10_000)) {
            throw error(arch("rope.freq_base_swa"), "differs from rope.freq_base; one rotary base is supported")
        }
        var description = try groupedQueryMoE(architecture: .exaoneMoe, family: "K-EXAONE", defaultGating: nil,
                                                  defaultSharedExperts: 0, layerCount: layerCount)
        let window = try positive(arch("attention.sliding_window"))
        let slides = try slidingLayers(layerCount, defaultPeriod: 4)
        description.attention.layerWindows = slides.map { $0 ? window : nil }
        description.attention.layerRotary = slides
        description.moeNames.correctionBias = "e_score_correction_bias"
        description.ignoredPredictionLayers = prediction
        return try validated(description)
    }
}
