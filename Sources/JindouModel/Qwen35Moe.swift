// Qwen3.5-MoE, mirroring transformers' `models/qwen3_5_moe/modular_qwen3_5_moe.py` (and
// `models/qwen3_5/modular_qwen3_5.py`, which it builds on):
// - The text model is Qwen3-Next's (Qwen3Next.swift) with three differences: the Gated DeltaNet
//   takes split projections (`in_proj_qkv` already in [q | k | v] order, `in_proj_z`,
//   `in_proj_b`, `in_proj_a`); rotary is Qwen3-VL's interleaved M-RoPE (`mrope_section` over the
//   partial rotary dims); every layer is MoE and the router always renormalises its top-k
//   (`Qwen3VLMoeTextTopKRouter`).
// - The vision tower is Qwen3-VL's (`model.visual.*`, VisionTower.swift) without DeepStack;
//   positions for prompts with images follow `get_rope_index` (MultimodalPrompt.swift).
// - Tensors live under `model.language_model.` and `model.visual.`; `lm_head.weight` at the top.

import Foundation

/// `Qwen3_5MoeConfig`: `text_config` (Qwen3-Next's keys with Qwen3_5MoeTextConfig's defaults),
/// `vision_config` (Qwen3-VL's, no DeepStack), special token ids.
struct Qwen35MoeConfiguration: Decodable {
    var text: Qwen3NextConfiguration
    var vision: VisionConfiguration
    var tokens: VisionTokenIDs
    var tieWordEmbeddings: Bool?

    enum CodingKeys: String, CodingKey {
        case textConfig = "text_config"
        case visionConfig = "vision_config"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    /// The text keys whose Qwen3_5MoeTextConfig defaults differ from Qwen3NextConfig's.
    enum TextKeys: String, CodingKey {
        case vocabSize = "vocab_size", numHiddenLayers = "num_hidden_layers", numExperts = "num_experts"
        case numExpertsPerTok = "num_experts_per_tok", layerTypes = "layer_types"
        case fullAttentionInterval = "full_attention_interval"
        case mlpOnlyLayers = "mlp_only_layers", decoderSparseStep = "decoder_sparse_step"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        text = try c.decode(Qwen3NextConfiguration.self, forKey: .textConfig)
        let t = try c.nestedContainer(keyedBy: TextKeys.self, forKey: .textConfig)
        if !t.contains(.vocabSize) { text.base.core.vocabSize = 248_320 }
        if !t.contains(.numExperts) { text.base.numExperts = 256 }
        if !t.contains(.numExpertsPerTok) { text.base.numExpertsPerTok = 8 }
        if !t.contains(.numHiddenLayers) { text.base.core.numHiddenLayers = 40 }
        if !t.contains(.layerTypes) {
            let interval = try t.decodeIfPresent(Int.self, forKey: .fullAttentionInterval) ?? 4
            text.layerTypes = (0..<text.base.core.numHiddenLayers).map { ($0 + 1) % interval == 0 ? "full_attention" : "linear_attention" }
        }
        // Qwen3_5MoeTextConfig has no dense layers: those keys are attributes it refuses.
        for key in [TextKeys.mlpOnlyLayers, .decoderSparseStep] where t.contains(key) {
            throw ConfigurationError(field: "text_config.\(key.rawValue)", reason: "Qwen3.5-MoE has no dense layers")
        }
        vision = try c.decodeIfPresent(VisionConfiguration.self, forKey: .visionConfig) ?? VisionConfiguration()
        vision.deepstackVisualIndexes = []  // Qwen3_5VisionModel drops DeepStack
        // Defaults are Qwen3_5MoeConfig's.
        tokens = try VisionTokenIDs(from: decoder, defaults: VisionTokenIDs(image: 248_056, video: 248_057, start: 248_053, end: 248_054))
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
    }

    func description() throws -> ModelDescription {
        var text = text
        text.base.normTopkProb = true  // Qwen3VLMoeTextTopKRouter always renormalises
        if let tie = tieWordEmbeddings { text.base.core.tieWordEmbeddings = tie }
        guard let section = text.base.core.rope.mropeSection else {
            throw ConfigurationError(field: "text_config.rope_parameters.mrope_section", reason: "is required for Qwen3.5")
        }
        var description = try text.description()
        description.architecture = .qwen35Moe
        description.linearAttention?.projections = .split
        description.attention.mropeSection = section
        description.textPrefix = "model.language_model."
        description.vision = vision.shape(tokens: tokens)
        return description
    }
}

enum Qwen35MoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.qwen35Moe
    static let modelTypes = ["qwen3_5_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Qwen35MoeConfiguration.self, configJSON) }
}

extension Qwen35MoeConfiguration: DescribedConfiguration {}
