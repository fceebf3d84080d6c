// dots.llm1 (rednote-hilab, 142B-A14B), mirroring transformers' `models/dots1/
// modular_dots1.py`, which states the family as the composition it is:
// - `Dots1Attention(Qwen3Attention)`: GQA with per-head q/k RMSNorm before full rotary;
//   `attention_bias` puts biases on q, k, v and o (Qwen3, unlike GLM4's q/k/v only).
// - `Dots1DecoderLayer(DeepseekV3DecoderLayer)`: layers below `first_k_dense_replace` are
//   dense `Dots1MLP`, the rest `Dots1MoE(DeepseekV3MoE)` = routed experts + shared experts
//   (`moe_intermediate_size × n_shared_experts`).
// - `Dots1TopkRouter(DeepseekV3TopkRouter)`: sigmoid scores, `e_score_correction_bias` for
//   the choice only, group-limited top-k, `norm_topk_prob` (+1e-20), `routed_scaling_factor`.
// - `layer_types` (or `sliding_window` from layer `max_window_layers` on) makes layers
//   sliding (`Qwen3Attention.sliding_window` on those layers only): per-layer windows.

import Foundation
import JindouRouting

enum Dots1Family: ArchitectureDefinition {
    static let architecture = Architecture.dots1
    static let modelTypes = ["dots1"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Dots1Configuration.self, configJSON) }
}

/// `Dots1Config`, read from either config style (see `RopeSettings`).
struct Dots1Configuration: DescribedConfiguration {
    var core: DecoderCore
    var experts: RoutedExperts
    var slidingWindow: Int?
    var maxWindowLayers: Int?
    var layerTypes: [String]?

    /// Dots1Config's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 152_064, hiddenSize: 4608, intermediateSize: 10944, numHiddenLayers: 62, numAttentionHeads: 32,
        maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, ropeTheta: 10_000)
    /// Dots1Config leaves the expert counts None, so they are required.
    static let expertDefaults = RoutedExperts.Defaults(
        intermediateSize: 1408, count: nil, perToken: nil, sharedExperts: nil, normalizeTopK: false, firstDenseLayers: 0,
        countKeys: ["n_routed_experts", "num_local_experts"])

    enum CodingKeys: String, CodingKey {
        case slidingWindow = "sliding_window"
        case maxWindowLayers = "max_window_layers"
        case layerTypes = "layer_types"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        experts = try RoutedExperts(from: decoder, defaults: Self.expertDefaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // `sliding_window` defaults to 4096 in Dots1Config, but only layers from
        // `max_window_layers` (default: all of them) on slide.
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 4096
        maxWindowLayers = try c.decodeIfPresent(Int.self, forKey: .maxWindowLayers)
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
    }

    /// `Dots1Config.__post_init__`'s layer types.
    func resolvedLayerTypes() -> [String] {
        layerTypes ?? (0..<core.numHiddenLayers).map { i in
            slidingWindow != nil && i >= (maxWindowLayers ?? 62) ? "sliding_attention" : "full_attention"
        }
    }

    func description() throws -> ModelDescription {
        guard core.hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(core.hiddenAct)' is not supported (silu only)") }
        let slides = try LayerTypes.sliding(resolvedLayerTypes(), layers: core.numHiddenLayers)
        let sliding = slides.contains(true)
        guard !sliding || (slidingWindow ?? 0) >= 1 else {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        var description = core.description(
            architecture: .dots1,
            attention: try core.groupedAttention(queryKeyNorm: true, queryKeyValueBias: core.attentionBias, outputBias: core.attentionBias),
            // DeepseekV3DecoderLayer.__init__
            layers: (0..<core.numHiddenLayers).map { $0 >= experts.firstDenseLayers ? .sparse : .dense(intermediateSize: core.intermediateSize) },
            router: experts.router,
            hasCorrectionBias: true, moeIntermediateSize: experts.intermediateSize,
            sharedExpertIntermediateSize: experts.sharedExpertIntermediateSize)
        if sliding { description.attention.layerWindows = slides.map { $0 ? slidingWindow : nil } }
        return description
    }
}
