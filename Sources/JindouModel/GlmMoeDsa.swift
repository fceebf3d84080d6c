// GLM-5 (`glm_moe_dsa`, 744B-A40B), mirroring transformers' `models/glm_moe_dsa/
// modular_glm_moe_dsa.py`, which builds it from DeepSeek-V3.2 (DeepseekV32.swift):
// - `GlmMoeDsaIndexer(DeepseekV32Indexer)`: the same lightning indexer, with the rotary on
//   interleaved pairs (`apply_rotary_pos_emb_interleave`) instead of half-split ones.
// - `GlmMoeDsaAttention`: MLA with q-LoRA and interleaved rotary as in V3.2, plus cross-layer
//   top-k sharing: `indexer_types[layer]` "full" runs the layer's indexer, "shared" has no
//   indexer and attends to the positions the previous layer chose (`prev_topk_indices`).
// - `GlmMoeDsaTopkRouter`, experts, MLP, decoder layer: DeepSeek-V3.2's.
// `GlmMoeDsaConfig.__post_init__` derives `indexer_types` from `index_topk_pattern` ("F"/"S"
// per layer) or else `index_topk_freq` / `index_skip_topk_offset` (layer i is full when
// max(i − offset + 1, 0) is a multiple of freq; freq 1, the default, makes every layer full).
// The MTP layer (`model.layers.78`) is recognised and not mapped.

import Foundation

enum GlmMoeDsaFamily: ArchitectureDefinition {
    static let architecture = Architecture.glmMoeDsa
    static let modelTypes = ["glm_moe_dsa"]

    /// GlmMoeDsaConfig's defaults (with DeepseekV32Config's for what it inherits).
    static var defaults: [String: Any] { [
        "vocab_size": 154_880, "hidden_size": 6144, "intermediate_size": 12288, "moe_intermediate_size": 2048,
        "num_hidden_layers": 78, "num_attention_heads": 64, "num_key_value_heads": 64, "n_shared_experts": 1,
        "n_routed_experts": 256, "routed_scaling_factor": 2.5, "kv_lora_rank": 512, "q_lora_rank": 2048,
        "qk_rope_head_dim": 64, "v_head_dim": 256, "qk_nope_head_dim": 192, "n_group": 1, "topk_group": 1,
        "num_experts_per_tok": 8, "norm_topk_prob": true, "max_position_embeddings": 202_752, "rms_norm_eps": 1e-5,
        "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": false, "attention_bias": false,
        "first_k_dense_replace": 3, "index_topk": 2048, "index_head_dim": 128, "index_n_heads": 32,
    ] }

    static func describe(configJSON: Data) throws -> ModelDescription {
        guard let config = try JSONSerialization.jsonObject(with: configJSON) as? [String: Any] else {
            throw ConfigurationError(field: "(file)", reason: "is not a JSON object")
        }
        var description = try DeepseekV32Family.describe(config: config, defaults: defaults)
        description.architecture = .glmMoeDsa
        let types = try indexerTypes(config, layers: description.layerCount)
        description.latentAttention?.indexer?.interleavedRotary = true
        description.latentAttention?.indexer?.sharedLayers = Set(types.indices.filter { types[$0] == "shared" })
        return description
    }

    /// `indexer_types`, or the pattern `GlmMoeDsaConfig.__post_init__` derives it from.
    static func indexerTypes(_ config: [String: Any], layers: Int) throws -> [String] {
        let types: [String]
        if let given = config["indexer_types"], !(given is NSNull) {
            guard let list = given as? [String] else {
                throw ConfigurationError(field: "indexer_types", reason: "expected a list of \"full\"/\"shared\"")
            }
            types = list
        } else if let pattern = config["index_topk_pattern"], !(pattern is NSNull) {
            let letters: [String]
            if let text = pattern as? String { letters = text.map(String.init) } else if let list = pattern as? [String] { letters = list } else {
                throw ConfigurationError(field: "index_topk_pattern", reason: "expected a string of F/S or a list")
            }
            types = try letters.map { letter in
                switch letter {
                case "F", "full": return "full"
                case "S", "shared": return "shared"
                default: throw ConfigurationError(field: "index_topk_pattern", reason: "'\(letter)' is neither F (full) nor S (shared)")
                }
            }
        } else {
            func integer(_ key: String, _ fallback: Int) throws -> Int {
                guard let value = config[key], !(value is NSNull) else { return fallback }
                guard let n = value as? Int else { throw ConfigurationError(field: key, reason: "must be an integer") }
                return n
            }
            let frequency = max(try integer("index_topk_freq", 1), 1), offset = try integer("index_skip_topk_offset", 2)
            types = (0..<layers).map { max($0 - offset + 1, 0) % frequency == 0 ? "full" : "shared" }
        }
        if let other = types.first(where: { $0 != "full" && $0 != "shared" }) {
            throw ConfigurationError(field: "indexer_types", reason: "'\(other)' is neither \"full\" nor \"shared\"")
        }
        guard types.count >= layers else {
            throw ConfigurationError(field: "indexer_types", reason: "has \(types.count) entries for \(layers) layers")
        }
        return Array(types.prefix(layers))
    }
}
