// llama.cpp's `afmoe`: Arcee's Trinity (transformers' AfmoeForCausalLM) as convert_hf_to_gguf.py
// writes it (conversion/afmoe.py `AfmoeModel`: LlamaModel's keys, but tensors copied
// unpermuted) and llama.cpp reads it (src/models/afmoe.cpp):
//   afmoe.{attention.sliding_window (absent or 0: no sliding layers), attention.
//          sliding_window_pattern (else a period of 4), the routed keys of
//          GGUFRoutedFeedForward.swift (expert_gating_func defaults to sigmoid)}
//   blk.N.{attn_norm, attn_q/k/v, attn_q_norm / attn_k_norm, attn_gate (σ-gate on the
//          attention output), attn_output, post_attention_norm, ffn_norm, post_ffw_norm,
//          the routed tensors (exp_probs_b.bias is `mlp.expert_bias`, ffn_gate_inp
//          `mlp.router.gate`)}
// What llama.cpp fixes rather than reads: embeddings × √embedding_length (μP, always),
// rotary (NEOX) on every layer but each fourth (l + 1 ≡ 0 mod 4 is NoPE), whatever the
// sliding pattern says; Jindou computes the same.

extension GGUFTensorNames {
    /// Trinity's sandwich norms, output gate and router under llama.cpp's names.
    static let afmoeLayerSuffixes: [String: String] = [
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_mlp_layernorm.weight": "ffn_norm.weight",
        "post_mlp_layernorm.weight": "post_ffw_norm.weight",
        "self_attn.gate_proj.weight": "attn_gate.weight",
        "mlp.router.gate.weight": "ffn_gate_inp.weight",
        "mlp.expert_bias": "exp_probs_b.bias",
    ]
}

extension GGUFModelMetadata {
    func afmoe() throws -> ModelDescription {
        let layerCount = try positive(arch("block_count"))
        var description = try groupedQueryMoE(architecture: .afmoe, family: "Trinity", defaultGating: 2, layerCount: layerCount)
        for suffix in ["attn_gate.weight", "post_attention_norm.weight", "post_ffw_norm.weight"] where file.tensor("blk.0.\(suffix)") == nil {
            throw GGUFError(path: file.path, reason: "missing tensor 'blk.0.\(suffix)' (Trinity's attention gate and sandwich norms)")
        }
        let window = try integer(arch("attention.sliding_window"), default: 0)
        let slides = window > 0 ? try slidingLayers(layerCount, defaultPeriod: 4) : Array(repeating: false, count: layerCount)
        description.attention.layerWindows = slides.map { $0 ? window : nil }
        // llama.cpp's n_no_rope_layer_step (4): not read from the file.
        description.attention.layerRotary = (0..<layerCount).map { ($0 + 1) % 4 != 0 }
        description.attention.outputGate = true
        description.moeNames.router = "router.gate.weight"
        description.moeNames.correctionBias = "expert_bias"
        description.layerNorms.preFeedForward = "pre_mlp_layernorm"
        description.layerNorms.attentionOutput = "post_attention_layernorm"
        description.layerNorms.feedForwardOutput = "post_mlp_layernorm"
        description.embeddingScale = Float(Double(description.hiddenSize).squareRoot())
        return try validated(description)
    }
}
