import Foundation
import JindouNumerics

/// Real model shapes with random weights and fewer layers, so benchmarks run the exact
/// matrix sizes of models far larger than this machine (`jindouctl synth`).
public struct SyntheticModelShape: Sendable {
    public let name: String
    /// config.json (transformers 5 style) of the full model, as JSON text (with the full
    /// model's num_hidden_layers, which `layers` replaces when writing).
    public let configJSON: String

    public init(name: String, configJSON: String) {
        self.name = name
        self.configJSON = configJSON
    }

    public static let presets: [String: SyntheticModelShape] = [
        // Qwen/Qwen3-30B-A3B config.json
        "qwen3-30b-a3b": SyntheticModelShape(name: "qwen3-30b-a3b", configJSON: """
            {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_hidden_layers": 48,
            "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
            "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "num_local_experts": 128,
            "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "rms_norm_eps": 1e-6, "max_position_embeddings": 40960, "tie_word_embeddings": false,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "eos_token_id": 151645}
            """),
        // Qwen/Qwen3-Next-80B-A3B-Instruct config.json (48 layers: Gated DeltaNet in 3 of every 4)
        "qwen3-next-80b-a3b": SyntheticModelShape(name: "qwen3-next-80b-a3b", configJSON: """
            {"architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "num_hidden_layers": 48,
            "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5120, "moe_intermediate_size": 512,
            "shared_expert_intermediate_size": 512, "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
            "num_experts": 512, "num_experts_per_tok": 10, "norm_topk_prob": true, "decoder_sparse_step": 1,
            "mlp_only_layers": [], "full_attention_interval": 4, "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
            "linear_value_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
            "partial_rotary_factor": 0.25, "rope_theta": 10000000, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 262144, "tie_word_embeddings": false, "eos_token_id": 151645}
            """),
        // deepseek-ai/DeepSeek-V3.2 config.json (sparse attention: 64 index heads × 128, top 2048)
        "deepseek-v3.2": SyntheticModelShape(name: "deepseek-v3.2", configJSON: """
            {"architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32", "num_hidden_layers": 61,
            "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
            "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1,
            "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5, "norm_topk_prob": true,
            "first_k_dense_replace": 3, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64, "v_head_dim": 128, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 163840, "tie_word_embeddings": false,
            "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
            "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}, "rope_theta": 10000, "bos_token_id": 0, "eos_token_id": 1}
            """),
        // Qwen/Qwen3-235B-A22B config.json
        "qwen3-235b-a22b": SyntheticModelShape(name: "qwen3-235b-a22b", configJSON: """
            {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_hidden_layers": 94,
            "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288, "moe_intermediate_size": 1536,
            "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128, "num_local_experts": 128,
            "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "rms_norm_eps": 1e-6, "max_position_embeddings": 40960, "tie_word_embeddings": false,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "eos_token_id": 151645}
            """),
        // zai-org/GLM-4.5-Air config.json
        "glm4.5-air": SyntheticModelShape(name: "glm4.5-air", configJSON: """
            {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "num_hidden_layers": 46,
            "vocab_size": 151552, "hidden_size": 4096, "intermediate_size": 10944, "moe_intermediate_size": 1408,
            "num_attention_heads": 96, "num_key_value_heads": 8, "head_dim": 128, "n_routed_experts": 128,
            "num_experts_per_tok": 8, "n_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
            "routed_scaling_factor": 1.0, "norm_topk_prob": true, "use_qk_norm": false, "attention_bias": true,
            "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "tie_word_embeddings": false,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "partial_rotary_factor": 0.5},
            "eos_token_id": [151329, 151336, 151338]}
            """),
        // deepseek-ai/DeepSeek-V3 config.json (bf16 weights; the release is FP8)
        "deepseek-v3": SyntheticModelShape(name: "deepseek-v3", configJSON: """
            {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "num_hidden_layers": 61,
            "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
            "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
            "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
            "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "first_k_dense_replace": 3,
            "moe_layer_freq": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": true, "scoring_func": "sigmoid",
            "topk_method": "noaux_tc", "rms_norm_eps": 1e-6, "max_position_embeddings": 163840, "tie_word_embeddings": false,
            "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}, "attention_bias": false,
            "eos_token_id": 1, "bos_token_id": 0}
            """),
    ]
}

