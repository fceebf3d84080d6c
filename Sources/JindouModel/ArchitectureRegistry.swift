import Foundation

/// What a family file provides: the architecture it reads and how its config.json becomes
/// a `ModelDescription` (the composition of blocks every shared part of Jindou runs).
/// Adding a family is one such type in its own file plus its entry in `registry`.
protocol ArchitectureDefinition {
    static var architecture: Architecture { get }
    /// `model_type` values that name it when config.json has no `architectures`.
    static var modelTypes: [String] { get }
    static func describe(configJSON: Data) throws -> ModelDescription
    /// `quantization_config.quant_method` values the family reads itself (gpt-oss: mxfp4);
    /// other methods go through the shared block-FP8 reading.
    static var quantizationMethods: [String] { get }
    /// Other `architectures` names config.json may give it (transformers' own class name
    /// where it differs from the Hub's).
    static var architectureAliases: [String] { get }
}

extension ArchitectureDefinition {
    static var quantizationMethods: [String] { [] }
    static var architectureAliases: [String] { [] }
}

/// A family whose configuration type decodes config.json and describes itself.
protocol DescribedConfiguration: Decodable {
    func description() throws -> ModelDescription
}

extension ArchitectureDefinition {
    static func decode<C: DescribedConfiguration>(_ type: C.Type, _ json: Data) throws -> ModelDescription {
        try JSONDecoder().decode(C.self, from: json).description()
    }
}

enum Qwen3MoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.qwen3Moe
    static let modelTypes = ["qwen3_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Qwen3MoeConfiguration.self, configJSON) }
}

enum Glm4MoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.glm4Moe
    static let modelTypes = ["glm4_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Glm4MoeConfiguration.self, configJSON) }
}

enum DeepseekV3Family: ArchitectureDefinition {
    static let architecture = Architecture.deepseekV3
    static let modelTypes = ["deepseek_v3", "kimi_k2"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(DeepseekV3Configuration.self, configJSON) }
}

enum Qwen3VLMoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.qwen3VLMoe
    static let modelTypes = ["qwen3_vl_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Qwen3VLMoeConfiguration.self, configJSON) }
}

extension ModelDescription {
    /// Every family Jindou reads, one entry each.
    static let registry: [any ArchitectureDefinition.Type] = [
        Qwen3MoeFamily.self, Glm4MoeFamily.self, DeepseekV3Family.self, Qwen3VLMoeFamily.self, MiniMaxM2Family.self, Dots1Family.self,
        HunyuanMoeFamily.self, Glm4MoeLiteFamily.self, Ernie45MoeFamily.self,
        ExaoneMoeFamily.self, GptOssFamily.self, AfmoeFamily.self, DeepseekV32Family.self, GlmMoeDsaFamily.self, LongcatFlashFamily.self,
        KimiK25Family.self, Qwen3NextFamily.self, Qwen35MoeFamily.self, KimiLinearFamily.self, LingHybridFamily.self,
    ]

    /// The `model_type` values Jindou reads, one per family (the first each family names).
    public static var registeredModelTypes: [String] { registry.compactMap { $0.modelTypes.first } }

    static func definition(for architecture: Architecture) -> (any ArchitectureDefinition.Type)? {
        registry.first { $0.architecture == architecture }
    }

    /// The registered architecture an `architectures` entry names (its alias resolved).
    static func architectureName(_ name: String) -> String {
        registry.first { $0.architectureAliases.contains(name) }?.architecture.rawValue ?? name
    }

    static func architectureForModelType(_ type: String) -> String? {
        registry.first { $0.modelTypes.contains(type) }?.architecture.rawValue
    }
}

extension Qwen3MoeConfiguration: DescribedConfiguration {}
extension Glm4MoeConfiguration: DescribedConfiguration {}
extension DeepseekV3Configuration: DescribedConfiguration {}
extension Qwen3VLMoeConfiguration: DescribedConfiguration {}
