import JindouRouting

// llama.cpp's `glm4moe`: GLM-4.5 / 4.6 / 4.5-Air (transformers' Glm4MoeForCausalLM), as
// convert_hf_to_gguf.py writes it (conversion/glm.py `Glm4MoeModel`, base
// `TextModel.set_gguf_parameters`) and llama.cpp reads it (src/models/glm4-moe.cpp
// `load_arch_hparams`/`load_arch_tensors`, src/llama-model.cpp `load_hparams`):
//   glm4moe.{block_count (trunk + nextn_predict_layers), leading_dense_block_count,
//            feed_forward_length (dense layers), expert_feed_forward_length, expert_count,
//            expert_used_count, expert_shared_count, expert_group_count,
//            expert_group_used_count, expert_gating_func (2 = sigmoid),
//            expert_weights_scale (routed_scaling_factor), expert_weights_norm
//            (norm_topk_prob), rope.dimension_count (head_dim × partial_rotary_factor)}
//   blk.N.{attn_norm, attn_q/k/v (+ .bias with attention_bias), attn_output,
//          attn_q_norm/attn_k_norm (use_qk_norm), post_attention_norm,
//          ffn_gate/ffn_up/ffn_down (N < leading_dense_block_count), else ffn_gate_inp,
//          exp_probs_b.bias (e_score_correction_bias), ffn_{gate,up,down}_exps,
//          ffn_{gate,up,down}_shexp}
// The converter copies the matrices unpermuted (GLM4-MoE's partial rotary is NEOX-style,
// rotate half of the first rope.dimension_count features, as in transformers), so they
// are read as stored. The trailing nextn_predict_layers blocks are the MTP layers; they
// are counted in block_count but are not part of the model Jindou runs, so they are never
// described and never mapped.

extension GGUFTensorNames {
    /// Where `glm4moe` names a layer tensor differently from the shared table: llama.cpp's
    /// GLM4_MOE has ATTN_POST_NORM (`post_attention_norm`) where qwen3moe has FFN_NORM.
    static let glm4MoeLayerSuffixes: [String: String] = [
        "post_attention_layernorm.weight": "post_attention_norm.weight",
    ]
}

extension GGUFModelMetadata {
    /// `glm4moe` metadata as llama.cpp reads it: the same keys, required where llama.cpp
    /// requires them and with its defaults where it has one (`expert_weights_norm` false,
    /// `expert_weights_scale` 0 = none, no expert groups, `leading_dense_block_count` 0).
    /// Biases and q/k norms are read from the tensors present, as llama.cpp does; Jindou
    /// needs every layer alike.
    func glm4Moe() throws -> ModelDescription {
        let (layerCount, predictionLayers) = try decoderLayers()
        if let sections = value(arch("rope.dimension_sections")), sections.array?.contains(where: { $0.integer != 0 }) ?? true {
            throw error(arch("rope.dimension_sections"), "is set: multimodal rotary (GLM-4.5V) is not supported")
        }
        var description = try groupedQueryMoE(architecture: .glm4Moe, family: "GLM4-MoE", defaultGating: 2, layerCount: layerCount,
                                              optionalQueryKeyNorm: true)
        guard description.hasCorrectionBias else {
            throw GGUFError(path: file.path, reason: "missing tensor 'blk.\(description.layers.firstIndex(of: .sparse) ?? 0).exp_probs_b.bias' (GLM4-MoE selects experts with it)")
        }
        description.ignoredPredictionLayers = predictionLayers
        return try validated(description)
    }
}

extension GGUFExport {
    /// The `glm4moe.*` keys beyond the ones every architecture shares, as
    /// `Glm4MoeModel.set_gguf_parameters` writes them (without `nextn_predict_layers`: the
    /// MTP layers are not exported, as the converter's `--no-mtp` leaves them out).
    static func glm4MoeMetadata(_ d: ModelDescription, path: String) throws -> [(String, GGUFWriter.Value)] {
        let denseLead = d.layers.prefix { if case .dense = $0 { true } else { false } }.count
        guard d.layers.dropFirst(denseLead).allSatisfy({ $0 == .sparse }) else {
            throw GGUFError(path: path, reason: "glm4moe has dense layers only before the first MoE layer (leading_dense_block_count); this checkpoint mixes them")
        }
        let shared = d.sharedExpertIntermediateSize ?? 0
        guard shared % d.moeIntermediateSize == 0 else {
            throw GGUFError(path: path, reason: "shared expert width \(shared) is not a multiple of moe_intermediate_size \(d.moeIntermediateSize)")
        }
        let r = d.router
        let arch = "glm4moe"
        return [
            ("\(arch).expert_group_count", .u32(UInt32(r.groupCount))),
            ("\(arch).expert_group_used_count", .u32(UInt32(r.groupsPerToken))),
            ("\(arch).rope.dimension_count", .u32(UInt32(d.attention.rotaryDimension))),
            ("\(arch).expert_shared_count", .u32(UInt32(shared / d.moeIntermediateSize))),
            ("\(arch).leading_dense_block_count", .u32(UInt32(denseLead))),
            ("\(arch).expert_gating_func", .u32(2)),
            ("\(arch).expert_weights_scale", .f32(r.routedScalingFactor)),
        ]
    }
}
