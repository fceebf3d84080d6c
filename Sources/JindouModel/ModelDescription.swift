import Foundation
import JindouRouting

/// The architectures Jindou serves, by the `architectures` name in config.json.
public enum Architecture: String, Sendable, CaseIterable, Codable {
    case qwen3Moe = "Qwen3MoeForCausalLM"
    case glm4Moe = "Glm4MoeForCausalLM"
}

/// Shape of the attention block (GQA with optional q/k norm and partial rotary).
public struct AttentionShape: Sendable, Equatable {
    public var heads: Int
    public var keyValueHeads: Int
    public var headDimension: Int
    /// Features per head that rotate (`head_dim × partial_rotary_factor`).
    public var rotaryDimension: Int
    public var ropeTheta: Double
    /// Per-head RMSNorm on q and k before rotary (Qwen3; GLM4 with `use_qk_norm`).
    public var queryKeyNorm: Bool
    /// Biases on q/k/v projections (`attention_bias`).
    public var queryKeyValueBias: Bool
    /// Bias on the output projection (Qwen3 with `attention_bias`; never GLM4).
    public var outputBias: Bool
    /// Sliding-window attention span, if the checkpoint enables it.
    public var slidingWindow: Int?

    public var scale: Float { 1 / Float(headDimension).squareRoot() }
}

/// What a decoder layer's feed-forward block is.
public enum FeedForwardKind: Sendable, Equatable {
    /// A dense SwiGLU MLP of this intermediate size.
    case dense(intermediateSize: Int)
    /// Routed experts (plus shared experts when `sharedIntermediateSize` is set).
    case sparse
}

/// An architecture-neutral description of a decoder-only MoE checkpoint: what the
/// engine, the worker and the coordinator need to know, parsed from config.json by the
/// architecture's own configuration type (`Qwen3MoeConfiguration`, `Glm4MoeConfiguration`).
public struct ModelDescription: Sendable, Equatable {
    public var architecture: Architecture
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var attention: AttentionShape
    public var rmsNormEpsilon: Float
    public var tieWordEmbeddings: Bool
    /// One entry per decoder layer (`num_hidden_layers`; MTP layers beyond are ignored).
    public var layers: [FeedForwardKind]
    public var router: RouterConfiguration
    /// Whether MoE gates carry `e_score_correction_bias` (GLM4, DeepSeek-V3).
    public var hasCorrectionBias: Bool
    public var moeIntermediateSize: Int
    /// Intermediate size of the shared experts (`moe_intermediate_size × n_shared_experts`).
    public var sharedExpertIntermediateSize: Int?
    public var maxPositionEmbeddings: Int
    public var eosTokenIDs: [Int]
    public var bosTokenID: Int?
    /// Weight dtype declared in config.json (`dtype` or `torch_dtype`), informational.
    public var declaredDType: String?

    public var layerCount: Int { layers.count }
    public var expertCount: Int { router.expertCount }

    /// Indices of the layers with routed experts.
    public var sparseLayers: [Int] {
        layers.indices.filter { layers[$0] == .sparse }
    }

    static func configError(_ error: Error, path: String) -> CheckpointError {
        if let decoding = error as? DecodingError {
            switch decoding {
            case .typeMismatch(let type, let context):
                return .badConfig(path: path, field: context.fieldPath, reason: "expected \(type)")
            case .valueNotFound(let type, let context):
                return .badConfig(path: path, field: context.fieldPath, reason: "expected \(type), found null")
            case .keyNotFound(let key, let context):
                let field = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
                return .badConfig(path: path, field: field, reason: "is required")
            case .dataCorrupted(let context):
                return .badConfig(path: path, field: context.fieldPath.isEmpty ? "(file)" : context.fieldPath,
                                  reason: context.underlyingError.map { "\($0)" } ?? context.debugDescription)
            @unknown default:
                return .badConfig(path: path, field: "(file)", reason: "\(error)")
            }
        }
        return .badConfig(path: path, field: "(file)", reason: "\(error)")
    }
}

extension ModelDescription {
    /// Reads `config.json` (and `generation_config.json` for EOS ids) from a checkpoint.
    public init(checkpoint: Checkpoint) throws {
        let configPath = checkpoint.path(of: "config.json")
        let generationConfig = FileManager.default.contents(atPath: checkpoint.path(of: "generation_config.json"))
        try self.init(configJSON: checkpoint.configData, path: configPath, generationConfigJSON: generationConfig)
    }

    public init(configJSON: Data, path: String, generationConfigJSON: Data? = nil) throws {
        let probe: ArchitectureProbe
        do {
            probe = try JSONDecoder().decode(ArchitectureProbe.self, from: configJSON)
        } catch {
            throw Self.configError(error, path: path)
        }
        let name = probe.architectures?.first ?? probe.modelType.flatMap(Self.architectureForModelType) ?? "unknown"
        guard let architecture = Architecture(rawValue: name) else {
            throw CheckpointError.unsupportedArchitecture(
                path: path, architecture: name, supported: Architecture.allCases.map(\.rawValue))
        }
        do {
            switch architecture {
            case .qwen3Moe:
                self = try JSONDecoder().decode(Qwen3MoeConfiguration.self, from: configJSON).description()
            case .glm4Moe:
                self = try JSONDecoder().decode(Glm4MoeConfiguration.self, from: configJSON).description()
            }
        } catch let error as CheckpointError {
            throw error
        } catch let error as ConfigurationError {
            throw CheckpointError.badConfig(path: path, field: error.field, reason: error.reason)
        } catch {
            throw Self.configError(error, path: path)
        }
        if let generationConfigJSON,
           let generation = try? JSONDecoder().decode(GenerationConfiguration.self, from: generationConfigJSON) {
            for id in generation.eosTokenID?.values ?? [] where !eosTokenIDs.contains(id) {
                eosTokenIDs.append(id)
            }
            if bosTokenID == nil { bosTokenID = generation.bosTokenID }
        }
        try validate(path: path)
    }

