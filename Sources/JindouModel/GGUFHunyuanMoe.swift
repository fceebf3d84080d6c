import JindouRouting

// llama.cpp's `hunyuan-moe`: Tencent's Hunyuan-A13B (transformers' HunYuanMoEV1ForCausalLM) as
// convert_hf_to_gguf.py writes it (conversion/hunyuan.py `HunYuanMoEModel`) and llama.cpp
// reads it (src/models/hunyuan-moe.cpp):
//   hunyuan-moe.{block_count, embedding_length, attention.head_count(_kv), attention.key_length,
//                rope.freq_base (NTK-alpha already applied: base · alpha^(d / (d − 2))),
//                rope.scaling.type none, expert_count, expert_used_count,
//                expert_feed_forward_length, expert_shared_feed_forward_length,
//                expert_weights_scale (0: none)}
//   blk.N.{attn_norm, attn_q/k/v (+ .bias), attn_output, attn_q_norm / attn_k_norm (applied
//          after rotary), ffn_norm, ffn_gate_inp (`mlp.gate.wg`), ffn_{gate,up,down}_exps,
//          ffn_{gate,up,down}_shexp (`mlp.shared_mlp`)}
// What llama.cpp fixes rather than reads: softmax routing renormalised over the chosen
// experts, a shared MLP in every layer, every layer MoE. Rotary is NEOX-style, as transformers'.

extension GGUFTensorNames {
    /// Hunyuan's q/k norms, router and shared MLP under llama.cpp's names.
    static let hunyuanMoeLayerSuffixes: [String: String] = [
        "self_attn.query_layernorm.weight": "attn_q_norm.weight",
        "self_attn.key_layernorm.weight": "attn_k_norm.weight",
        "mlp.gate.wg.weight": "ffn_gate_inp.weight",
        "mlp.shared_mlp.gate_proj.weight": "ffn_gate_shexp.weight",
        "mlp.shared_mlp.up_proj.weight": "ffn_up_shexp.weight",
        "mlp.shared_mlp.down_proj.weight": "ffn_down_shexp.weight",
    ]
}

extension GGUFModelMetadata {
    func hunyuanMoe() throws -> ModelDescription {
        let layerCount = try positive(arch("block_count"))
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        guard rotary == headDimension else {
            throw error(arch("rope.dimension_count"), "is \(rotary); llama.cpp's hunyuan-moe rotates whole heads (\(headDimension))")
        }
        let all = 0..<layerCount
        guard try sameInEveryLayer(["attn_q_norm.weight", "attn_k_norm.weight"], layers: all) else {
            throw GGUFError(path: file.path, reason: "missing tensor 'blk.0.attn_q_norm.weight' (Hunyuan normalises queries and keys per head)")
        }
        let moe = try positive(arch("expert_feed_forward_length"))
        var attention = AttentionShape(
            heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
            ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
            queryKeyNorm: true, queryKeyValueBias: try sameInEveryLayer(["attn_q.bias", "attn_k.bias", "attn_v.bias"], layers: all),
            outputBias: try sameInEveryLayer(["attn_output.bias"], layers: all), slidingWindow: nil)
        attention.queryKeyNormAfterRotary = true
        (attention.queryNormName, attention.keyNormName) = ("query_layernorm", "key_layernorm")
        var description = ModelDescription(
            architecture: .hunyuanMoe,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: attention,
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: Array(repeating: .sparse, count: layerCount),
            router: RouterConfiguration(expertCount: try positive(arch("expert_count")), expertsPerToken: try positive(arch("expert_used_count")),
                                        scoring: .softmax, normalizeTopK: true, routedScalingFactor: try routedScalingFactor()),
            hasCorrectionBias: false,
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: try positive(arch("expert_shared_feed_forward_length")),
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        description.moeNames.router = "gate.wg.weight"
        description.moeNames.sharedExperts = "shared_mlp."
        return try validated(description)
    }
}
