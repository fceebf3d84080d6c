// GLM-4.7-Flash (`glm4_moe_lite`, 30B-A3B), mirroring transformers' `models/glm4_moe_lite/
// modular_glm4_moe_lite.py`, which composes it from two families Jindou already has:
// - `Glm4MoeLiteAttention(DeepseekV3Attention)`: Multi-head Latent Attention (q-LoRA,
//   interleaved rotary with `rope_interleave`), the latent-only cache and absorbed decode
//   of LatentAttention.swift.
// - `Glm4MoeLiteMoE(Glm4MoeMoE)` with `Glm4MoeLiteTopkRouter(Glm4MoeTopkRouter)`: sigmoid,
//   selection bias, groups, `norm_topk_prob` (+1e-20), `routed_scaling_factor`, shared
//   experts — the same rule as DeepSeek-V3's router.
// - `Glm4MoeLiteDecoderLayer`: dense or sparse per `mlp_layer_types` (default: the first
//   layer dense, the rest sparse); `first_k_dense_replace` is not read.
// So the configuration is DeepSeek-V3's keys with Glm4MoeLiteConfig's defaults, plus the
// layer types. The MTP layer (`num_nextn_predict_layers`) is recognised and not mapped.

import Foundation

enum Glm4MoeLiteFamily: ArchitectureDefinition {
    static let architecture = Architecture.glm4MoeLite
    static let modelTypes = ["glm4_moe_lite"]

    /// Glm4MoeLiteConfig's defaults for the keys DeepseekV3Configuration reads.
    static var defaults: [String: Any] { [
        "vocab_size": 154_880, "hidden_size": 2048, "intermediate_size": 10240, "moe_intermediate_size": 1536,
        "num_hidden_layers": 47, "num_attention_heads": 20, "num_key_value_heads": 20, "n_shared_experts": 1,
        "n_routed_experts": 64, "routed_scaling_factor": 1.8, "kv_lora_rank": 512, "q_lora_rank": 768,
        "qk_rope_head_dim": 64, "v_head_dim": 256, "qk_nope_head_dim": 192, "n_group": 1, "topk_group": 1,
        "num_experts_per_tok": 4, "norm_topk_prob": true, "max_position_embeddings": 202_752, "rms_norm_eps": 1e-5,
        "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": false, "rope_interleave": true,
        "attention_bias": false, "first_k_dense_replace": 0,
    ] }

    static func describe(configJSON: Data) throws -> ModelDescription {
        guard var config = try JSONSerialization.jsonObject(with: configJSON) as? [String: Any] else {
            throw ConfigurationError(field: "(file)", reason: "is not a JSON object")
        }
        let layerTypes = config["mlp_layer_types"]
        for (key, value) in defaults where config[key] == nil { config[key] = value }
        // Layers come from mlp_layer_types below, not from DeepSeek's first_k_dense_replace.
        config["first_k_dense_replace"] = 0
        config["moe_layer_freq"] = 1
        var description = try JSONDecoder().decode(DeepseekV3Configuration.self,
                                                   from: try JSONSerialization.data(withJSONObject: config)).description()
        description.architecture = .glm4MoeLite
        let layers = description.layerCount
        let types: [String]
        switch layerTypes {
        case nil, is NSNull: types = ["dense"] + Array(repeating: "sparse", count: max(0, layers - 1))
        case let list as [String]: types = list
        default: throw ConfigurationError(field: "mlp_layer_types", reason: "expected a list of \"dense\"/\"sparse\"")
        }
        description.layers = try LayerTypes.feedForward(types, layers: layers,
                                                        intermediateSize: (config["intermediate_size"] as? Int) ?? 10240)
        return description
    }
}
