import JindouRouting

// llama.cpp's `minimax-m2`: transformers' MiniMaxM2ForCausalLM as convert_hf_to_gguf.py
// writes it (conversion/minimax.py `MiniMaxM2Model`) and llama.cpp reads it
// (src/models/minimax-m2.cpp):
//   minimax-m2.{block_count, embedding_length, attention.head_count(_kv), attention.key_length,
//               rope.dimension_count (rotary_dim), rope.freq_base, expert_count,
//               expert_used_count, expert_feed_forward_length, expert_gating_func (2 = sigmoid,
//               from the config's scoring_func)}
//   blk.N.{attn_norm, attn_q/k/v, attn_output, attn_q_norm / attn_k_norm (over the whole
//          projection: heads × head_dim and kv_heads × head_dim wide), ffn_norm, ffn_gate_inp,
//          exp_probs_b.bias (e_score_correction_bias), ffn_{gate,up,down}_exps (w1, w3, w2)}
// The converter stacks w1/w3/w2 unpermuted and the rotary is NEOX-style over the first
// rope.dimension_count features, as transformers computes; llama.cpp always renormalises the
// chosen weights. So the file is read under the shared names (`mlp.gate`, `gate_proj`…), as
// stored.

extension GGUFModelMetadata {
    func miniMaxM2() throws -> ModelDescription {
        let path = file.path
        let layerCount = try positive(arch("block_count"))
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        let gating = try integer(arch("expert_gating_func"), default: 0)
        guard gating == 2 else {
            throw error(arch("expert_gating_func"), "is \(gating); MiniMax-M2 routes with sigmoid (2)")
        }
        for l in 0..<layerCount where file.tensor("blk.\(l).exp_probs_b.bias") == nil {
            throw GGUFError(path: path, reason: "missing tensor 'blk.\(l).exp_probs_b.bias' (MiniMax-M2 selects experts with it)")
        }
        var attention = AttentionShape(
            heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
            ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
            queryKeyNorm: true, queryKeyValueBias: false, outputBias: false, slidingWindow: nil)
        attention.queryKeyNormScope = .wholeProjection
        return try validated(ModelDescription(
            architecture: .miniMaxM2,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: attention,
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: Array(repeating: .sparse, count: layerCount),
            router: RouterConfiguration(expertCount: try positive(arch("expert_count")), expertsPerToken: try positive(arch("expert_used_count")),
                                        scoring: .sigmoid, normalizeTopK: true,
                                        routedScalingFactor: try routedScalingFactor()),
            hasCorrectionBias: true,
            moeIntermediateSize: try positive(arch("expert_feed_forward_length")),
            sharedExpertIntermediateSize: nil,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil))
    }
}
