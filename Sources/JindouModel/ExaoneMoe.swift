// K-EXAONE (`exaone_moe`, 236B-A23B), mirroring transformers' `models/exaone_moe/
// modular_exaone_moe.py`:
// - `ExaoneMoeAttention(Exaone4Attention)`: GQA with per-head q/k RMSNorm before rotary;
//   sliding layers (`layer_types`, from `sliding_window_pattern`: every pattern-th layer
//   global) attend over a window and rotate, global layers attend over everything **without
//   rotary** (NoPE) — when `sliding_window` is null every layer is global and rotates.
// - `ExaoneMoeDecoderLayer`: pre-norm; dense `ExaoneMoeMLP` or `ExaoneMoeSparseMoEBlock`
//   per `mlp_layer_types` (default: the first `first_k_dense_replace` layers dense).
// - `ExaoneMoeSparseMoEBlock(DeepseekV3MoE)` with `ExaoneMoeTopkRouter(DeepseekV3TopkRouter)`:
//   sigmoid, selection bias (stored as `mlp.e_score_correction_bias`), groups, `norm_topk_prob`
//   (+1e-20), `routed_scaling_factor`, `num_shared_experts` shared experts.

import Foundation
import JindouRouting

enum ExaoneMoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.exaoneMoe
    static let modelTypes = ["exaone_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(ExaoneMoeConfiguration.self, configJSON) }
}

/// `ExaoneMoeConfig`, read from either config style (see `RopeSettings`).
struct ExaoneMoeConfiguration: DescribedConfiguration {
    var core: DecoderCore
    var experts: RoutedExperts
    var slidingWindow: Int?
    var slidingWindowPattern: Int?
    var layerTypes: [String]?
    var mlpLayerTypes: [String]?

    /// ExaoneMoeConfig's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 102_400, hiddenSize: 4096, intermediateSize: 16384, numHiddenLayers: 32, numAttentionHeads: 32,
        numKeyValueHeads: 32, maxPositionEmbeddings: 2048, rmsNormEps: 1e-5, ropeTheta: 10_000, bosTokenID: 1, eosTokenID: [53])
    static let expertDefaults = RoutedExperts.Defaults(
        intermediateSize: 1024, count: 64, perToken: 8, sharedExperts: 1, normalizeTopK: true, routedScalingFactor: 2.5,
        firstDenseLayers: 1, countKeys: ["num_experts"], sharedExpertsKey: "num_shared_experts")

    enum CodingKeys: String, CodingKey {
        case slidingWindow = "sliding_window"
        case slidingWindowPattern = "sliding_window_pattern"
        case layerTypes = "layer_types"
        case mlpLayerTypes = "mlp_layer_types"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        experts = try RoutedExperts(from: decoder, defaults: Self.expertDefaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are ExaoneMoeConfig's.
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 4096
        if !c.contains(.slidingWindowPattern) {
            slidingWindowPattern = 4
        } else if try c.decodeNil(forKey: .slidingWindowPattern) {
            slidingWindowPattern = nil
        } else {
            guard let period = try? c.decode(Int.self, forKey: .slidingWindowPattern) else {
                throw ConfigurationError(field: "sliding_window_pattern", reason: "only an integer period is supported (as Exaone4Config.__post_init__ reads it)")
            }
            slidingWindowPattern = period
        }
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        mlpLayerTypes = try c.decodeIfPresent([String].self, forKey: .mlpLayerTypes)
    }

    /// `Exaone4Config.__post_init__`'s layer types (every layer global without a window).
    func resolvedLayerTypes() throws -> [String] {
        if let layerTypes { return layerTypes }
        let numHiddenLayers = core.numHiddenLayers
        guard slidingWindow != nil else { return Array(repeating: "full_attention", count: numHiddenLayers) }
        guard let period = slidingWindowPattern, period >= 1 else {
            throw ConfigurationError(field: "sliding_window_pattern", reason: "must be at least 1 with a sliding_window")
        }
        return (0..<numHiddenLayers).map { ($0 + 1) % period != 0 ? "sliding_attention" : "full_attention" }
    }

    func description() throws -> ModelDescription {
        let numHiddenLayers = core.numHiddenLayers
        guard core.hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(core.hiddenAct)' is not supported (silu only)") }
        let slides = try LayerTypes.sliding(resolvedLayerTypes(), layers: numHiddenLayers)
        if slides.contains(true) && (slidingWindow ?? 0) < 1 {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        let layers = try LayerTypes.feedForward(mlpLayerTypes ?? (0..<numHiddenLayers).map { $0 < experts.firstDenseLayers ? "dense" : "sparse" },
                                                layers: numHiddenLayers, intermediateSize: core.intermediateSize)
        var attention = try core.groupedAttention(queryKeyNorm: true, queryKeyValueBias: false, outputBias: false)
        if slidingWindow != nil {
            // Exaone4Attention.forward: rotary only when sliding_window is None or the layer slides.
            attention.layerWindows = slides.map { $0 ? slidingWindow : nil }
            attention.layerRotary = slides
        }
        var description = core.description(
            architecture: .exaoneMoe,
            attention: attention,
            layers: layers,
            router: experts.router,
            hasCorrectionBias: true, moeIntermediateSize: experts.intermediateSize,
            sharedExpertIntermediateSize: experts.sharedExpertIntermediateSize)
        description.moeNames.correctionBias = "e_score_correction_bias"
        return description
    }
}
