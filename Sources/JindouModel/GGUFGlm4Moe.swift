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
        let path = file.path
        let (layerCount, predictionLayers) = try decoderLayers()
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        if let sections = value(arch("rope.dimension_sections")), sections.array?.contains(where: { $0.integer != 0 }) ?? true {
            throw error(arch("rope.dimension_sections"), "is set: multimodal rotary (GLM-4.5V) is not supported")
        }

        let gating = try integer(arch("expert_gating_func"), default: 2)
        guard gating == 2 else {
            let name = [1: "softmax", 4: "sqrtsoftplus"][gating].map { " (\($0))" } ?? ""
            throw error(arch("expert_gating_func"), "is \(gating)\(name); GLM4-MoE routes with sigmoid (2)")
        }
        let experts = try positive(arch("expert_count"))
        let used = try positive(arch("expert_used_count"))
        let moe = try positive(arch("expert_feed_forward_length"))
        let shared = try integer(arch("expert_shared_count"))
        let groups = try integer(arch("expert_group_count"), default: 0)
        let groupsUsed = try integer(arch("expert_group_used_count"), default: 0)
        if groups > 1 {
            guard experts % groups == 0 else {
                throw error(arch("expert_group_count"), "\(groups) does not divide expert_count \(experts)")
            }
            guard (1...groups).contains(groupsUsed) else {
                throw error(arch("expert_group_used_count"), "\(groupsUsed) is not in 1…expert_group_count (\(groups))")
            }
        }
        // llama.cpp scales the routed weights only when the factor is neither 0 (unset) nor 1.
        let scale = try number(arch("expert_weights_scale"), default: 0)
        guard scale >= 0 else { throw error(arch("expert_weights_scale"), "must not be negative, is \(scale)") }

        let denseLead = try integer(arch("leading_dense_block_count"), default: 0)
        guard denseLead <= layerCount else {
            throw error(arch("leading_dense_block_count"), "is \(denseLead), more than the \(layerCount) decoder layers")
        }
        let feedForward = try integer(arch("feed_forward_length"), default: 0)
        if denseLead > 0, feedForward == 0 {
            throw error(arch("feed_forward_length"), "is needed for the \(denseLead) leading dense layers")
        }
        let layers: [FeedForwardKind] = (0..<layerCount).map { $0 < denseLead ? .dense(intermediateSize: feedForward) : .sparse }

        let vocabulary = try vocabularySize()
        for fused in ["attn_qkv.weight", "ffn_gate_up_exps.weight"] {
            if let layer = (0..<layerCount).first(where: { file.tensor("blk.\($0).\(fused)") != nil }) {
                throw GGUFError(path: path, reason: "tensor 'blk.\(layer).\(fused)' is fused (convert_hf_to_gguf.py --fuse-qkv / --fuse-gate-up-exps); Jindou reads the unfused tensors")
            }
        }
        let queryKeyNorm = try sameInEveryLayer(["attn_q_norm.weight", "attn_k_norm.weight"], layers: layerCount)
        let bias = try sameInEveryLayer(["attn_q.bias", "attn_k.bias", "attn_v.bias"], layers: layerCount)

        var description = ModelDescription(
            architecture: .glm4Moe,
            vocabularySize: vocabulary,
            hiddenSize: hidden,
            attention: AttentionShape(
                heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
                ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
                queryKeyNorm: queryKeyNorm, queryKeyValueBias: bias, outputBias: false, slidingWindow: nil),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: layers,
            router: RouterConfiguration(
                expertCount: experts, expertsPerToken: used, scoring: .sigmoid,
                normalizeTopK: try bool(arch("expert_weights_norm"), default: false),
                routedScalingFactor: scale == 0 ? 1 : Float(scale),
                groupCount: groups > 1 ? groups : 1, groupsPerToken: groups > 1 ? groupsUsed : 1,
                // Glm4MoeTopkRouter's epsilon (llama.cpp clamps the sum at 6.1e-5 instead; a
                // sum of sigmoids that small does not occur in practice).
                normalizationEpsilon: 1e-20),
            hasCorrectionBias: true,
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: shared > 0 ? moe * shared : nil,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot", "eom"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        description.ignoredPredictionLayers = predictionLayers
        return try validated(description)
    }

    /// Whether the decoder layers carry the optional tensors `suffixes` (all of them in
    /// every layer, or none anywhere); llama.cpp decides per layer, Jindou's attention is
    /// the same in every layer.
    private func sameInEveryLayer(_ suffixes: [String], layers: Int) throws -> Bool {
        let present = file.tensor("blk.0.\(suffixes[0])") != nil
        for layer in 0..<layers {
            for suffix in suffixes where (file.tensor("blk.\(layer).\(suffix)") != nil) != present {
                throw GGUFError(path: file.path, reason: "tensor 'blk.\(layer).\(suffix)' is \(present ? "missing while" : "present while") 'blk.0.\(suffixes[0])' is \(present ? "present" : "not"); Jindou needs every layer alike")
            }
        }
        return present
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
