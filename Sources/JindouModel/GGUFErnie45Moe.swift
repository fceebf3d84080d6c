import JindouRouting

// llama.cpp's `ernie4_5-moe`: Baidu's ERNIE-4.5 MoE (transformers' Ernie4_5_MoeForCausalLM) as
// convert_hf_to_gguf.py writes it (conversion/ernie.py `Ernie4_5MoeModel`) and llama.cpp reads
// it (src/models/ernie4-5-moe.cpp):
//   ernie4_5-moe.{block_count, embedding_length, attention.head_count(_kv), attention.key_length,
//                 rope.freq_base, feed_forward_length (dense layers), expert_count,
//                 expert_used_count, expert_feed_forward_length, leading_dense_block_count,
//                 interleave_moe_layer_step, expert_shared_feed_forward_length,
//                 expert_weights_scale (0: none)}
//   blk.N.{attn_norm, attn_q/k/v, attn_output, ffn_norm, ffn_gate/up/down (dense layers),
//          ffn_gate_inp, exp_probs_b.bias ([1, E]: `mlp.moe_statics.e_score_correction_bias`),
//          ffn_{gate,up,down}_exps, ffn_{gate,up,down}_shexp}
// Layer l is MoE when l ≥ leading_dense_block_count and (l + 1) is a multiple of the step,
// as llama.cpp decides (it has no end index: a checkpoint whose moe_layer_end_index stops
// early converts into a file that means MoE to the end). Rotary rotates adjacent pairs
// (llama.cpp's NORM), as ERNIE's does; the converter copies q/k unpermuted. Routing is
// softmax with the selection bias, renormalised (llama.cpp always); the converter writes the
// shared experts' width as intermediate_size / num_key_value_heads.

extension GGUFTensorNames {
    /// ERNIE keeps the selection bias in the MoE block's `moe_statics`.
    static let ernie45MoeLayerSuffixes: [String: String] = [
        "mlp.moe_statics.e_score_correction_bias": "exp_probs_b.bias",
    ]
}

extension GGUFModelMetadata {
    func ernie45Moe() throws -> ModelDescription {
        let layerCount = try positive(arch("block_count"))
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        let denseLead = try integer(arch("leading_dense_block_count"), default: 0)
        let step = try positive(arch("interleave_moe_layer_step"), default: 1)
        let feedForward = try integer(arch("feed_forward_length"), default: 0)
        let layers: [FeedForwardKind] = try (0..<layerCount).map { l in
            if l >= denseLead && (l + 1) % step == 0 { return .sparse }
            guard feedForward > 0 else { throw error(arch("feed_forward_length"), "is needed for dense layer \(l)") }
            return .dense(intermediateSize: feedForward)
        }
        let moeLayers = (0..<layerCount).filter { layers[$0] == .sparse }
        let correctionBias = try sameInEveryLayer(["exp_probs_b.bias"], layers: moeLayers)
        let shared = try integer(arch("expert_shared_feed_forward_length"), default: 0)
        var description = ModelDescription(
            architecture: .ernie45Moe,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: AttentionShape(
                heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
                ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
                queryKeyNorm: false, queryKeyValueBias: try sameInEveryLayer(["attn_q.bias", "attn_k.bias", "attn_v.bias"], layers: 0..<layerCount),
                outputBias: false, slidingWindow: nil, interleavedRotary: true),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: layers,
            router: RouterConfiguration(expertCount: try positive(arch("expert_count")), expertsPerToken: try positive(arch("expert_used_count")),
                                        scoring: .softmax, normalizeTopK: true, routedScalingFactor: try routedScalingFactor()),
            hasCorrectionBias: correctionBias,
            moeIntermediateSize: try positive(arch("expert_feed_forward_length")),
            sharedExpertIntermediateSize: shared > 0 ? shared : nil,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        description.moeNames.correctionBias = "moe_statics.e_score_correction_bias"
        description.moeNames.correctionBiasIsRow = true
        return try validated(description)
    }
}