    private static func architectureForModelType(_ type: String) -> String? {
        switch type {
        case "qwen3_moe": Architecture.qwen3Moe.rawValue
        case "glm4_moe": Architecture.glm4Moe.rawValue
        default: nil
        }
    }

    private func validate(path: String) throws {
        func require(_ condition: Bool, _ field: String, _ reason: String) throws {
            if !condition { throw CheckpointError.badConfig(path: path, field: field, reason: reason) }
        }
        try require(vocabularySize > 0, "vocab_size", "must be positive")
        try require(hiddenSize > 0, "hidden_size", "must be positive")
        try require(!layers.isEmpty, "num_hidden_layers", "must be positive")
        try require(attention.heads > 0 && attention.keyValueHeads > 0, "num_attention_heads", "must be positive")
        try require(attention.heads % attention.keyValueHeads == 0, "num_key_value_heads",
                    "\(attention.keyValueHeads) does not divide num_attention_heads \(attention.heads)")
        try require(attention.headDimension > 0 && attention.headDimension % 2 == 0, "head_dim", "must be a positive even number")
        try require(attention.rotaryDimension % 2 == 0 && attention.rotaryDimension <= attention.headDimension,
                    "partial_rotary_factor", "gives rotary dimension \(attention.rotaryDimension) for head_dim \(attention.headDimension)")
        if !sparseLayers.isEmpty {
            try require(router.expertCount > 0, "num_experts", "must be positive for a model with MoE layers")
            try require(router.expertsPerToken >= 1 && router.expertsPerToken <= router.expertCount, "num_experts_per_tok",
                        "\(router.expertsPerToken) is not in 1…\(router.expertCount)")
            try require(router.groupCount >= 1 && router.expertCount % router.groupCount == 0, "n_group",
                        "\(router.groupCount) does not divide the \(router.expertCount) experts")
            try require(router.groupsPerToken >= 1 && router.groupsPerToken <= router.groupCount, "topk_group",
                        "\(router.groupsPerToken) is not in 1…n_group (\(router.groupCount))")
            try require(moeIntermediateSize > 0, "moe_intermediate_size", "must be positive")
        }
    }

}

extension DecodingError.Context {
    var fieldPath: String { codingPath.map(\.stringValue).joined(separator: ".") }
}

/// A config value that is not usable, found after decoding.
struct ConfigurationError: Error {
    let field: String
    let reason: String
}

private struct ArchitectureProbe: Decodable {
    let architectures: [String]?
    let modelType: String?
    enum CodingKeys: String, CodingKey {
        case architectures
        case modelType = "model_type"
    }
}

/// `eos_token_id` and friends: an integer, a list of integers, or null.
struct TokenIDList: Decodable, Sendable {
    let values: [Int]
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            values = []
        } else if let one = try? container.decode(Int.self) {
            values = [one]
        } else {
            values = try container.decode([Int].self)
        }
    }
}

/// The fields Jindou reads from generation_config.json.
struct GenerationConfiguration: Decodable {
    let eosTokenID: TokenIDList?
    let bosTokenID: Int?
    enum CodingKeys: String, CodingKey {
        case eosTokenID = "eos_token_id"
        case bosTokenID = "bos_token_id"
    }
}

/// RoPE settings in either config style: transformers 5 writes `rope_parameters:
/// {rope_theta, rope_type, partial_rotary_factor}`; Hub checkpoints written by 4.x have
/// top-level `rope_theta`, `partial_rotary_factor` and `rope_scaling`.
struct RopeSettings {
    var theta: Double
    var partialRotaryFactor: Double
    var type: String

    static func decode<K: CodingKey>(
        from container: KeyedDecodingContainer<K>, parameters: K, theta: K, partialFactor: K, scaling: K,
        defaultTheta: Double, defaultPartialFactor: Double
    ) throws -> RopeSettings {
        var settings = RopeSettings(theta: defaultTheta, partialRotaryFactor: defaultPartialFactor, type: "default")
        if let p = try container.decodeIfPresent(RopeParametersObject.self, forKey: parameters) {
            settings.theta = p.ropeTheta ?? settings.theta
            settings.partialRotaryFactor = p.partialRotaryFactor ?? settings.partialRotaryFactor
            settings.type = p.ropeType ?? p.type ?? settings.type
        }
        if let t = try container.decodeIfPresent(Double.self, forKey: theta) { settings.theta = t }
        if let f = try container.decodeIfPresent(Double.self, forKey: partialFactor) { settings.partialRotaryFactor = f }
        if let s = try container.decodeIfPresent(RopeParametersObject.self, forKey: scaling) {
            settings.type = s.ropeType ?? s.type ?? settings.type
        }
        guard settings.type == "default" else {
            throw ConfigurationError(field: "rope_parameters.rope_type",
                                     reason: "rope type '\(settings.type)' is not supported yet (supported: default)")
        }
        return settings
    }

    func rotaryDimension(headDimension: Int) -> Int {
        Int(Double(headDimension) * partialRotaryFactor)
    }
}

private struct RopeParametersObject: Decodable {
    let ropeTheta: Double?
    let ropeType: String?
    let type: String?
    let partialRotaryFactor: Double?
    enum CodingKeys: String, CodingKey {
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
        case type
        case partialRotaryFactor = "partial_rotary_factor"
    }
}
