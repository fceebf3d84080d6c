// LongCat-Flash (`longcat_flash`, 560B with 18.6–31.3B active), mirroring transformers'
// `models/longcat_flash/modular_longcat_flash.py`:
// - `LongcatFlashMLA(DeepseekV32Attention)` without the indexer: MLA with q-LoRA, interleaved
//   rotary, and LoRA scaling — q × √(hidden / q_lora_rank), the normed latent c ×
//   √(hidden / kv_lora_rank) (`LatentAttentionShape.queryScale`, `.latentScale`).
// - `LongcatFlashTopkRouter`: `classifier` over the routed and the zero-computation experts,
//   softmax, top-k of softmax + `e_score_correction_bias`, the unbiased scores × routed_scaling
//   (no renormalisation).
// - `LongcatFlashExperts`: experts ≥ n_routed_experts are the identity (`zeroComputationExperts`,
//   applied on the coordinator, never dispatched).
// - `LongcatFlashDecoderLayer`: two attention sub-blocks (cache layers 2l, 2l + 1), two dense
//   MLPs (`mlps`, `ffn_hidden_size`), and one shortcut MoE reading sub-block 0's
//   post-attention norm, added at the layer's end (`ShortcutSublayerShape`,
//   `DecoderModel.shortcutDecoderLayer`).
// The configuration is DeepSeek-V3's with LongCat's names (num_layers, moe_topk,
// expert_ffn_hidden_size, ffn_hidden_size, zero_expert_num) and LongcatFlashConfig's defaults.

import Foundation

enum LongcatFlashFamily: ArchitectureDefinition {
    static let architecture = Architecture.longcatFlash
    static let modelTypes = ["longcat_flash"]

    /// LongcatFlashConfig's defaults.
    static var defaults: [String: Any] { [
        "vocab_size": 131_072, "hidden_size": 6144, "num_layers": 28, "num_attention_heads": 64, "max_position_embeddings": 131_072,
        "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false, "attention_bias": false,
        "ffn_hidden_size": 12288, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "moe_topk": 12, "n_routed_experts": 512, "zero_expert_num": 256, "expert_ffn_hidden_size": 2048,
        "routed_scaling_factor": 6.0,
    ] }

    static func describe(configJSON: Data) throws -> ModelDescription {
        guard var config = try JSONSerialization.jsonObject(with: configJSON) as? [String: Any] else {
            throw ConfigurationError(field: "(file)", reason: "is not a JSON object")
        }
        for (key, value) in defaults where config[key] == nil { config[key] = value }
        if config["rope_parameters"] == nil && config["rope_theta"] == nil { config["rope_theta"] = 10_000_000.0 }
        func integer(_ key: String) throws -> Int {
            guard let n = config[key] as? Int else { throw ConfigurationError(field: key, reason: "must be an integer") }
            return n
        }
        if config["q_lora_rank"] is NSNull {
            throw ConfigurationError(field: "q_lora_rank", reason: "is null; LongCat-Flash's attention always has the q-LoRA latent")
        }
        if let qkHead = config["qk_head_dim"], !(qkHead is NSNull),
           try (qkHead as? Int) != integer("qk_nope_head_dim") + integer("qk_rope_head_dim") {
            throw ConfigurationError(field: "qk_head_dim", reason: "must equal qk_nope_head_dim + qk_rope_head_dim")
        }
        if let headDim = config["head_dim"], !(headDim is NSNull), try (headDim as? Int) != integer("qk_rope_head_dim") {
            // LongcatFlashRotaryEmbedding takes its frequencies from head_dim; only head_dim =
            // qk_rope_head_dim rotates the rope part (others fail in transformers).
            throw ConfigurationError(field: "head_dim", reason: "must equal qk_rope_head_dim (the rotary's width)")
        }
        let routed = try integer("n_routed_experts"), zero = config["zero_expert_num"] is NSNull ? 0 : try integer("zero_expert_num")
        guard routed > 0, zero >= 0 else { throw ConfigurationError(field: "n_routed_experts", reason: "must be positive") }
        let hidden = try integer("hidden_size"), queryRank = try integer("q_lora_rank"), latentRank = try integer("kv_lora_rank")
        // The same model in DeepSeek-V3's keys: the router scores routed + zero experts.
        var deepseek = config
        deepseek["num_hidden_layers"] = try integer("num_layers")
        deepseek["n_routed_experts"] = routed + zero
        deepseek["num_experts_per_tok"] = try integer("moe_topk")
        deepseek["moe_intermediate_size"] = try integer("expert_ffn_hidden_size")
        deepseek["intermediate_size"] = try integer("ffn_hidden_size")
        for (key, value) in ["n_shared_experts": 0, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 0, "moe_layer_freq": 1,
                             "norm_topk_prob": false, "rope_interleave": true, "num_nextn_predict_layers": 0] as [String: Any] {
            deepseek[key] = value
        }
        var description = try JSONDecoder().decode(DeepseekV3Configuration.self,
                                                   from: try JSONSerialization.data(withJSONObject: deepseek)).description()
        description.architecture = .longcatFlash
        description.router.scoring = .softmax
        description.router.normalizeTopK = false
        description.sharedExpertIntermediateSize = nil
        description.zeroComputationExperts = zero
        description.shortcutSublayers = ShortcutSublayerShape(intermediateSize: try integer("ffn_hidden_size"))
        description.moeNames.router = "router.classifier.weight"
        description.moeNames.correctionBias = "router.e_score_correction_bias"
        description.moeNames.routerBias = (config["router_bias"] as? Bool) == true ? "router.classifier.bias" : nil
        description.latentAttention?.queryScale = Float((Double(hidden) / Double(queryRank)).squareRoot())
        description.latentAttention?.latentScale = Float((Double(hidden) / Double(latentRank)).squareRoot())
        return description
    }
}