/// Writes a synthetic checkpoint: config.json plus safetensors shards of random weights
/// with the preset's exact shapes, generated and written in chunks (never the whole
/// model in memory).
public enum SyntheticCheckpoint {
    public static func write(
        shape: SyntheticModelShape, layers: Int, dtype: DType, directory: String, seed: UInt64 = 1,
        vocabularySize: Int? = nil, shardBytes: Int = 2 << 30, progress: ((Int, Int) -> Void)? = nil
    ) throws {
        precondition(dtype == .bfloat16 || dtype == .float32 || dtype == .float16)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var config = try JSONSerialization.jsonObject(with: Data(shape.configJSON.utf8)) as! [String: Any]
        config["num_hidden_layers"] = layers
        if let vocabularySize { config["vocab_size"] = vocabularySize }
        config["dtype"] = dtype == .bfloat16 ? "bfloat16" : dtype == .float16 ? "float16" : "float32"
        config["jindou_synthetic"] = shape.name
        let configData = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try configData.write(to: URL(fileURLWithPath: directory + "/config.json"))

        let description = try ModelDescription(configJSON: configData, path: directory + "/config.json")
        var requests = description.nonExpertTensors()
        for key in description.allExperts { requests += description.expertTensors(key) }

        // Shards of at most `shardBytes`.
        var shards: [[TensorRequest]] = [[]]
        var size = 0
        for request in requests {
            let bytes = request.shape!.reduce(1, *) * dtype.byteSize
            if size + bytes > shardBytes && !shards[shards.count - 1].isEmpty {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(request)
            size += bytes
        }
        let total = requests.reduce(0) { $0 + $1.shape!.reduce(1, *) * dtype.byteSize }
        var written = 0
        var weightMap: [String: String] = [:]
        var random = SplitMix64(seed: seed)
        for (index, shard) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", index + 1, shards.count)
            let entries = shard.map { SafetensorsWriter.Entry(name: $0.name, dtype: $0.name.hasSuffix("e_score_correction_bias") ? .float32 : dtype, shape: $0.shape!) }
            let writer = try SafetensorsStreamWriter(path: directory + "/" + file, entries: entries)
            for (request, entry) in zip(shard, entries) {
                try writer.writeTensor(entry) { buffer in fill(buffer, request: request, dtype: entry.dtype, random: &random) }
                written += entry.byteCount
                progress?(written, total)
                weightMap[request.name] = file
            }
            try writer.finish()
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: directory + "/model.safetensors.index.json"))
    }

    /// Random values scaled like a trained model's (norms ≈ 1, projections ~ U(±√(3/fan_in)),
    /// so activations stay O(1) through the layers).
    private static func fill(_ buffer: UnsafeMutableRawBufferPointer, request: TensorRequest, dtype: DType, random: inout SplitMix64) {
        let shape = request.shape!
        let count = buffer.count / dtype.byteSize
        let isNorm = shape.count == 1 && (request.name.hasSuffix("norm.weight") || request.name.hasSuffix("layernorm.weight"))
        let scale: Float = shape.count == 2 ? (3 / Float(shape[1])).squareRoot() : 0.02
        let offset: Float = isNorm ? 1 : 0
        func value() -> Float {
            let unit = Float(random.next() >> 40) / Float(1 << 24) * 2 - 1
            return offset + unit * scale
        }
        switch dtype {
        case .bfloat16:
            let out = buffer.bindMemory(to: UInt16.self)
            for i in 0..<count { out[i] = BFloat16Conversion.bits(from: value()) }
        case .float16:
            let out = buffer.bindMemory(to: Float16.self)
            for i in 0..<count { out[i] = Float16(value()) }
        default:
            let out = buffer.bindMemory(to: Float.self)
            for i in 0..<count { out[i] = value() }
        }
    }
}
