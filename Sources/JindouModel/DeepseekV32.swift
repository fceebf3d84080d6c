// DeepSeek-V3.2 (`deepseek_v32`), mirroring transformers' `models/deepseek_v32/
// modeling_deepseek_v32.py`: DeepSeek-V3 (DeepseekV3.swift) with DeepSeek Sparse Attention.
// - `DeepseekV32Attention`: MLA with q-LoRA (always) and interleaved rotary (always:
//   `apply_rotary_pos_emb_interleave`, whatever `rope_interleave` says); the indexer's top-k
//   positions become the attention mask (SparseIndexer.swift).
// - `DeepseekV32Indexer`: `wq_b` on the q-LoRA latent (`q_a_layernorm(q_a_proj(x))`),
//   `wk` + `k_norm` (LayerNorm with bias) on the hidden state, half-split rotary on the first
//   qk_rope_head_dim features of both, ReLU scores weighted per head by `weights_proj(x)` /
//   √index_n_heads, top `index_topk` per query among the causal positions.
// - `DeepseekV32DecoderLayer`: dense or sparse per `mlp_layer_types` (default: the first
//   `first_k_dense_replace` layers dense); every layer `indexed_attention` (`layer_types`).
// So the configuration is DeepSeek-V3's keys with DeepseekV32Config's defaults, plus the
// indexer's three keys and the layer types. MTP layers are recognised and not mapped.

import Foundation

enum DeepseekV32Family: ArchitectureDefinition {
    static let architecture = Architecture.deepseekV32
    static let modelTypes = ["deepseek_v32"]

    /// DeepseekV32Config's defaults where they differ from what DeepseekV3Configuration assumes.
    static var defaults: [String: Any] { ["max_position_embeddings": 163_840, "bos_token_id": 0, "eos_token_id": 1] }

    static func describe(configJSON: Data) throws -> ModelDescription {
        guard let config = try JSONSerialization.jsonObject(with: configJSON) as? [String: Any] else {
            throw ConfigurationError(field: "(file)", reason: "is not a JSON object")
        }
        return try describe(config: config, defaults: defaults)
    }

    /// DeepseekV32Config read with `defaults` for absent keys (GLM-5 passes its own).
    static func describe(config original: [String: Any], defaults: [String: Any]) throws -> ModelDescription {
        var config = original
        for (key, value) in defaults where config[key] == nil { config[key] = value }
        if config["q_lora_rank"] is NSNull {
            throw ConfigurationError(field: "q_lora_rank", reason: "is null; DeepSeek-V3.2's attention and indexer need the q-LoRA latent")
        }
        let layerTypes = config["layer_types"]
        if let types = layerTypes as? [String], let other = types.first(where: { $0 != "indexed_attention" }) {
            throw ConfigurationError(field: "layer_types", reason: "'\(other)' is not supported (every DeepSeek-V3.2 layer is indexed_attention)")
        } else if layerTypes != nil, !(layerTypes is NSNull), !(layerTypes is [String]) {
            throw ConfigurationError(field: "layer_types", reason: "expected a list of \"indexed_attention\"")
        }
        config["rope_interleave"] = true
        let mlpTypes = config["mlp_layer_types"]
        var description = try JSONDecoder().decode(DeepseekV3Configuration.self,
                                                   from: try JSONSerialization.data(withJSONObject: config)).description()
        description.architecture = .deepseekV32
        if let list = mlpTypes as? [String] {
            description.layers = try LayerTypes.feedForward(list, layers: description.layerCount,
                                                            intermediateSize: (config["intermediate_size"] as? Int) ?? 18_432)
        } else if mlpTypes != nil, !(mlpTypes is NSNull) {
            throw ConfigurationError(field: "mlp_layer_types", reason: "expected a list of \"dense\"/\"sparse\"")
        }
        func integer(_ key: String, _ fallback: Int) throws -> Int {
            guard let value = config[key] else { return fallback }
            guard let n = value as? Int else { throw ConfigurationError(field: key, reason: "must be an integer") }
            return n
        }
        let rope = description.latentAttention?.ropeDimension ?? 64
        description.latentAttention?.indexer = SparseIndexerShape(
            heads: try integer("index_n_heads", 64), headDimension: try integer("index_head_dim", 128),
            topK: try integer("index_topk", 2048), ropeDimension: rope)
        return description
    }
}
